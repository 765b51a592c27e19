//! End-to-end tests of the `vcompare` binary in container mode: the lifecycle commands drive our
//! runtime through `backend::container`. They need root (a missing capability is a skip through
//! tests/common/skip.rs) and /bin/busybox (busybox-static; missing = failure).

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{text, wait_for, Env, BUSYBOX};

/// The sentence `run` prints when the cgroup's OOM killer ended the instance.
const OOM_SENTENCE: &str = "vcompare: the instance was killed for exceeding its --memory limit (out of memory); raise --memory";

#[test]
fn run_rm_shows_isolation_and_exit_code() {
    crate::require_root!();
    let env = Env::with_busybox();
    let o = env.run_sh(
        &[],
        "echo $$; hostname; id -u; cat /proc/self/uid_map; ls /sys/class/net; exit 7",
    );
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1");
    assert_eq!(l[1].len(), 12, "hostname should be the short id: {out}");
    assert!(l[1].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(l[2], "0");
    assert_eq!(
        l[3].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    // The default network: its veth peer and the loopback.
    assert_eq!(l[4..6], ["eth0", "lo"]);
    // --rm: nothing listed afterwards.
    let ps = env.run(&["ps", "-a", "-q"]);
    assert_eq!(text(&ps.stdout).trim(), "");
}

#[test]
fn flags_env_workdir_user_hostname_userns() {
    crate::require_root!();
    let env = Env::with_busybox();
    let o = env.run_sh(
        &[
            "-e",
            "FOO=bar",
            "-w",
            "/srv/app",
            "-u",
            "1000:1001",
            "--hostname",
            "myhost",
        ],
        "echo $FOO; pwd; id -u; id -g; hostname",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "bar\n/srv/app\n1000\n1001\nmyhost\n");
    let o = env.run_sh(&["--userns", "host"], "cat /proc/self/uid_map");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout).split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
}

#[test]
fn signal_death_is_128_plus_n_and_bad_command_is_127() {
    crate::require_root!();
    let env = Env::with_busybox();
    let o = env.run_sh(&["--init"], "kill -KILL $$");
    assert_eq!(o.status.code(), Some(137), "{}", text(&o.stderr));
    let o = env.run(&["run", "--rm", "--mode", "container", BUSYBOX, "no-such-cmd"]);
    assert_eq!(o.status.code(), Some(127), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stderr),
        "vcompare: command \"no-such-cmd\" was not found in the image's PATH; check the command name or use an absolute path\n"
    );
}

#[test]
fn memory_limit_oom_is_reported() {
    crate::require_root!();
    let env = Env::with_busybox();
    let o = env.run_sh(
        &["--memory", "24m"],
        "awk 'BEGIN{s=\"x\"; for(i=0;i<40;i++) s=s s}'",
    );
    assert_eq!(o.status.code(), Some(137), "{}", text(&o.stderr));
    assert_eq!(text(&o.stderr), format!("{OOM_SENTENCE}\n"));
}

#[test]
fn volumes_ro_is_enforced_and_missing_host_path_is_an_error() {
    crate::require_root!();
    let env = Env::with_busybox();
    let data = env.scratch("data");
    std::fs::write(data.join("f"), "hello").unwrap();
    let spec = format!("{}:/data:ro", data.display());
    let o = env.run_sh(
        &["-v", &spec],
        "cat /data/f; (echo x > /data/g) 2>/dev/null && echo wrote || echo refused",
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hellorefused\n");
    assert!(!data.join("g").exists());
    let host = env.dir.path().join("missing");
    let missing = format!("{}:/data", host.display());
    let o = env.run_sh(&["-v", &missing], "true");
    assert_eq!(o.status.code(), Some(125), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stderr),
        format!(
            "vcompare: error: bad -v `{missing}`: the host path {} does not exist; create it or fix the path\n",
            host.display()
        )
    );
}

/// SIGTERM sent to a foreground `vcompare run` reaches the container's PID 1.
#[test]
fn sigterm_is_forwarded() {
    crate::require_root!();
    let env = Env::with_busybox();
    let mut child = env
        .cmd(&[
            "run",
            "--rm",
            "--mode",
            "container",
            BUSYBOX,
            "sh",
            "-c",
            "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(42));
}

fn cgroup_dirs_named(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(p: &Path, id: &str, out: &mut Vec<PathBuf>, depth: usize) {
        if depth > 6 {
            return;
        }
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name().to_string_lossy().contains(id) {
                    out.push(e.path());
                }
                walk(&e.path(), id, out, depth + 1);
            }
        }
    }
    walk(Path::new("/sys/fs/cgroup"), id, &mut out, 0);
    out
}

#[test]
fn detached_exec_inspect_stop_rm() {
    crate::require_root!();
    let env = Env::with_busybox();
    let o = env.run(&[
        "run",
        "-d",
        "--mode",
        "container",
        "--name",
        "web",
        "--memory",
        "64m",
        BUSYBOX,
        "sh",
        "-c",
        "echo hi > /tmp/m; sleep 60",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let id = text(&o.stdout).trim().to_string();
    assert_eq!(id.len(), 64);
    // The script's write lands in the instance's copy-on-write layer on the host.
    let marker = env.root().join("instances").join(&id).join("upper/tmp/m");
    wait_for("the detached script to write /tmp/m", || {
        (std::fs::read_to_string(&marker).ok()? == "hi\n").then_some(())
    });
    env.wait_status(&id, "running");

    let o = env.run(&["exec", "web", "sh", "-c", "cat /tmp/m; echo $$; hostname"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "hi");
    assert_ne!(l[1], "1");
    assert_eq!(l[2], &id[..12]);

    let o = env.run(&["inspect", "--format", "json", "web"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let full: serde_json::Value = serde_json::from_str(&text(&o.stdout)).unwrap();
    // The lifecycle record wraps the backend's host-vs-container view under "view".
    let v = &full["view"];
    assert_eq!(v["pid"]["container"], 1);
    assert_eq!(v["uid"]["host"], 100000);
    assert_eq!(v["uid"]["container"], 0);
    assert_eq!(v["namespaces"]["pid"]["separate"], true);
    assert_eq!(
        v["kernel_release"]["container"],
        v["kernel_release"]["host"]
    );
    assert_eq!(v["cgroup"]["memory_limit_bytes"], 64u64 << 20);
    assert!(!cgroup_dirs_named(&id).is_empty());

    let o = env.run(&["stop", "-t", "1", "web"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = env.run(&["rm", "web"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(cgroup_dirs_named(&id).is_empty(), "cgroup left behind");
    assert!(!env
        .root()
        .join("instances")
        .join(&id)
        .join("upper")
        .exists());
}

#[test]
fn parallel_runs_are_independent() {
    crate::require_root!();
    let env = Env::with_busybox();
    let children: Vec<_> = (0..10)
        .map(|i| {
            env.cmd(&[
                "run",
                "--rm",
                "--mode",
                "container",
                "--memory",
                "64m",
                BUSYBOX,
                "sh",
                "-c",
                &format!("echo $$ $(hostname) {i}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut hosts = std::collections::BTreeSet::new();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "run {i}: {}", text(&o.stderr));
        let out = text(&o.stdout);
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(f[0], "1");
        assert_eq!(f[2], i.to_string());
        hosts.insert(f[1].to_string());
    }
    assert_eq!(hosts.len(), 10, "each container has its own hostname");
}

#[test]
fn network_host_shares_the_host_interfaces() {
    crate::require_root!();
    let env = Env::with_busybox();
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let o = env.run_sh(&["--network", "host"], "ls /sys/class/net");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mut inside: Vec<String> = text(&o.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    inside.sort();
    assert_eq!(inside, host);
}

#[test]
fn workloads_get_default_sigpipe_and_a_closed_stdout_ends_quietly() {
    crate::require_root!();
    let env = Env::with_busybox();
    // The entrypoint must not inherit Rust's ignored SIGPIPE: a producer in a pipeline whose
    // reader exits dies of SIGPIPE (141 in the shell), as under Docker.
    let o = env.run_sh(
        &[],
        "grep SigIgn /proc/self/status; (yes; echo rc=$? >&2) | true",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // SigIgn is a hex mask, bit N-1 for signal N; other bits depend on who started the test.
    let ignored = text(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .expect("SigIgn line");
    assert_eq!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {}",
        text(&o.stdout)
    );
    assert!(text(&o.stderr).contains("rc=141"), "{}", text(&o.stderr));
    // `vcompare image ls | head -0`: the reader is gone before we print. With the default
    // SIGPIPE disposition restored, the first write kills vcompare quietly (as for every Unix
    // tool): death by SIGPIPE, nothing on stderr (no panic, no error line).
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let out = env
        .cmd(&["image", "ls"])
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {}",
        out.status,
        text(&out.stderr)
    );
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn exec_contract_codes_flags_and_streams() {
    crate::require_root!();
    let env = Env::with_busybox();
    let (id, _) = env.run_detached(&[BUSYBOX, "sleep", "1000"]);
    let cmd = |a: &[&str]| env.cmd(a);
    common::exec_checks::check_exec_contract(&common::exec_checks::Exec {
        cmd: &cmd,
        instance: &id[..12],
    });
    assert_eq!(env.instance(&id)["status"], "running");
    env.ok(&["rm", "-f", &id]);
}
