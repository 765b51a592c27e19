//! The `exec` verb, host side: runs another command inside a running container by joining its
//! namespaces (`setns` on `/proc/PID/ns/*`, user namespace first) and its cgroup.
//!
//! Shape: the caller forks a helper ([`crate::child::exec_helper`]); the caller puts the helper
//! into the container's cgroup and lets it go; the helper joins the namespaces and forks again
//! (a PID namespace only applies to children), then relays signals to, and the exit status of,
//! the command it started. The command's pid inside the container is a fresh one, not 1. The
//! helper reports failures through the same [`crate::channel`] as `run`'s child.

use std::os::fd::AsFd;

use crate::cgroups::Cgroup;
use crate::channel::{self, Reporter, SetupSocket};
use crate::child::{self, ExecHelper};
use crate::error::{Error, Result};
use crate::namespaces::NsHandles;
use crate::parent::{open_dev_null, ChildGuard};
use crate::process::ProcessPlan;
use crate::signals::SignalForwarding;
use crate::sys;
use crate::tty::PtyRelay;
use vcompare_spec::ProcessSpec;

/// What to run inside the container.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// The process to start: argv, environment, working directory, user.
    pub process: ProcessSpec,
    /// Keep stdin connected (`-i`); otherwise /dev/null.
    pub interactive: bool,
    /// `-t`: a pseudo-terminal from the container's own devpts, relayed to our stdio.
    pub tty: bool,
}

/// Runs `cfg` inside the container whose PID 1 has host pid `pid`; returns the command's exit
/// code (128+N if it died of signal N). SIGINT/SIGTERM/SIGHUP/SIGQUIT are forwarded to it.
pub fn exec(pid: i32, cfg: &ExecConfig) -> Result<i32> {
    let ns = NsHandles::open(pid)?;
    let cg = Cgroup::of_pid(pid)?;
    let process = ProcessPlan::new(&cfg.process)?;
    let stdin_null = if cfg.interactive || cfg.tty {
        None
    } else {
        Some(open_dev_null()?)
    };
    let (go_parent, go_child) = sys::seqpacket_pair("creating the setup socket")?;
    let (rep_read, rep_write) = sys::pipe_cloexec()?;
    // v1: the helper moves itself through `tasks` (no global cgroup lock, see cgroups).
    let tasks = cg.open_self_attach_files()?;
    let self_attach = !tasks.is_empty();
    let (pty_parent, pty_child) = sys::seqpacket_pair("creating the pty socket")?;
    let ctx = ExecHelper {
        go: SetupSocket::new(go_child),
        report: Reporter::new(rep_write),
        cgroup_tasks: tasks,
        ns: &ns,
        tty: cfg.tty,
        pty: SetupSocket::new(pty_child),
        stdin_null,
        process: &process,
    };

    let signals = SignalForwarding::install();
    let helper = match sys::clone_fork(0) {
        Ok(0) => child::exec_helper(ctx),
        Ok(p) => p,
        Err(e) => {
            return Err(Error::sys(
                "forking the exec helper",
                nix::errno::Errno::from_raw(e),
                "the process limit may be reached",
            ))
        }
    };
    let mut guard = ChildGuard::new(helper);
    signals.set_child(helper);
    // Our copies of the helper's ends: the report pipe must hit EOF when the command execs.
    drop(ctx);
    if !self_attach {
        cg.add_pid(helper)?;
    }
    let go = SetupSocket::new(go_parent);
    go.release().map_err(|e| {
        Error::sys(
            "starting the exec helper",
            nix::errno::Errno::from_raw(e),
            "the helper died; check dmesg",
        )
    })?;
    drop(go);
    let pty = SetupSocket::new(pty_parent);
    // A failure to get the pty is reported through the report pipe.
    let _relay = if cfg.tty {
        pty.recv_fd().ok().map(PtyRelay::start)
    } else {
        None
    };
    drop(pty);
    channel::read_reports(rep_read.as_fd(), |_, _| {}).map_err(|f| f.into_error(None, &process))?;
    let ended = sys::wait_child(helper, "waiting for the exec helper")?;
    guard.disarm();
    drop(signals);
    Ok(ended.shell_code())
}
