//! `exec`: runs another command inside a running container by joining its namespaces
//! (`setns` on `/proc/PID/ns/*`, user namespace first) and its cgroup.
//!
//! Shape: the caller forks a helper; the caller puts the helper into the container's cgroup and
//! lets it go; the helper joins the namespaces and forks again (a PID namespace only applies to
//! children), then relays signals to, and the exit status of, the command it started. The
//! command's pid inside the container is a fresh one, not 1.

use std::os::fd::{AsRawFd, RawFd};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::namespaces::NsHandles;
use crate::process::ProcessPlan;
use crate::sys;

/// What to run inside the container.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// argv.
    pub args: Vec<String>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// User inside the container.
    pub uid: u32,
    /// Group inside the container.
    pub gid: u32,
    /// Keep stdin connected (`-i`); otherwise /dev/null.
    pub interactive: bool,
    /// `-t`: a pseudo-terminal from the container's own devpts, relayed to our stdio.
    pub tty: bool,
}

const STEP_SETNS: u32 = 1;
const STEP_FORK: u32 = 2;
const STEP_CWD: u32 = 3;
const STEP_USER: u32 = 4;
const STEP_EXEC: u32 = 5;
const STEP_CGROUP: u32 = 6;
const STEP_PTY: u32 = 7;

fn fail(report: RawFd, step: u32, errno: i32) -> ! {
    let rec = [step as i32, errno];
    // SAFETY: two i32s viewed as bytes.
    let bytes = unsafe { std::slice::from_raw_parts(rec.as_ptr() as *const u8, 8) };
    let _ = sys::write_all(report, bytes);
    // SAFETY: leave without destructors.
    unsafe { libc::_exit(127) }
}

/// Runs `cfg` inside the container whose PID 1 has host pid `pid`; returns the command's exit
/// code (128+N if it died of signal N). SIGINT/SIGTERM/SIGHUP/SIGQUIT are forwarded to it.
pub fn exec(pid: i32, cfg: &ExecConfig) -> Result<i32> {
    let ns = NsHandles::open(pid)?;
    let cg = Cgroup::of_pid(pid)?;
    let process = ProcessPlan::new(&cfg.args, &cfg.env, &cfg.cwd, cfg.uid, cfg.gid)?;
    let stdin_null = if cfg.interactive {
        None
    } else {
        Some(std::fs::File::open("/dev/null").map_err(|e| Error::io("opening", "/dev/null", e))?)
    };
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
        Error::sys(
            "creating a pipe",
            e,
            "the process may be out of file descriptors",
        )
    })?;
    let (rep_r, rep_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
        Error::sys(
            "creating a pipe",
            e,
            "the process may be out of file descriptors",
        )
    })?;
    // v1: the helper moves itself through `tasks` (no global cgroup lock, see cgroups).
    let tasks = cg.open_self_attach_files()?;
    let task_fds: Vec<RawFd> = tasks.iter().map(|f| f.as_raw_fd()).collect();
    let stdin_fd = if cfg.tty {
        -1
    } else {
        stdin_null.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1)
    };
    let (pty_parent, pty_child) = sys::seqpacket_pair("creating the pty socket")?;
    let (tty, pty_cfd) = (cfg.tty, pty_child.as_raw_fd());
    let (go_rfd, rep_wfd) = (go_r.as_raw_fd(), rep_w.as_raw_fd());

    let signals = crate::runtime::SignalForwarding::install();
    let helper = match sys::clone_fork(0) {
        Ok(0) => {
            for fd in &task_fds {
                if let Err(e) = sys::write_all(*fd, b"0") {
                    fail(rep_wfd, STEP_CGROUP, e);
                }
            }
            // Helper: wait until the parent has (on v2) moved us into the cgroup.
            let mut b = [0u8; 1];
            // SAFETY: reading one byte into a stack buffer.
            if unsafe { libc::read(go_rfd, b.as_mut_ptr().cast(), 1) } != 1 {
                // SAFETY: immediate exit.
                unsafe { libc::_exit(126) };
            }
            if let Err((_, e)) = ns.join() {
                fail(rep_wfd, STEP_SETNS, e);
            }
            let old = crate::process::block_all_signals();
            match sys::clone_fork(0) {
                Ok(0) => {
                    crate::process::restore_signals(&old);
                    if tty {
                        // After setns(mnt), /dev/ptmx is the container's own devpts.
                        match crate::process::setup_pty_child() {
                            Ok(m) => {
                                if crate::runtime::send_fd(pty_cfd, m).is_err() {
                                    fail(rep_wfd, STEP_PTY, libc::EPIPE);
                                }
                                sys::close(m);
                            }
                            Err(e) => fail(rep_wfd, STEP_PTY, e),
                        }
                    } else if stdin_fd >= 0 {
                        let _ = crate::process::redirect_stdin(stdin_fd);
                    }
                    sys::close(pty_cfd);
                    if let Err(e) = process.enter_cwd() {
                        fail(rep_wfd, STEP_CWD, e);
                    }
                    if let Err(e) = crate::process::drop_capabilities() {
                        fail(rep_wfd, STEP_USER, e);
                    }
                    if let Err(e) = process.switch_user() {
                        fail(rep_wfd, STEP_USER, e);
                    }
                    let e = process.exec();
                    fail(rep_wfd, STEP_EXEC, e);
                }
                Ok(child) => {
                    sys::close(rep_wfd);
                    crate::process::reaper(child)
                }
                Err(e) => fail(rep_wfd, STEP_FORK, e),
            }
        }
        Ok(p) => p,
        Err(e) => {
            return Err(Error::sys(
                "forking the exec helper",
                nix::errno::Errno::from_raw(e),
                "the process limit may be reached",
            ))
        }
    };
    let mut guard = crate::runtime::ChildGuard::new(helper);
    signals.set_child(helper);
    drop(go_r);
    drop(rep_w);
    drop(tasks);
    if task_fds.is_empty() {
        cg.add_pid(helper)?;
    }
    nix::unistd::write(&go_w, &[1]).map_err(|e| {
        Error::sys(
            "starting the exec helper",
            e,
            "the helper died; check dmesg",
        )
    })?;
    drop(go_w);
    drop(pty_child);
    let _relay = if cfg.tty {
        match crate::runtime::recv_fd(pty_parent.as_raw_fd()) {
            // SAFETY: a fresh fd received from the helper, owned here.
            Ok(m) => Some(crate::process::PtyRelay::start(unsafe {
                <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(m)
            })),
            Err(_) => None, // the report pipe carries the error
        }
    } else {
        None
    };
    drop(pty_parent);
    let mut buf = [0u8; 8];
    let mut rep = std::fs::File::from(rep_r);
    let n = std::io::Read::read(&mut rep, &mut buf).unwrap_or(0);
    if n == 8 {
        let step = i32::from_ne_bytes(buf[0..4].try_into().unwrap()) as u32;
        let errno = i32::from_ne_bytes(buf[4..8].try_into().unwrap());
        let en = nix::errno::Errno::from_raw(errno);
        return Err(match step {
            STEP_EXEC if errno == libc::ENOENT => Error::CommandNotFound(process.command.clone()),
            STEP_EXEC => Error::CommandNotExecutable {
                cmd: process.command.clone(),
                errno: en,
            },
            STEP_SETNS => Error::Setup {
                step: "join the container's namespaces".into(),
                errno: en,
                hint: "the container may have just exited; check vcompare ps".into(),
            },
            STEP_CWD => Error::Setup {
                step: "enter the working directory".into(),
                errno: en,
                hint: "check the -w directory".into(),
            },
            STEP_CGROUP => Error::Setup {
                step: "join the container's cgroup".into(),
                errno: en,
                hint: "the container may have just exited; check vcompare ps".into(),
            },
            STEP_PTY => Error::Setup {
                step: "create the pseudo-terminal (-t)".into(),
                errno: en,
                hint: "the container needs /dev/ptmx and /dev/pts from its own devpts".into(),
            },
            STEP_USER => Error::Setup {
                step: "switch to the container user".into(),
                errno: en,
                hint: "the -u uid/gid must be mapped in the container".into(),
            },
            _ => Error::Setup {
                step: "fork inside the container".into(),
                errno: en,
                hint: "the container's pids limit may be reached".into(),
            },
        });
    }
    let status = sys::wait_child(helper, "waiting for the exec helper")?;
    guard.disarm();
    drop(signals);
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    })
}
