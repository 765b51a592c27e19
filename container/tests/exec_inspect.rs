//! `exec` into and `inspect` of a running container (need root, busybox).

mod common;

use common::*;
use vcompare_container::*;

struct Tx(std::sync::mpsc::Sender<i32>);
impl Observer for Tx {
    fn started(&mut self, pid: i32) {
        self.0.send(pid).unwrap();
    }
    fn phase(&mut self, _: Phase, _: u64) {}
}

#[test]
fn exec_joins_namespaces_and_cgroup_and_inspect_shows_both_views() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let sb = Sandbox::new();
    let mut cfg = sb.config("echo main > /tmp/marker; sleep 30");
    cfg.resources.memory_bytes = Some(64 << 20);
    cfg.timeout = Some(std::time::Duration::from_secs(25));
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || run(&cfg, &mut Tx(tx)));
    let pid = rx.recv().unwrap();

    // exec: same hostname, same filesystem (sees /tmp/marker written by the main process),
    // not PID 1 but a small pid in the container's PID namespace, same cgroup (seen as "/").
    let e = exec::ExecConfig {
        args: vec!["/bin/sh".into(), "-c".into(), "sleep 0.2; exec > /out/exec 2>&1; echo $$; hostname; cat /tmp/marker; id -u; grep memory /proc/self/cgroup; exit 3".into()],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
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
    assert!(lines[4].ends_with(":memory:/"), "{out}");

    // exec -t: a pty from the container's devpts.
    let mut t = e.clone();
    t.tty = true;
    t.args = vec!["/bin/sh".into(), "-c".into(), "x=no; test -t 0 && test -t 1 && x=tty; echo $x $(readlink /proc/self/fd/0) > /out/exec-tty".into()];
    assert_eq!(exec::exec(pid, &t).unwrap(), 0);
    assert_eq!(
        std::fs::read_to_string(sb.out.join("exec-tty")).unwrap(),
        "tty /dev/pts/0\n"
    );

    // exec of a missing command is a clear error.
    let mut bad = e.clone();
    bad.args = vec!["nope".into()];
    assert!(matches!(
        exec::exec(pid, &bad),
        Err(Error::CommandNotFound(_))
    ));

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

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(h.join().unwrap().unwrap(), ExitStatus::Signaled(9));
    assert!(matches!(inspect::inspect(pid), Err(Error::NotRunning(_))));
}
