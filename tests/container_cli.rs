//! End-to-end tests of the `vcompare` binary in container mode: the lifecycle commands drive our
//! runtime through `backend::container`. They need root and /bin/busybox (busybox-static);
//! without root they are skipped with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A private data root with a busybox image `test/busybox:1` built from a directory.
struct Env {
    root: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let root = tempfile::Builder::new()
            .prefix("vcompare-cli-test-")
            .tempdir()
            .unwrap();
        let dir = root.path().join("bbdir");
        for d in ["bin", "etc", "tmp", "root"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
            .expect("needs /bin/busybox (busybox-static)");
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for name in String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter(|n| *n != "busybox")
        {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(name)).unwrap();
        }
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let env = Env { root };
        let o = env.cmd(&[
            "image",
            "build",
            dir.to_str().unwrap(),
            "--tag",
            "test/busybox:1",
            "--env",
            "PATH=/bin",
            "--cmd",
            "sh",
        ]);
        assert!(
            o.status.success(),
            "image build failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        env
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_vcompare"));
        c.env("VCOMPARE_ROOT", self.root.path())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    fn cmd(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `vcompare run --rm --mode container test/busybox:1 EXTRA... sh -c SCRIPT`.
    fn run_sh(&self, flags: &[&str], script: &str) -> Output {
        let mut a = vec!["run", "--rm", "--mode", "container"];
        a.extend_from_slice(flags);
        a.extend_from_slice(&["test/busybox:1", "sh", "-c", script]);
        self.cmd(&a)
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

#[test]
fn run_rm_shows_isolation_and_exit_code() {
    require_root!();
    let env = Env::new();
    let o = env.run_sh(
        &[],
        "echo $$; hostname; id -u; cat /proc/self/uid_map; ls /sys/class/net; exit 7",
    );
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1");
    assert_eq!(l[1].len(), 12, "hostname should be the short id: {out}");
    assert!(l[1].chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(l[2], "0");
    assert_eq!(
        l[3].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(l[4], "lo");
    // --rm: nothing listed afterwards.
    let ps = env.cmd(&["ps", "-a", "-q"]);
    assert_eq!(stdout(&ps).trim(), "");
}

#[test]
fn flags_env_workdir_user_hostname_userns() {
    require_root!();
    let env = Env::new();
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
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "bar\n/srv/app\n1000\n1001\nmyhost\n");
    let o = env.run_sh(&["--userns", "host"], "cat /proc/self/uid_map");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
}

#[test]
fn signal_death_is_128_plus_n_and_bad_command_is_127() {
    require_root!();
    let env = Env::new();
    let o = env.run_sh(&["--init"], "kill -KILL $$");
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    let o = env.cmd(&[
        "run",
        "--rm",
        "--mode",
        "container",
        "test/busybox:1",
        "no-such-cmd",
    ]);
    assert_eq!(o.status.code(), Some(127));
    assert!(stderr(&o).contains("no-such-cmd"), "{}", stderr(&o));
}

#[test]
fn memory_limit_oom_is_reported() {
    require_root!();
    let env = Env::new();
    let o = env.run_sh(
        &["--memory", "24m"],
        "awk 'BEGIN{s=\"x\"; for(i=0;i<40;i++) s=s s}'",
    );
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert!(
        stderr(&o).to_lowercase().contains("memory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn volumes_ro_is_enforced_and_missing_host_path_is_an_error() {
    require_root!();
    let env = Env::new();
    let data = env.root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "hello").unwrap();
    let spec = format!("{}:/data:ro", data.display());
    let o = env.run_sh(
        &["-v", &spec],
        "cat /data/f; (echo x > /data/g) 2>/dev/null && echo wrote || echo refused",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hellorefused\n");
    assert!(!data.join("g").exists());
    let missing = format!("{}:/data", env.root.path().join("missing").display());
    let o = env.run_sh(&["-v", &missing], "true");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing"), "{}", stderr(&o));
}

/// SIGTERM sent to a foreground `vcompare run` reaches the container's PID 1.
#[test]
fn sigterm_is_forwarded() {
    require_root!();
    let env = Env::new();
    let mut child = env
        .command(&[
            "run",
            "--rm",
            "--mode",
            "container",
            "test/busybox:1",
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
    require_root!();
    let env = Env::new();
    let o = env.cmd(&[
        "run",
        "-d",
        "--mode",
        "container",
        "--name",
        "web",
        "--memory",
        "64m",
        "test/busybox:1",
        "sh",
        "-c",
        "echo hi > /tmp/m; sleep 60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 64);
    std::thread::sleep(std::time::Duration::from_millis(300));

    let o = env.cmd(&["exec", "web", "sh", "-c", "cat /tmp/m; echo $$; hostname"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "hi");
    assert_ne!(l[1], "1");
    assert_eq!(l[2], &id[..12]);

    let o = env.cmd(&["inspect", "--format", "json", "web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let full: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
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

    let o = env.cmd(&["stop", "-t", "1", "web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = env.cmd(&["rm", "web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(cgroup_dirs_named(&id).is_empty(), "cgroup left behind");
    assert!(!env
        .root
        .path()
        .join("instances")
        .join(&id)
        .join("upper")
        .exists());
}

#[test]
fn parallel_runs_are_independent() {
    require_root!();
    let env = Env::new();
    let children: Vec<_> = (0..10)
        .map(|i| {
            env.command(&[
                "run",
                "--rm",
                "--mode",
                "container",
                "--memory",
                "64m",
                "test/busybox:1",
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
        assert!(o.status.success(), "run {i}: {}", stderr(&o));
        let out = stdout(&o);
        let f: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(f[0], "1");
        assert_eq!(f[2], i.to_string());
        hosts.insert(f[1].to_string());
    }
    assert_eq!(hosts.len(), 10, "each container has its own hostname");
}

#[test]
fn network_host_shares_the_host_interfaces() {
    require_root!();
    let env = Env::new();
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    host.sort();
    let o = env.run_sh(&["--network", "host"], "ls /sys/class/net");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut inside: Vec<String> = stdout(&o).split_whitespace().map(String::from).collect();
    inside.sort();
    assert_eq!(inside, host);
}

#[test]
fn workloads_get_default_sigpipe_and_a_closed_stdout_ends_quietly() {
    require_root!();
    let env = Env::new();
    // The entrypoint must not inherit Rust's ignored SIGPIPE: a producer in a pipeline whose
    // reader exits dies of SIGPIPE (141 in the shell), as under Docker.
    let o = env.run_sh(
        &[],
        "grep SigIgn /proc/self/status; (yes; echo rc=$? >&2) | true",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // SigIgn is a hex mask, bit N-1 for signal N; other bits depend on who started the test.
    let ignored = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .expect("SigIgn line");
    assert_eq!(
        ignored & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored: {}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("rc=141"), "{}", stderr(&o));
    // `vcompare image ls | head -0`: the reader is gone before we print; no panic message.
    let mut child = env
        .command(&["image", "ls"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
