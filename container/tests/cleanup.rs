//! Every path cleans up: after many runs, most failing on purpose (bad command, not executable,
//! bad -v, OOM, bad user), the host has the same mounts and child processes as before and no
//! cgroup directory (v1 or v2 naming) of any of these containers. Each failure must be the
//! specific error for its cause. Runs alone (`threads-required` in .config/nextest.toml).

mod common;

use common::cgroup_dirs::container_cgroup_dirs;
use common::*;
use vcompare_container::*;

/// Direct children of this test process, zombies included (container PID 1s are its children).
fn children_of_me() -> Vec<i32> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
            (ppid == me).then_some(pid)
        })
        .collect()
}

/// The leak check below sees this host's cgroup naming: a running container's cgroup is listed
/// under its id (otherwise "no leaked cgroup" would hold trivially).
fn checker_sees_a_live_container(sb: &Sandbox) {
    let mut cfg = sb.config("while [ ! -e /out/release ]; do sleep 0.01; done");
    cfg.resources.memory_bytes = Some(64 << 20);
    let id = cfg.id.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let release = ReleaseOnDrop(sb.out.join("release"));
    let h = std::thread::spawn(move || run(&cfg, &mut Tx(tx)));
    rx.recv().unwrap();
    let live: Vec<_> = container_cgroup_dirs()
        .into_iter()
        .filter(|d| d.id == id)
        .collect();
    drop(release);
    assert_eq!(h.join().unwrap().unwrap(), ExitStatus::Exited(0));
    std::fs::remove_file(sb.out.join("release")).unwrap();
    assert!(
        !live.is_empty(),
        "the leak checker does not see the running container's cgroup {id}"
    );
}

#[test]
fn one_hundred_runs_leave_nothing_behind() {
    crate::require_root!();
    let sb = Sandbox::new();
    // Warm up (creates the shared rootfs) before taking the baseline.
    run(&sb.config("true"), &mut NoObserver).unwrap();
    checker_sees_a_live_container(&sb);
    let (m0, p0) = (mount_table(), children_of_me());
    let mut ids = Vec::new();
    for i in 0..100 {
        let mut cfg = sb.config("echo ok");
        let r = match i % 6 {
            0 => {
                let r = run(&cfg, &mut NoObserver);
                assert_eq!(sb.stdout(), "ok\n", "run {i}");
                r
            }
            1 => {
                cfg.process.args = vec!["no-such-command".into()];
                run(&cfg, &mut NoObserver)
            }
            2 => {
                cfg.process.args = vec!["/etc/passwd".into()];
                run(&cfg, &mut NoObserver)
            }
            3 => {
                cfg.volumes.push(Volume {
                    host: "/nonexistent/vcompare".into(),
                    guest: "/x".into(),
                    readonly: true,
                });
                run(&cfg, &mut NoObserver)
            }
            4 => {
                cfg = sb.config("awk 'BEGIN{s=\"x\"; for(i=0;i<40;i++) s=s s}'");
                cfg.resources.memory_bytes = Some(16 << 20);
                run(&cfg, &mut NoObserver)
            }
            _ => {
                cfg.process.uid = 70000; // outside the mapped range 0-65535
                run(&cfg, &mut NoObserver)
            }
        };
        match (i % 6, r) {
            (0, Ok(ExitStatus::Exited(0))) | (4, Ok(ExitStatus::OomKilled)) => {}
            (1, Err(Error::CommandNotFound(c))) => assert_eq!(c, "no-such-command"),
            (2, Err(Error::CommandNotExecutable { cmd, errno })) => {
                assert_eq!(
                    (cmd.as_str(), errno),
                    ("/etc/passwd", nix::errno::Errno::EACCES)
                )
            }
            (3, Err(Error::VolumeSourceMissing(p))) => {
                assert_eq!(p, std::path::Path::new("/nonexistent/vcompare"))
            }
            (5, Err(Error::InvalidConfig(m))) => assert_eq!(
                m,
                "user 70000:0 is outside the user namespace's mapped range 0-65535"
            ),
            (kind, r) => panic!("run {i} (kind {kind}): unexpected result {r:?}"),
        }
        ids.push(cfg.id);
    }
    assert_eq!(mount_table(), m0, "mounts leaked or changed");
    let leaked: Vec<_> = container_cgroup_dirs()
        .into_iter()
        .filter(|d| ids.contains(&d.id))
        .collect();
    assert!(leaked.is_empty(), "cgroup dirs leaked: {leaked:?}");
    assert_eq!(children_of_me(), p0, "processes leaked");
    remove(&sb.instance()).unwrap();
    assert!(!sb.instance().join("upper").exists());
}
