//! End-to-end tests of `vcompare_container::run` with real containers (need root, busybox).

mod common;

use common::*;
use vcompare_container::*;

#[test]
fn pid1_hostname_and_mapped_root() {
    crate::require_root!();
    let sb = Sandbox::new();
    let cfg =
        sb.config("echo pid=$$; hostname; id -u; cat /proc/self/uid_map; cat /proc/self/gid_map");
    let (st, out) = run_capture(&sb, &cfg);
    assert_eq!(st, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "c0ffee123456");
    assert_eq!(lines[2], "0");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["0", "100000", "65536"]
    );
}

#[test]
fn root_in_container_is_not_root_on_host() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut cfg = sb.config("sleep 30");
    let (tx, rx) = std::sync::mpsc::channel();
    cfg.timeout = Some(std::time::Duration::from_secs(20));
    let h = std::thread::spawn(move || run(&cfg, &mut Tx(tx)));
    let pid = rx.recv().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "100000"),
        "{uid_line}"
    );
    kill9(pid);
    assert_eq!(h.join().unwrap().unwrap(), ExitStatus::Signaled(9));
}

#[test]
fn userns_host_means_no_mapping() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut cfg = sb.config("cat /proc/self/uid_map");
    cfg.userns = None;
    let (st, out) = run_capture(&sb, &cfg);
    assert_eq!(st, ExitStatus::Exited(0));
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
}

#[test]
fn host_processes_are_invisible() {
    crate::require_root!();
    let sb = Sandbox::new();
    let (st, out) = run_capture(
        &sb,
        &sb.config("ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '"),
    );
    assert_eq!(st, ExitStatus::Exited(0));
    let pids: Vec<u32> = out.split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert!(pids.contains(&1), "{out}");
    assert!(pids.len() <= 4, "container sees too many processes: {out}");
}

#[test]
fn only_loopback_and_it_is_up() {
    crate::require_root!();
    let sb = Sandbox::new();
    let (st, out) = run_capture(
        &sb,
        &sb.config("ls /sys/class/net; cat /sys/class/net/lo/operstate /sys/class/net/lo/flags"),
    );
    assert_eq!(st, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "lo");
    // IFF_UP is bit 0 of the flags.
    let flags = u32::from_str_radix(lines[2].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "{out}");
}

#[test]
fn exit_code_and_signal() {
    crate::require_root!();
    let sb = Sandbox::new();
    assert_eq!(
        run_capture(&sb, &sb.config("exit 42")).0,
        ExitStatus::Exited(42)
    );
    // With --init the command is not PID 1, so it can die of a signal; the reaper reports 128+N.
    let mut cfg = sb.config("kill -TERM $$; sleep 5");
    cfg.init = true;
    assert_eq!(run_capture(&sb, &cfg).0, ExitStatus::Exited(128 + 15));
}

#[test]
fn init_reaper_is_pid1() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut cfg = sb.config("echo $$; cat /proc/1/comm; (sleep 0.1 &) ; exit 5");
    cfg.init = true;
    let (st, out) = run_capture(&sb, &cfg);
    assert_eq!(st, ExitStatus::Exited(5));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2");
    assert_eq!(lines[1], "vcompare-init");
}

#[test]
fn memory_limit_is_enforced_and_oom_reported() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut cfg = sb.config("awk 'BEGIN{s=\"x\"; for(i=0;i<40;i++) s=s s; print length(s)}'");
    cfg.resources.memory_bytes = Some(32 << 20);
    // The OOM kill is read from the real counter of the host's cgroup version.
    eprintln!(
        "real OOM path: {}",
        if host_is_cgroup_v2() {
            "cgroup v2 (memory.max, memory.events)"
        } else {
            "cgroup v1 (memory.limit_in_bytes, memory.oom_control)"
        }
    );
    let (st, out) = run_capture(&sb, &cfg);
    assert_eq!(st, ExitStatus::OomKilled, "{out}");
    // Below the limit it runs fine.
    let mut cfg = sb.config("awk 'BEGIN{s=\"x\"; for(i=0;i<20;i++) s=s s; print length(s)}'");
    cfg.resources.memory_bytes = Some(32 << 20);
    assert_eq!(run_capture(&sb, &cfg).0, ExitStatus::Exited(0));
}

/// The cgroup version the runtime used for a running container, checked against the host's
/// (independently detected) and named in the output: this hybrid host runs the v1 path for
/// real, a v2-only host the v2 path (the v2 code also runs everywhere against a fake cgroupfs,
/// in the unit tests of `cgroups.rs`).
fn cgroup_of_running(pid: i32) -> cgroups::Cgroup {
    let cg = cgroups::Cgroup::of_pid(pid).unwrap();
    let want = if host_is_cgroup_v2() {
        cgroups::Version::V2
    } else {
        cgroups::Version::V1
    };
    assert_eq!(
        cg.version, want,
        "the runtime picked the wrong cgroup version"
    );
    eprintln!("checked the real cgroup {want:?} path: {:?}", cg.dirs);
    cg
}

/// Reads one interface file of a controller's directory (`unified` on v2), trimmed.
fn cgroup_file(cg: &cgroups::Cgroup, controller: &str, file: &str) -> String {
    let dir = &cg
        .dirs
        .iter()
        .find(|(c, _)| *c == controller)
        .unwrap_or_else(|| panic!("no {controller} cgroup in {:?}", cg.dirs))
        .1;
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

/// --memory, --cpus and --pids-limit land in the files of the host's cgroup version (read from
/// the host while the container runs), and the pids limit makes fork fail inside.
#[test]
fn limits_land_in_the_hosts_cgroup_version_and_pids_stop_fork() {
    crate::require_root!();
    let sb = Sandbox::new();
    // Holds until the host has checked the files, then forks more than the limit allows.
    let mut cfg = sb.config(
        "while [ ! -e /out/go ]; do sleep 0.01; done; \
         for i in 1 2 3 4 5 6 7 8; do sleep 30 & done; wait; echo done",
    );
    cfg.resources.memory_bytes = Some(64 << 20);
    cfg.resources.cpus = Some(0.5);
    cfg.resources.pids_limit = Some(4);
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || run(&cfg, &mut Tx(tx)));
    let go = ReleaseOnDrop(sb.out.join("go"));
    let pid = rx.recv().unwrap();
    let cg = cgroup_of_running(pid);
    match cg.version {
        cgroups::Version::V1 => {
            assert_eq!(
                cgroup_file(&cg, "memory", "memory.limit_in_bytes"),
                "67108864"
            );
            assert_eq!(cgroup_file(&cg, "cpu", "cpu.cfs_period_us"), "100000");
            assert_eq!(cgroup_file(&cg, "cpu", "cpu.cfs_quota_us"), "50000");
            assert_eq!(cgroup_file(&cg, "pids", "pids.max"), "4");
        }
        cgroups::Version::V2 => {
            assert_eq!(cgroup_file(&cg, "unified", "memory.max"), "67108864");
            assert_eq!(cgroup_file(&cg, "unified", "cpu.max"), "50000 100000");
            assert_eq!(cgroup_file(&cg, "unified", "pids.max"), "4");
        }
    }
    drop(go);
    let st = h.join().unwrap().unwrap();
    let out = sb.stdout();
    // sh plus three `sleep`s fill the limit of 4; the fourth fork fails, which ends the
    // non-interactive shell with status 2 (and, as it is PID 1, the whole container).
    assert_eq!(
        (st, out.as_str()),
        (
            ExitStatus::Exited(2),
            "/bin/sh: can't fork: Resource temporarily unavailable\n"
        ),
        "the pids limit did not stop fork"
    );
}

#[test]
fn volumes_rw_ro_and_missing() {
    crate::require_root!();
    let sb = Sandbox::new();
    let data = sb.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "hostdata").unwrap();
    let mut cfg = sb.config(
        "cat /data/f; echo; echo x > /data/g && echo wrote || echo refused; mount | grep ' /data '",
    );
    cfg.volumes.push(Volume {
        host: data.clone(),
        guest: "/data".into(),
        readonly: true,
    });
    let (st, out) = run_capture(&sb, &cfg);
    assert_eq!(st, ExitStatus::Exited(0));
    assert!(out.starts_with("hostdata\n"), "{out}");
    assert!(out.contains("refused"), "{out}");
    assert!(out.contains("(ro"), "{out}");
    assert!(!data.join("g").exists());

    let mut cfg = sb.config("true");
    cfg.volumes.push(Volume {
        host: sb.dir.path().join("nope"),
        guest: "/x".into(),
        readonly: false,
    });
    match run(&cfg, &mut NoObserver) {
        Err(Error::VolumeSourceMissing(p)) => assert!(p.ends_with("nope")),
        other => panic!("expected VolumeSourceMissing, got {other:?}"),
    }
}

/// A symlink planted in the container's own layer cannot redirect a later `-v` target or `-w`
/// to the host: both resolve inside the container's root. A symlink to a directory missing in
/// the container is a clear error, never a host path.
#[test]
fn no_escape_through_symlinks_or_dotdot() {
    crate::require_root!();
    let sb = Sandbox::new();
    let marker = format!("/tmp/vcompare-escape-{}", std::process::id());
    let _ = std::fs::remove_dir_all(&marker);
    let cfg = sb.config(&format!("ln -s /../../../../..{marker} /escape && ln -s ../../../../nowhere /dangling && mkdir -p {marker}"));
    assert_eq!(run_capture(&sb, &cfg).0, ExitStatus::Exited(0));

    let data = sb.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let mut cfg = sb.config(&format!("pwd; ls -d {marker}/vol {marker}/wd"));
    cfg.volumes.push(Volume {
        host: data.clone(),
        guest: "/escape/vol".into(),
        readonly: false,
    });
    cfg.process.cwd = "/escape/../../escape/wd".into();
    let (st, out) = run_capture(&sb, &cfg);
    assert_eq!(st, ExitStatus::Exited(0), "{out}");
    assert!(
        !std::path::Path::new(&marker).exists(),
        "a mount target escaped to the host: {marker}"
    );
    assert_eq!(out, format!("{marker}/wd\n{marker}/vol\n{marker}/wd\n"));

    let mut cfg = sb.config("true");
    cfg.volumes.push(Volume {
        host: data,
        guest: "/dangling/vol".into(),
        readonly: false,
    });
    let r = run(&cfg, &mut NoObserver);
    assert!(matches!(r, Err(Error::Setup { .. })), "{r:?}");
    assert!(!std::path::Path::new("/nowhere").exists());
}

#[test]
fn lower_layer_is_never_written_and_upper_persists() {
    crate::require_root!();
    let sb = Sandbox::new();
    let cfg = sb.config("rm /bin/ls && echo changed > /etc/passwd && echo new > /root/file");
    assert_eq!(run_capture(&sb, &cfg).0, ExitStatus::Exited(0));
    let lower = rootfs();
    assert!(std::fs::symlink_metadata(lower.join("bin/ls")).is_ok());
    assert!(std::fs::read_to_string(lower.join("etc/passwd"))
        .unwrap()
        .starts_with("root:"));
    // A second run on the same instance sees its own changes (the kept RW layer)…
    let (st, out) = run_capture(
        &sb,
        &sb.config("cat /root/file /etc/passwd; test -e /bin/ls || echo gone"),
    );
    assert_eq!(st, ExitStatus::Exited(0));
    assert_eq!(out, "new\nchanged\ngone\n");
    // …and remove() deletes it.
    remove(&sb.instance()).unwrap();
    assert!(!sb.instance().join("upper").exists());
}

#[test]
fn bad_command_is_a_clear_error() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut cfg = sb.config("");
    cfg.process.args = vec!["no-such-command".into()];
    match run(&cfg, &mut NoObserver) {
        Err(e @ Error::CommandNotFound(_)) => assert!(e.to_string().contains("no-such-command")),
        other => panic!("expected CommandNotFound, got {other:?}"),
    }
    cfg.process.args = vec!["/etc/passwd".into()];
    assert!(matches!(
        run(&cfg, &mut NoObserver),
        Err(Error::CommandNotExecutable { .. })
    ));
}

#[test]
fn user_and_workdir() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut cfg = sb.config("id -u; id -g; pwd");
    cfg.process.uid = 1000;
    cfg.process.gid = 1001;
    cfg.process.cwd = "/home/app".into();
    let (st, out) = run_capture(&sb, &cfg);
    assert_eq!(st, ExitStatus::Exited(0), "{out}");
    assert_eq!(out, "1000\n1001\n/home/app\n");
}

#[test]
fn timeout_kills() {
    crate::require_root!();
    let sb = Sandbox::new();
    // Only the timeout can end this command before its 10 minutes are up.
    let mut cfg = sb.config("echo started; sleep 600; echo finished");
    cfg.timeout = Some(std::time::Duration::from_secs(1));
    let id = cfg.id.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(run(&cfg, &mut NoObserver)));
    // A guard against a hang if the timeout never fires, not a timing assertion.
    let st = rx
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("the 1 s timeout did not end a 600 s command");
    assert_eq!(st.unwrap(), ExitStatus::TimedOut);
    assert_eq!(sb.stdout(), "started\n");
    // Killed and cleaned up: the container's cgroup (and so every process in it) is gone.
    let left: Vec<_> = common::cgroup_dirs::container_cgroup_dirs()
        .into_iter()
        .filter(|d| d.id == id)
        .collect();
    assert!(left.is_empty(), "cgroup left after the timeout: {left:?}");
}

#[test]
fn dev_and_masked_paths() {
    crate::require_root!();
    let sb = Sandbox::new();
    let script =
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c; test -c /dev/urandom && echo urandom; \
                  test -e /dev/pts/ptmx && echo ptmx; \
                  (echo 1 > /proc/sys/kernel/hostname) 2>/dev/null || echo procsys-ro; \
                  (touch /sys/x) 2>/dev/null || echo sys-ro; \
                  ls /sys/firmware | wc -l";
    let (st, out) = run_capture(&sb, &sb.config(script));
    assert_eq!(st, ExitStatus::Exited(0), "{out}");
    assert_eq!(out, "4\nurandom\nptmx\nprocsys-ro\nsys-ro\n0\n");
}

#[test]
fn phases_are_reported_in_order() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut rec = Recorder::default();
    run(&sb.config("true"), &mut rec).unwrap();
    let names: Vec<Phase> = rec.phases.iter().map(|p| p.0).collect();
    // Cgroup join and the child's mounts run concurrently; their marks may come in either order.
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(&names[..2], [Phase::Namespaces, Phase::Rootfs]);
    assert!(names[2..4].contains(&Phase::Cgroup) && names[2..4].contains(&Phase::Mounts));
    assert_eq!(names[4], Phase::Exec);
    let t = |p: Phase| rec.phases.iter().find(|x| x.0 == p).unwrap().1;
    assert!(t(Phase::Namespaces) <= t(Phase::Rootfs) && t(Phase::Rootfs) <= t(Phase::Mounts));
    assert!(t(Phase::Mounts) <= t(Phase::Exec) && t(Phase::Cgroup) <= t(Phase::Exec));
}

#[test]
fn tty_gives_a_pty_from_the_container_devpts() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut cfg = sb.config("");
    cfg.process.args = vec!["/bin/sh".into(), "-c".into(), "t=no; test -t 0 && test -t 1 && t=tty; { echo $t; readlink /proc/self/fd/0; test -e $(readlink /proc/self/fd/0) && echo exists; } > /out/stdout 2>&1".into()];
    cfg.tty = true;
    let (st, out) = run_capture(&sb, &cfg);
    assert_eq!(st, ExitStatus::Exited(0), "{out}");
    assert_eq!(out, "tty\n/dev/pts/0\nexists\n");
}

/// Even with `--userns host` (container root = host root), the container keeps only the
/// default capabilities: no CAP_SYS_ADMIN, so it cannot mount its way out.
#[test]
fn capabilities_are_limited_to_the_default_set() {
    crate::require_root!();
    let sb = Sandbox::new();
    let mut cfg = sb.config("grep -E '^Cap(Eff|Bnd|Inh)' /proc/self/status; mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo refused");
    cfg.userns = None;
    let (st, out) = run_capture(&sb, &cfg);
    assert_eq!(st, ExitStatus::Exited(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    // Inheritable empty; effective and bounding = Docker's default set: CHOWN DAC_OVERRIDE
    // FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD
    // AUDIT_WRITE SETFCAP = 0xa80425fb.
    let value = |i: usize| lines[i].split_whitespace().nth(1);
    assert_eq!(value(0), Some("0000000000000000"), "{out}");
    assert_eq!(value(1), Some("00000000a80425fb"), "{out}");
    assert_eq!(value(2), Some("00000000a80425fb"), "{out}");
    assert_eq!(lines[3], "refused");
}

/// The cgroup v2 start path (`clone3(CLONE_INTO_CGROUP)`), exercised on whatever cgroup2
/// hierarchy exists (on this hybrid host the nearly empty /sys/fs/cgroup/unified).
#[test]
fn clone_into_cgroup_v2_places_the_child() {
    crate::require_root!();
    let base = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .find(|p| {
            nix::sys::statfs::statfs(*p)
                .map(|s| s.filesystem_type().0 == 0x6367_7270)
                .unwrap_or(false)
        });
    crate::skip_unless!(
        base.is_some(),
        "no cgroup2 hierarchy is mounted (neither /sys/fs/cgroup nor /sys/fs/cgroup/unified)"
    );
    let base = base.unwrap();
    let dir =
        std::path::Path::new(base).join(format!("vcompare-clone3-test-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let fd = std::fs::File::open(&dir).unwrap();
    let pid = match sys::clone_into_cgroup(0, std::os::fd::AsFd::as_fd(&fd)) {
        // SAFETY: the child only waits for a signal.
        Ok(0) => unsafe {
            libc::pause();
            libc::_exit(0)
        },
        Ok(pid) => pid,
        Err(e) => panic!("clone3 failed: {e}"),
    };
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    let name = dir.file_name().unwrap().to_str().unwrap();
    assert!(
        cg.lines()
            .any(|l| l.starts_with("0::") && l.ends_with(name)),
        "{cg}"
    );
}
