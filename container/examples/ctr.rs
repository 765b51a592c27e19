//! Manual driver: `ctr ROOTFS INSTANCE_DIR [--no-userns] [--init] [--mem BYTES] [-v H:G[:ro]] -- CMD...`
//! Runs one container with the library directly and prints the outcome and phase marks.
use vcompare_container::*;

struct Print(u64);
impl Observer for Print {
    fn started(&mut self, pid: i32) {
        eprintln!("[ctr] started host pid {pid}");
    }
    fn phase(&mut self, p: Phase, ns: u64) {
        eprintln!(
            "[ctr] {:<10} +{:.3} ms",
            p.name(),
            (ns - self.0) as f64 / 1e6
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sep = args.iter().position(|a| a == "--").expect("need -- CMD");
    let (opts, cmd) = (&args[1..sep], &args[sep + 1..]);
    let mut cfg = ContainerConfig {
        id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        rootfs: opts[0].clone().into(),
        instance_dir: opts[1].clone().into(),
        process: vcompare_container::ProcessSpec {
            args: cmd.to_vec(),
            env: vec!["PATH=/bin:/usr/bin".into(), "HOME=/root".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
        },
        hostname: "0123456789ab".into(),
        volumes: vec![],
        resources: Resources::default(),
        userns: Some(IdMap::default()),
        network_host: false,
        init: false,
        interactive: true,
        tty: false,
        timeout: None,
    };
    let mut i = 2;
    while i < opts.len() {
        match opts[i].as_str() {
            "--no-userns" => cfg.userns = None,
            "--init" => cfg.init = true,
            "-t" => cfg.tty = true,
            "--net-host" => cfg.network_host = true,
            "--mem" => {
                i += 1;
                cfg.resources.memory_bytes = Some(opts[i].parse().unwrap())
            }
            "--cpus" => {
                i += 1;
                cfg.resources.cpus = Some(opts[i].parse().unwrap())
            }
            "--pids" => {
                i += 1;
                cfg.resources.pids_limit = Some(opts[i].parse().unwrap())
            }
            "-w" => {
                i += 1;
                cfg.process.cwd = opts[i].clone()
            }
            "-u" => {
                i += 1;
                cfg.process.uid = opts[i].parse().unwrap();
                cfg.process.gid = cfg.process.uid
            }
            "--timeout" => {
                i += 1;
                cfg.timeout = Some(std::time::Duration::from_secs(opts[i].parse().unwrap()))
            }
            "-v" => {
                i += 1;
                let p: Vec<&str> = opts[i].split(':').collect();
                cfg.volumes.push(Volume {
                    host: p[0].into(),
                    guest: p[1].into(),
                    readonly: p.get(2) == Some(&"ro"),
                });
            }
            o => panic!("unknown option {o}"),
        }
        i += 1;
    }
    let t0 = sys::monotonic_ns();
    match run(&cfg, &mut Print(t0)) {
        Ok(s) => {
            eprintln!(
                "[ctr] outcome {s:?} total {:.3} ms",
                (sys::monotonic_ns() - t0) as f64 / 1e6
            );
            std::process::exit(match s {
                ExitStatus::Exited(c) => c,
                ExitStatus::Signaled(s) => 128 + s,
                ExitStatus::OomKilled => 137,
                ExitStatus::TimedOut => 124,
            });
        }
        Err(e) => {
            eprintln!("[ctr] error: {e}");
            std::process::exit(125);
        }
    }
}
