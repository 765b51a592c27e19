//! Reliability through the CLI: 100 `run --rm` in container mode, a third of them failing on
//! purpose (bad command, bad -v, OOM, bad user), leave nothing behind: no mount, no container
//! cgroup dir (v1 `vcompare-<id>` or v2 `vcompare/<id>`), no instance dir, no container
//! process. Each failure must be the specific exit code and message for its cause. Runs alone
//! (`threads-required` in .config/nextest.toml). Needs root and /bin/busybox.

mod common;

#[path = "../container/tests/common/cgroup_dirs.rs"]
mod cgroup_dirs;

use std::process::Stdio;

use cgroup_dirs::container_cgroup_dirs;

/// Direct children of this test process, zombies included. With this process as the child
/// subreaper, a container the CLI failed to reap is reparented here instead of to init, so it
/// is counted however it was orphaned (and whichever uid it runs as).
fn children_of_me() -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (ppid == me).then_some(stat)
        })
        .collect()
}

#[test]
fn one_hundred_cli_runs_leave_nothing_behind() {
    crate::require_root!();
    // SAFETY: prctl with constant arguments only changes this process's own attribute.
    assert_eq!(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
        0
    );
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
        common::test_host::host_cmd(env!("CARGO_BIN_EXE_vcompare"))
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

    let (c0, p0) = (container_cgroup_dirs(), children_of_me());
    assert!(p0.is_empty(), "children before the runs: {p0:?}");
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
        let (code, stderr_needle) = match i % 6 {
            0 => (127, "vcompare: command \"no-such-command\" was not found in the image's PATH"),
            1 => (125, "vcompare: error: bad -v `/nonexistent/vcompare:/x`: the host path /nonexistent/vcompare does not exist"),
            2 => (137, "vcompare: the instance was killed for exceeding its --memory limit (out of memory); raise --memory"),
            3 => (125, "vcompare: error: invalid container configuration: user 70000:0 is outside the user namespace's mapped range 0-65535"),
            _ => (0, ""),
        };
        let (stdout, stderr) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert_eq!(o.status.code(), Some(code), "run {i}: {stderr}");
        if code == 0 {
            assert_eq!(stdout, "ok\n", "run {i}: {stderr}");
        } else {
            assert!(stderr.contains(stderr_needle), "run {i}: {stderr}");
        }
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(&root_s),
        "a mount under the data root leaked"
    );
    assert_eq!(container_cgroup_dirs(), c0, "cgroup dirs leaked");
    let left = children_of_me();
    assert!(left.is_empty(), "container processes leaked: {left:?}");
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
