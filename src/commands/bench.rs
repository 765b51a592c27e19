//! `vcompare bench`: measures host, container and VM (and peers) by driving this very binary
//! as a user would, writes `results.json` with every raw sample plus the environment, and
//! renders `report.md` and charts next to it. The measuring lives in `vcompare-bench`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use vcompare_bench::results::{Environment, Results, RunConfig};
use vcompare_bench::suites::{self, Plan};
use vcompare_bench::{harness::Harness, peers, report};

use super::Ctx;
use crate::cli::BenchArgs;
use crate::default_image;

const MODES: &[&str] = &["host", "container", "vm"];
const PEERS: &[&str] = &["crun", "runc", "qemu", "firecracker"];

/// Splits a comma list and checks every item against `known`.
fn list(flag: &str, value: &str, known: &[&str]) -> anyhow::Result<Vec<String>> {
    let items: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty() && *s != "none")
        .map(str::to_string)
        .collect();
    for i in &items {
        anyhow::ensure!(
            known.contains(&i.as_str()),
            "--{flag}: unknown {i:?} (choose from {})",
            known.join(",")
        );
    }
    Ok(items)
}

/// The environment block: every result carries it, so a figure always names its machine.
pub fn environment() -> Environment {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let checks = super::doctor::checks();
    let detail = |name: &str| {
        checks
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.detail.clone())
            .unwrap_or_default()
    };
    let mut peers_found = std::collections::BTreeMap::new();
    for p in PEERS {
        if let Some(c) = checks.iter().find(|c| c.name == *p && c.ok) {
            peers_found.insert(p.to_string(), c.detail.clone());
        }
    }
    let backend = super::doctor::kvm_backend().to_string();
    let mut machine_notes = vec!["shared development machine: other builds and tests may run at the same time (medians and ratios from one run)".to_string()];
    if backend.contains("PVM") {
        machine_notes.push("the host is itself a VM; /dev/kvm is nested PVM: guest kernel code runs in KVM's instruction emulator, guest user code natively".into());
    }
    Environment {
        date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        cpu_model,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        memory_total_bytes: vcompare_bench::harness::proc_kb_field(&meminfo, "MemTotal")
            .unwrap_or(0),
        host_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        cgroup: detail("cgroups"),
        kvm_backend: backend,
        vcompare_revision: revision(),
        peers: peers_found,
        machine_notes,
    }
}

/// `git describe --always --dirty` of the source tree this binary was built from.
fn revision() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    std::process::Command::new("git")
        .args(["-C", dir, "describe", "--always", "--dirty"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| format!("unknown (v{})", env!("CARGO_PKG_VERSION")))
}

/// `vcompare bench`.
pub fn bench(ctx: &Ctx, a: &BenchArgs) -> anyhow::Result<i32> {
    let mut plan = Plan {
        modes: list("modes", &a.modes, MODES)?,
        peers: list("peers", &a.peers, PEERS)?,
        suites: list("suite", &a.suite, suites::NAMES)?,
        share: (&a.share).into(),
    };
    anyhow::ensure!(a.runs >= 1, "--runs must be at least 1");
    let vm_runs = a.vm_runs.unwrap_or(a.runs.min(3)).max(1);
    let started = Instant::now();
    let mut env = environment();
    let mut notes = Vec::new();
    if plan.suites.iter().any(|s| s == "io") {
        // File I/O is part of the cpu suite's workloads.
        plan.suites.retain(|s| s != "io");
        if !plan.suites.iter().any(|s| s == "cpu") {
            plan.suites.push("cpu".into());
        }
        notes.push("`io` runs as the file-I/O workload of the cpu suite".to_string());
    }
    if plan.modes.iter().any(|m| m == "vm") && !std::path::Path::new("/dev/kvm").exists() {
        plan.modes.retain(|m| m != "vm");
        notes.push("no /dev/kvm on this host: VM mode skipped".into());
    }
    let image = default_image::resolve_or_build(&ctx.store, &a.image)?;
    let exe = std::env::current_exe().context("locating the vcompare binary")?;
    // Warm-up: applies the image's rootfs once (the cache every later run uses).
    let warm = std::process::Command::new(&exe)
        .arg("--root")
        .arg(&ctx.root)
        .args(suites::run_args(
            suites::Network::None,
            &["--rm", &image.reference, "/bin/probe", "true"],
        ))
        .output()?;
    if !warm.status.success() {
        anyhow::bail!(
            "container warm-up run failed: {}",
            String::from_utf8_lossy(&warm.stderr).trim()
        );
    }
    let rootfs = ctx.store.rootfs_path(&image.record);
    anyhow::ensure!(
        rootfs.join("bin/probe").is_file(),
        "image {} has no /bin/probe: the bench needs the probe (use the default image)",
        image.reference
    );
    let mut h = Harness::new(
        exe,
        ctx.root.clone(),
        image.reference.clone(),
        rootfs,
        a.runs,
        vm_runs,
    )?;
    h.vm_warm_up = !a.no_vm_warm_up;
    h.kernel = crate::backend::vm::find_kernel().map_err(|e| format!("{e:#}"));
    // The image's VM disk (vcompare's VMs and the QEMU peer boot copies of it) is built here,
    // before any timing, so no timed boot pays for it.
    let vm_runs_here = plan.modes.iter().any(|m| m == "vm");
    h.vm_disk = if !vm_runs_here {
        Err("no VM mode in this run".into())
    } else {
        crate::artifacts::find_static("vcompare-init")
            .map_err(anyhow::Error::from)
            .and_then(|init| {
                let disk = vcompare_vmm::disk::image_disk(
                    &ctx.root,
                    &image.record.digest,
                    &h.rootfs,
                    &init,
                )?;
                Ok((disk, init))
            })
            .map_err(|e| format!("{e:#}"))
    };
    let config = RunConfig {
        modes: plan.modes.clone(),
        peers: plan.peers.clone(),
        suites: plan.suites.clone(),
        runs: a.runs,
        vm_runs,
        image: image.reference.clone(),
        duration_secs: 0.0,
    };
    for p in &plan.peers {
        let v = match p.as_str() {
            "crun" => peers::crun::version(),
            "runc" => peers::runc::version(),
            "qemu" => peers::qemu::version(),
            _ => peers::firecracker::version(),
        };
        if let Some(v) = v {
            env.peers.insert(p.clone(), v);
        }
    }
    let mut results = Results::new(env, config);
    results.notes.extend(notes);
    eprintln!(
        "vcompare bench: modes {} · peers {} · suites {} · {} runs (VM: {vm_runs}) · image {}",
        plan.modes.join(","),
        plan.peers.join(","),
        plan.suites.join(","),
        a.runs,
        image.reference
    );
    h.start_progress(suites::estimate_ms(&h, &plan));
    suites::run_all(&mut h, &plan, &mut results);
    h.progress.finish_and_clear();
    let _ = std::fs::remove_dir_all(&h.scratch);
    results.config.duration_secs = started.elapsed().as_secs_f64();
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "vcompare-bench-{}",
            results.environment.date.replace(':', "")
        ))
    });
    let path = results.save(&out)?;
    let rendered = report::render(&results, &out)?;
    println!("{}", report::markdown::targets_text(&results));
    println!("results: {}", path.display());
    println!("report:  {}", rendered.report.display());
    for n in &rendered.notes {
        println!("note: {n}");
    }
    println!("took {:.0} s", results.config.duration_secs);
    Ok(0)
}
