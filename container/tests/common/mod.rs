//! Shared helpers for the runtime's integration tests: a busybox root filesystem made once per
//! test binary, per-test instance directories, and an output volume to read results from.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use vcompare_container::ProcessSpec;
use vcompare_container::*;

#[path = "../../../tests/common/skip.rs"]
pub mod skip;

pub mod cgroup_dirs;

/// A static busybox rootfs shared (read-only, as an overlay lower layer) by all tests.
pub fn rootfs() -> PathBuf {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let final_dir = PathBuf::from("/tmp/vcompare-ctr-test-rootfs");
        if final_dir.join("bin/sh").exists() {
            return final_dir;
        }
        let dir = PathBuf::from(format!(
            "/tmp/vcompare-ctr-test-rootfs.{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for d in ["bin", "etc", "tmp", "root", "proc", "sys", "dev"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", dir.join("bin/busybox"))
            .expect("busybox-static must be installed (/bin/busybox)");
        let out = std::process::Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .unwrap();
        for name in String::from_utf8_lossy(&out.stdout).lines() {
            if name != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(name));
            }
        }
        std::fs::write(
            dir.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
        )
        .unwrap();
        if std::fs::rename(&dir, &final_dir).is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        final_dir
    })
    .clone()
}

/// A per-test instance directory plus an output directory the container can write to.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub out: PathBuf,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("vcompare-ctr-test-")
            .tempdir()
            .unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        Sandbox { dir, out }
    }

    pub fn instance(&self) -> PathBuf {
        self.dir.path().join("instance")
    }

    /// A config running `sh -c SCRIPT` with stdout+stderr into /out/stdout.
    pub fn config(&self, script: &str) -> ContainerConfig {
        let id: String = format!("{:016x}{:048x}", std::process::id(), rand_u64());
        ContainerConfig {
            id,
            rootfs: rootfs(),
            instance_dir: self.instance(),
            process: ProcessSpec {
                args: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("exec >/out/stdout 2>&1; {script}"),
                ],
                env: vec!["PATH=/bin".into(), "HOME=/root".into()],
                cwd: "/".into(),
                uid: 0,
                gid: 0,
            },
            hostname: "c0ffee123456".into(),
            volumes: vec![Volume {
                host: self.out.clone(),
                guest: "/out".into(),
                readonly: false,
            }],
            resources: Resources::default(),
            userns: Some(IdMap::default()),
            network_host: false,
            init: false,
            interactive: false,
            tty: false,
            timeout: Some(std::time::Duration::from_secs(60)),
        }
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.out.join("stdout")).unwrap_or_default()
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(vcompare_container::sys::monotonic_ns());
    h.finish()
}

/// Records the pid and phases.
#[derive(Default)]
pub struct Recorder {
    pub pid: Option<i32>,
    pub phases: Vec<(Phase, u64)>,
}

impl Observer for Recorder {
    fn started(&mut self, pid: i32) {
        self.pid = Some(pid);
    }
    fn phase(&mut self, p: Phase, ns: u64) {
        self.phases.push((p, ns));
    }
}

/// Runs and returns (status, captured output).
pub fn run_capture(sb: &Sandbox, cfg: &ContainerConfig) -> (ExitStatus, String) {
    let st = run(cfg, &mut Recorder::default()).expect("container run failed");
    (st, sb.stdout())
}

/// True when /sys/fs/cgroup itself is a cgroup2 mount (a v2-only host), false on v1 or hybrid
/// (a tmpfs of v1 controller mounts). Read here rather than taken from the runtime's own
/// detection, so that tests check the runtime's choice instead of repeating it.
pub fn host_is_cgroup_v2() -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type().0 == CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// The host's mount table as this process sees it: (mount point, type, source) per mount,
/// sorted. Compared whole before and after runs, so a leaked or a replaced mount both show.
pub fn mount_table() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut out: Vec<_> = text
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?.to_string();
            let mut r = right.split_whitespace();
            Some((point, r.next()?.to_string(), r.next()?.to_string()))
        })
        .collect();
    out.sort();
    out
}

/// Polls `cond` until it holds; the deadline only guards against a hang (it is not a timing
/// assertion), so it is generous.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "gave up waiting (60 s) for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Sends the pid of the container's command to the test thread once it runs.
pub struct Tx(pub std::sync::mpsc::Sender<i32>);

impl Observer for Tx {
    fn started(&mut self, pid: i32) {
        self.0.send(pid).unwrap();
    }
    fn phase(&mut self, _: Phase, _: u64) {}
}

/// Creates a file when dropped: releases a container that waits for it (`while [ ! -e /out/F ]`)
/// also when the test panics first, so that no container outlives a failed test.
pub struct ReleaseOnDrop(pub PathBuf);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, "");
    }
}

/// Sends SIGKILL to a container's PID 1 (which ends the whole PID namespace).
pub fn kill9(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}
