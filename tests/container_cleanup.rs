//! Reliability through the CLI: 100 `run --rm` in container mode, a third of them failing on
//! purpose (bad command, bad -v, OOM, bad user), leave nothing behind: no mount, no
//! `vcompare-*` cgroup dir, no instance dir, no container process. Its own test binary, so no
//! other test of this crate runs containers at the same time. Needs root and /bin/busybox.

use std::path::Path;
use std::process::{Command, Stdio};

fn cgroup_dirs() -> Vec<String> {
    fn walk(p: &Path, out: &mut Vec<String>, depth: usize) {
        if depth > 6 {
            return;
        }
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if e.file_name().to_string_lossy().starts_with("vcompare-") {
                    out.push(e.path().display().to_string());
                }
                walk(&e.path(), out, depth + 1);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), &mut out, 0);
    out.sort();
    out
}

/// Host processes running as the container root's host uid (100000): container processes.
fn container_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("Uid:"))
                        .map(|l| l.split_whitespace().nth(1) == Some("100000"))
                })
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn one_hundred_cli_runs_leave_nothing_behind() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("vcompare-cleanup-test-")
        .tempdir()
        .unwrap();
    let dir = root.path().join("bb");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for n in ["sh", "true", "awk", "echo"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(n)).unwrap();
    }
    let vc = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vcompare"))
            .env("VCOMPARE_ROOT", root.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    assert!(vc(&[
        "image",
        "build",
        dir.to_str().unwrap(),
        "--tag",
        "c/bb:1",
        "--env",
        "PATH=/bin"
    ])
    .status
    .success());

    let (c0, p0) = (cgroup_dirs(), container_processes());
    let root_s = root.path().display().to_string();
    for i in 0..100 {
        let o = match i % 6 {
            0 => vc(&[
                "run",
                "--rm",
                "--mode",
                "container",
                "c/bb:1",
                "no-such-command",
            ]),
            1 => vc(&[
                "run",
                "--rm",
                "--mode",
                "container",
                "-v",
                "/nonexistent/vcompare:/x",
                "c/bb:1",
                "true",
            ]),
            2 => vc(&[
                "run",
                "--rm",
                "--mode",
                "container",
                "--memory",
                "16m",
                "c/bb:1",
                "awk",
                "BEGIN{s=\"x\"; for(i=0;i<40;i++) s=s s}",
            ]),
            3 => vc(&[
                "run",
                "--rm",
                "--mode",
                "container",
                "-u",
                "70000",
                "c/bb:1",
                "true",
            ]),
            _ => vc(&["run", "--rm", "--mode", "container", "c/bb:1", "echo", "ok"]),
        };
        let expect_ok = i % 6 >= 4;
        assert_eq!(
            o.status.success(),
            expect_ok,
            "run {i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if i % 6 == 2 {
            assert_eq!(o.status.code(), Some(137));
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&root_s),
        "a mount under the data root leaked"
    );
    assert_eq!(cgroup_dirs(), c0, "cgroup dirs leaked");
    assert_eq!(container_processes(), p0, "container processes leaked");
    // Hidden entries (the lifecycle's lock file) are not instances.
    let left: Vec<_> = std::fs::read_dir(root.path().join("instances"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name())
                .filter(|n| !n.to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "instance dirs left: {left:?}");
}
