//! Boots one microVM without the vcompare CLI, for VMM development and measurements:
//! `cargo run -p vcompare-vmm --example boot -- KERNEL ROOTFS_DIR INIT_BINARY [--mem MIB]
//! [--cpus N] [--bootlog] [--timeout S] -- CMD...`; `RUST_LOG=vcompare_vmm=debug` shows the VMM's
//! setup steps.

use std::time::Instant;

use vcompare_vmm::{disk, machine, DebugOptions, GuestSpec, VmConfig, VmHooks, VmJob};

fn main() {
    let launched = Instant::now();
    // Before `DebugOptions::from_env`, which asks the subscriber whether to trace the setup.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut a: Vec<String> = std::env::args().skip(1).collect();
    let sep = a.iter().position(|x| x == "--").expect("-- CMD");
    let cmd = a.split_off(sep + 1);
    a.pop();
    let (mut mem, mut cpus, mut bootlog, mut timeout) = (256u64, 1u8, false, None);
    let mut pos = Vec::new();
    let mut it = a.into_iter();
    while let Some(x) = it.next() {
        match x.as_str() {
            "--mem" => mem = it.next().unwrap().parse().unwrap(),
            "--cpus" => cpus = it.next().unwrap().parse().unwrap(),
            "--bootlog" => bootlog = true,
            "--timeout" => timeout = Some(it.next().unwrap().parse().unwrap()),
            _ => pos.push(x),
        }
    }
    let (kernel, rootfs, init) = (&pos[0], &pos[1], &pos[2]);
    let work = std::env::temp_dir().join("vcmp-example");
    let img = disk::image_disk(&work, "sha256:example", rootfs.as_ref(), init.as_ref()).unwrap();
    let inst = disk::instance_disk(&work.join("inst"), &img).unwrap();
    let spec = GuestSpec {
        process: vcompare_spec::ProcessSpec {
            args: cmd,
            env: vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "HOME=/root".into(),
            ],
            cwd: "/".into(),
            ..Default::default()
        },
        hostname: "example".into(),
        boot_timer_port: vcompare_spec::guest::BOOT_TIMER_PORT,
        network: None,
        attach: false,
        ..Default::default()
    };
    disk::write_spec(&inst, &serde_json::to_vec(&spec).unwrap()).unwrap();
    let mut extra_cmdline = disk::root_cmdline();
    extra_cmdline.extend(
        std::env::var("VCOMPARE_VM_CMDLINE")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from),
    );
    let t_prep = Instant::now();
    let job = VmJob {
        kernel: kernel.into(),
        memory_mib: mem,
        cpus,
        prealloc: false,
        initramfs: Default::default(),
        root_disk: Some(inst),
        shares: Vec::new(),
        net: None,
        vsock: None,
        snapshot: None,
        extra_cmdline,
        boot_log: bootlog,
        timeout_secs: timeout,
        memory_ranges_path: None,
        guest_info_path: None,
        result_path: work.join("result.json"),
    };
    let cfg = VmConfig {
        debug: DebugOptions::from_env(),
        hooks: VmHooks {
            on_guest_info: Some(Box::new(|i| eprintln!("guest info: {i}"))),
            on_memory: Some(Box::new(|r: &[(u64, u64)]| {
                for (a, l) in r {
                    eprintln!("guest RAM at host {:#x}-{:#x}", a, a + l);
                }
            })),
        },
        ..VmConfig::new(job, t_prep)
    };
    match machine::run(cfg) {
        Ok(r) => {
            let ms = |i: Instant| i.saturating_duration_since(r.launched).as_secs_f64() * 1000.0;
            eprintln!("exit: {:?}", r.exit);
            eprintln!(
                "disk+spec prep: {:.1} ms",
                (t_prep - launched).as_secs_f64() * 1000.0
            );
            if let Some(f) = r.first_entry {
                eprintln!("vmm setup (-> first guest instruction): {:.2} ms", ms(f));
            }
            for m in &r.marks {
                eprintln!("  {:?} arg={:#x} at {:.1} ms", m.phase, m.arg, ms(m.at));
            }
            eprintln!("ended at {:.1} ms", ms(r.ended));
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
