//! `exec` into and `inspect` of a running container (need root, busybox).

mod common;

use common::*;
use vcompare_container::*;

/// What `/proc/self/cgroup` shows inside the container's cgroup namespace: its own cgroup as
/// the root. v2: the single unified line `0::/`. v1 (and hybrid): one line per hierarchy, each
/// `/` (the namespace was unshared after joining), including the memory controller's.
fn assert_cgroup_namespace_view(text: &str) {
    let lines: Vec<&str> = text.lines().collect();
    if host_is_cgroup_v2() {
        assert_eq!(lines, ["0::/"], "cgroup v2 view: {text}");
    } else {
        assert!(
            lines.iter().all(|l| l.ends_with(":/")),
            "cgroup v1 view: {text}"
        );
        assert!(
            lines.iter().any(|l| l.split(':').nth(1) == Some("memory")),
            "cgroup v1 view has no memory hierarchy: {text}"
        );
    }
}

#[test]
fn exec_joins_namespaces_and_cgroup_and_inspect_shows_both_views() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut cfg = sb.config("echo main > /tmp/marker; sleep 30");
    cfg.resources.memory_bytes = Some(64 << 20);
    cfg.timeout = Some(std::time::Duration::from_secs(25));
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || run(&cfg, &mut Tx(tx)));
    let pid = rx.recv().unwrap();
    // The main process has written its marker (seen from the host through its root).
    let marker = format!("/proc/{pid}/root/tmp/marker");
    wait_until("the container's /tmp/marker", || {
        std::fs::read_to_string(&marker).is_ok_and(|m| m == "main\n")
    });

    // exec: same hostname, same filesystem (sees /tmp/marker written by the main process),
    // not PID 1 but a small pid in the container's PID namespace, same cgroup (seen as "/").
    let e = exec::ExecConfig {
        process: vcompare_container::ProcessSpec {
            args: vec!["/bin/sh".into(), "-c".into(), "exec > /out/exec 2>&1; echo $$; hostname; cat /tmp/marker; id -u; cat /proc/self/cgroup; exit 3".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
        },
        interactive: false,
        tty: false,
    };
    let code = exec::exec(pid, &e).unwrap();
    assert_eq!(code, 3);
    let out = std::fs::read_to_string(sb.out.join("exec")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    let inner: u32 = lines[0].parse().unwrap();
    assert!(inner > 1 && inner < 100, "{out}");
    assert_eq!(lines[1], "c0ffee123456");
    assert_eq!(lines[2], "main");
    assert_eq!(lines[3], "0");
    assert_cgroup_namespace_view(&lines[4..].join("\n"));

    // exec -t: a pty from the container's devpts.
    let mut t = e.clone();
    t.tty = true;
    t.process.args = vec!["/bin/sh".into(), "-c".into(), "x=no; test -t 0 && test -t 1 && x=tty; echo $x $(readlink /proc/self/fd/0) > /out/exec-tty".into()];
    assert_eq!(exec::exec(pid, &t).unwrap(), 0);
    assert_eq!(
        std::fs::read_to_string(sb.out.join("exec-tty")).unwrap(),
        "tty /dev/pts/0\n"
    );

    // exec of a missing command is a clear error.
    let mut bad = e.clone();
    bad.process.args = vec!["nope".into()];
    match exec::exec(pid, &bad) {
        Err(Error::CommandNotFound(c)) => assert_eq!(c, "nope"),
        other => panic!("expected CommandNotFound(\"nope\"), got {other:?}"),
    }

    let v = inspect::inspect(pid).unwrap();
    assert_eq!(v["pid"]["host"], pid);
    assert_eq!(v["pid"]["container"], 1);
    assert_eq!(v["uid"]["host"], 100000);
    assert_eq!(v["uid"]["container"], 0);
    assert_eq!(v["hostname"]["container"], "c0ffee123456");
    assert_eq!(
        v["kernel_release"]["container"],
        v["kernel_release"]["host"]
    );
    for ns in ["user", "mnt", "pid", "uts", "ipc", "net", "cgroup"] {
        assert_eq!(v["namespaces"][ns]["separate"], true, "{ns}: {v}");
    }
    assert_eq!(v["cgroup"]["memory_limit_bytes"], 64u64 << 20);
    assert!(v["cgroup"]["memory_bytes"].as_u64().unwrap() > 0);

    kill9(pid);
    assert_eq!(h.join().unwrap().unwrap(), ExitStatus::Signaled(9));
    match inspect::inspect(pid) {
        Err(Error::NotRunning(p)) => assert_eq!(p, pid),
        other => panic!("expected NotRunning({pid}), got {other:?}"),
    }
}

/// `inspect`'s host view of a user namespace (`user_ns::read_uid_map`) on a namespace with a
/// known map, made here: it holds in the initial user namespace and inside a container alike,
/// because the map is written and read from this test's own namespace (our euid there as the
/// host side of a one-id map).
#[test]
fn read_uid_map_shows_a_child_namespace_map() {
    let (mut ready, mut release) = ([0i32; 2], [0i32; 2]);
    // SAFETY: plain pipe/fork; the child only calls async-signal-safe functions and _exits.
    let pid = unsafe {
        assert_eq!(libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC), 0);
        assert_eq!(libc::pipe2(release.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // Only the parent may hold the write end, or the read below never sees EOF.
            libc::close(release[1]);
            let ok: u8 = (libc::unshare(libc::CLONE_NEWUSER) == 0).into();
            libc::write(ready[1], (&ok as *const u8).cast(), 1);
            let mut b = 0u8;
            libc::read(release[0], (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
        libc::close(ready[1]);
        libc::close(release[0]);
        pid
    };
    let mut ok = 0u8;
    // SAFETY: reads one byte into a local from our own pipe.
    let n = unsafe { libc::read(ready[0], (&mut ok as *mut u8).cast(), 1) };
    let euid = nix::unistd::geteuid().as_raw();
    let map = if n == 1 && ok == 1 {
        std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {euid} 1\n"))
            .map(|()| vcompare_container::user_ns::read_uid_map(pid))
    } else {
        Err(std::io::Error::other("unshare(CLONE_NEWUSER) failed"))
    };
    // SAFETY: closing our pipe ends releases the child; then reap it.
    unsafe {
        libc::close(release[1]);
        libc::close(ready[0]);
    }
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    crate::skip_unless!(
        n == 1 && ok == 1,
        "creating a user namespace is not allowed here (user.max_user_namespaces or a seccomp policy)"
    );
    assert_eq!(map.unwrap(), Some((0, euid, 1)));
}
