//! The `run` verb, host side: creates one container and waits for it. The start path is
//! deliberately lean: one `clone` with every namespace flag, the parent writes the id maps and
//! cgroup membership and builds the overlay while the child waits on the setup socket, then the
//! child ([`crate::child::run_child`]) mounts, pivots and `execve`s — no intermediate
//! processes, no sleeps, no polling. Parent and child talk through [`crate::channel`].

use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use crate::cgroups::{Cgroup, Resources};
use crate::channel::{self, Reporter, SetupSocket};
use crate::child::{self, RunChild};
use crate::error::{Error, Result};
use crate::mounts::{MountPlan, Volume};
use crate::parent::{open_dev_null, CgroupGuard, ChildGuard, CGROUP_RECORD};
use crate::phases::{Observer, Phase};
use crate::process::ProcessPlan;
use crate::rootfs::{self, Layout};
use crate::signals::SignalForwarding;
use crate::sys::{self, Ended};
use crate::tty::PtyRelay;
use crate::user_ns::IdMap;
use crate::{namespaces, watchdog};
use vcompare_spec::ProcessSpec;

/// Everything about one container, independent of the CLI's types.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// Instance id (64 hex); names the cgroup.
    pub id: String,
    /// The image's unpacked rootfs: the overlay's read-only lower layer.
    pub rootfs: std::path::PathBuf,
    /// Per-instance directory: upper/work dirs (kept across runs) and the cgroup record.
    pub instance_dir: std::path::PathBuf,
    /// The entrypoint: argv, environment, working directory, user.
    pub process: ProcessSpec,
    /// UTS hostname.
    pub hostname: String,
    /// `-v` bind mounts.
    pub volumes: Vec<Volume>,
    /// cgroup limits.
    pub resources: Resources,
    /// `Some(map)` = new user namespace with this mapping (the default); `None` = `--userns host`.
    pub userns: Option<IdMap>,
    /// Share the host network stack instead of a new namespace with only `lo`.
    pub network_host: bool,
    /// Run the `--init` reaper as PID 1.
    pub init: bool,
    /// Keep stdin connected (`-i`); otherwise the container reads /dev/null.
    pub interactive: bool,
    /// `-t`: give the container a pseudo-terminal (from its own devpts) relayed to our stdio.
    pub tty: bool,
    /// Watchdog: SIGKILL the container after this long and report `TimedOut`.
    pub timeout: Option<Duration>,
}

/// How the container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ExitStatus {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Killed by the OOM killer because of the memory limit.
    OomKilled,
    /// Killed by the watchdog.
    TimedOut,
}

/// Checks what can be checked before anything is created on the host.
fn validate(cfg: &ContainerConfig) -> Result<()> {
    if !cfg.rootfs.is_dir() {
        return Err(Error::RootfsMissing(cfg.rootfs.clone()));
    }
    if cfg.hostname.is_empty() || cfg.hostname.len() > 64 {
        return Err(Error::InvalidConfig(format!(
            "hostname {:?} must be 1 to 64 characters",
            cfg.hostname
        )));
    }
    if let Some(m) = cfg.userns {
        if cfg.process.uid >= m.size || cfg.process.gid >= m.size {
            return Err(Error::InvalidConfig(format!(
                "user {}:{} is outside the user namespace's mapped range 0-{}",
                cfg.process.uid,
                cfg.process.gid,
                m.size - 1
            )));
        }
    }
    Ok(())
}

/// Creates the container, runs its command and waits for it to end; forwards SIGINT, SIGTERM,
/// SIGHUP and SIGQUIT received meanwhile to it; removes the cgroup and every mount on every path
/// (the upper dir stays until [`crate::remove`]).
pub fn run(cfg: &ContainerConfig, obs: &mut dyn Observer) -> Result<ExitStatus> {
    validate(cfg)?;
    let process = ProcessPlan::new(&cfg.process)?;
    let mounts = MountPlan::standard(&cfg.volumes, !cfg.network_host, true)?;
    let layout = Layout::new(&cfg.instance_dir);
    layout.create(cfg.userns.map(|m| m.host_base).unwrap_or(0))?;
    let mountpoint = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(
        layout.mountpoint.as_os_str(),
    ))
    .map_err(|_| Error::InvalidConfig("instance dir contains a NUL byte".into()))?;

    let cg = Cgroup::create(&cfg.id, &cfg.resources)?;
    let record = cfg.instance_dir.join(CGROUP_RECORD);
    let _cg_guard = CgroupGuard {
        cg: &cg,
        record: record.clone(),
    };
    let paths: Vec<String> = cg
        .dirs
        .iter()
        .map(|(_, d)| d.display().to_string())
        .collect();
    std::fs::write(&record, paths.join("\n"))
        .map_err(|e| Error::io("recording the cgroup paths", &record, e))?;

    let stdin_null = if cfg.interactive || cfg.tty {
        None
    } else {
        Some(open_dev_null()?)
    };
    let (setup_parent, setup_child) = sys::seqpacket_pair("creating the setup socket")?;
    let setup = SetupSocket::new(setup_parent);
    let (rep_read, rep_write) = sys::pipe_cloexec()?;

    let tasks = cg.open_self_attach_files()?;
    let self_attach = !tasks.is_empty();
    let flags = namespaces::clone_flags(cfg.userns.is_some(), cfg.network_host);
    let ctx = RunChild {
        setup: SetupSocket::new(setup_child),
        report: Reporter::new(rep_write),
        stdin_null,
        tty: cfg.tty,
        cgroup_tasks: tasks,
        hostname: cfg.hostname.as_bytes(),
        userns: cfg.userns.is_some(),
        own_netns: !cfg.network_host,
        mountpoint: &mountpoint,
        mounts: &mounts,
        process: &process,
        init: cfg.init,
    };
    let signals = SignalForwarding::install();
    // v2: start the child directly inside its cgroup when the kernel allows it.
    let v2_dir = cg.open_v2_dir();
    let mut in_cgroup = false;
    let first = match &v2_dir {
        Some(d) => match sys::clone_into_cgroup(flags, d.as_fd()) {
            Err(libc::ENOSYS) | Err(libc::E2BIG) | Err(libc::EINVAL) => None,
            r => {
                in_cgroup = true;
                Some(r)
            }
        },
        None => None,
    };
    let pid = match first.unwrap_or_else(|| sys::clone_fork(flags)) {
        Ok(0) => child::run_child(ctx),
        Ok(pid) => pid,
        Err(e) => {
            return Err(Error::sys(
                "clone with new namespaces",
                nix::errno::Errno::from_raw(e),
                "user namespaces may be disabled (sysctl user.max_user_namespaces) or the namespace limits reached",
            ))
        }
    };
    let mut guard = ChildGuard::new(pid);
    signals.set_child(pid);
    // Our copies of the child's ends: the report pipe must hit EOF when the child execs.
    drop(ctx);
    drop(v2_dir);

    // Any parent-side failure while the child is being set up: the child may have failed first
    // (and its report is the real cause), so stop it and prefer its failure record.
    let prefer_child_error = |e: Error| -> Error {
        sys::kill(pid, libc::SIGKILL);
        match channel::read_reports(rep_read.as_fd(), |_, _| {}) {
            Err(child) => child.into_error(Some(&mounts), &process),
            Ok(()) => e,
        }
    };
    let relay = (|| -> Result<Option<PtyRelay>> {
        if let Some(map) = cfg.userns {
            map.write_maps(pid)?;
        }
        obs.phase(Phase::Namespaces, sys::monotonic_ns());
        if !cfg.network_host {
            obs.network_namespace(pid).map_err(Error::Network)?;
        }
        let userns_fd = match cfg.userns {
            Some(_) => {
                let p = format!("/proc/{pid}/ns/user");
                Some(OwnedFd::from(std::fs::File::open(&p).map_err(|e| {
                    Error::io("opening the container's user namespace", p, e)
                })?))
            }
            None => None,
        };
        let overlay =
            rootfs::build_overlay(&cfg.rootfs, &layout, userns_fd.as_ref().map(|f| f.as_fd()))?;
        drop(userns_fd);
        setup.send_fd(overlay.as_fd()).map_err(|e| {
            Error::io(
                "handing the root filesystem to the container",
                "setup socket",
                std::io::Error::from_raw_os_error(e),
            )
        })?;
        drop(overlay);
        obs.phase(Phase::Rootfs, sys::monotonic_ns());
        // v1: the child has joined by itself (no global lock). v2: join it now, while the child
        // mounts, so that the attach latency overlaps with the child's work.
        if !self_attach && !in_cgroup {
            cg.add_pid(pid)?;
        }
        setup.release().map_err(|e| {
            Error::sys(
                "releasing the container after joining its cgroup",
                nix::errno::Errno::from_raw(e),
                "the container setup died",
            )
        })?;
        if !self_attach {
            // v2 (the child reports its own v1 self-attach through the report pipe).
            obs.phase(Phase::Cgroup, sys::monotonic_ns());
        }
        // -t: the child sends the pty master once in its cgroup (or fails, closing the socket).
        if cfg.tty {
            let m = setup.recv_fd().map_err(|e| {
                Error::sys(
                    "receiving the container's pseudo-terminal",
                    nix::errno::Errno::from_raw(e),
                    "the container setup died",
                )
            })?;
            return Ok(Some(PtyRelay::start(m)));
        }
        Ok(None)
    })();
    let _relay = relay.map_err(prefer_child_error)?;
    drop(setup);

    // Wait for the child's reports; EOF = execve succeeded (the pipe is close-on-exec).
    channel::read_reports(rep_read.as_fd(), |p, t| obs.phase(p, t))
        .map_err(|f| f.into_error(Some(&mounts), &process))?;
    drop(rep_read);
    obs.phase(Phase::Exec, sys::monotonic_ns());
    obs.started(pid);

    let timed_out = match cfg.timeout {
        Some(t) => watchdog::wait_or_kill(pid, t),
        None => false,
    };
    let ended = sys::wait_child(pid, "waiting for the container")?;
    guard.disarm();
    drop(signals);
    Ok(exit_status(ended, timed_out, cfg.init, || {
        cg.oom_kills() > 0
    }))
}

/// Classifies how the container ended. An OOM kill shows up as SIGKILL of PID 1, or with
/// `--init` as the reaper passing on 128+SIGKILL; `oom` is only asked in those cases.
fn exit_status(ended: Ended, timed_out: bool, init: bool, oom: impl Fn() -> bool) -> ExitStatus {
    if timed_out {
        return ExitStatus::TimedOut;
    }
    match ended {
        Ended::Signaled(sig) if sig == libc::SIGKILL && oom() => ExitStatus::OomKilled,
        Ended::Signaled(sig) => ExitStatus::Signaled(sig),
        Ended::Exited(code) if code == 128 + libc::SIGKILL && init && oom() => {
            ExitStatus::OomKilled
        }
        Ended::Exited(code) => ExitStatus::Exited(code),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_tells_oom_and_timeout_apart() {
        let k = libc::SIGKILL;
        assert_eq!(
            exit_status(Ended::Exited(3), false, false, || true),
            ExitStatus::Exited(3)
        );
        assert_eq!(
            exit_status(Ended::Exited(3), true, false, || true),
            ExitStatus::TimedOut
        );
        assert_eq!(
            exit_status(Ended::Signaled(k), false, false, || true),
            ExitStatus::OomKilled
        );
        assert_eq!(
            exit_status(Ended::Signaled(k), false, false, || false),
            ExitStatus::Signaled(k)
        );
        assert_eq!(
            exit_status(Ended::Exited(128 + k), false, true, || true),
            ExitStatus::OomKilled
        );
        assert_eq!(
            exit_status(Ended::Exited(128 + k), false, false, || true),
            ExitStatus::Exited(128 + k)
        );
    }
}
