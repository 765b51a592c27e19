//! The child side of `run` and `exec`: the code that runs after the raw `clone` and ends in
//! `execve` (or `_exit`).
//!
//! **What the child may do.** It is a copy of a possibly multi-threaded parent made without
//! glibc's atfork handlers, so another thread may have held the malloc lock at clone time: the
//! child must not allocate or free (no `String`, `Vec` growth, `format!`, no dropping a `Vec`),
//! and must use the raw credential syscalls of [`crate::sys`]. Everything it needs was prepared
//! by the parent ([`MountPlan`], [`ProcessPlan`], C strings); fds are `OwnedFd`s moved into the
//! child's context, so closing one is just dropping it. Each failure goes to the parent as a
//! [`Step`] through the [`Reporter`], then the child exits with 127.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

use crate::channel::{ChildPhase, Reporter, SetupSocket, Step};
use crate::mounts::MountPlan;
use crate::namespaces::NsHandles;
use crate::process::{self, ProcessPlan};
use crate::sys::{self, SignalMask};
use crate::tty;

/// Everything the container's first process needs, prepared by `run` before `clone`. The fds
/// are the child's ends; the parent drops its copy of this right after `clone`.
pub(crate) struct RunChild<'a> {
    /// Child end of the setup socket (overlay in, release, pty master out).
    pub(crate) setup: SetupSocket,
    /// Write end of the report pipe.
    pub(crate) report: Reporter,
    /// /dev/null for stdin unless `-i`/`-t`.
    pub(crate) stdin_null: Option<OwnedFd>,
    /// `-t`: open a pty in the container's devpts and send the master back.
    pub(crate) tty: bool,
    /// v1 `tasks` files the child writes "0" to, joining its cgroup itself (see cgroups).
    pub(crate) cgroup_tasks: Vec<OwnedFd>,
    /// UTS hostname.
    pub(crate) hostname: &'a [u8],
    /// A new user namespace was created: become its root first.
    pub(crate) userns: bool,
    /// A new network namespace was created: bring `lo` up.
    pub(crate) own_netns: bool,
    /// Where the overlay is attached before `pivot_root`.
    pub(crate) mountpoint: &'a CStr,
    /// /proc, /sys, /dev, volumes, masks.
    pub(crate) mounts: &'a MountPlan,
    /// The command.
    pub(crate) process: &'a ProcessPlan,
    /// Run the `--init` reaper as PID 1.
    pub(crate) init: bool,
}

/// Moves the calling (child) process into its v1 cgroups through the `tasks` fds, then closes
/// them. Frees nothing: the emptied vector is forgotten.
fn join_cgroup(rep: &Reporter, step: Step, mut tasks: Vec<OwnedFd>) -> bool {
    let joined = !tasks.is_empty();
    for fd in tasks.drain(..) {
        rep.check(step, sys::write_all(fd.as_fd(), b"0"));
    }
    std::mem::forget(tasks);
    joined
}

/// Drops capabilities, switches user and `execve`s; reports the failing step otherwise.
fn become_command(rep: &Reporter, p: &ProcessPlan, caps: Step, user: Step) -> ! {
    rep.check(caps, process::drop_capabilities());
    rep.check(user, p.switch_user());
    let e = p.exec();
    rep.fail(Step::Exec, 0, e)
}

/// `run`'s child, from `clone` to `execve`. The order is the start path of the crate docs.
pub(crate) fn run_child(c: RunChild<'_>) -> ! {
    let rep = c.report;
    // Join the cgroup first, concurrently with the parent's work, and before anything is
    // allocated in the kernel on the container's behalf.
    if join_cgroup(&rep, Step::CgroupJoin, c.cgroup_tasks) {
        rep.phase(ChildPhase::Cgroup);
    }
    // The parent gave up (its error is the one reported): leave quietly.
    let Ok(overlay) = c.setup.recv_fd() else {
        sys::exit_now(126)
    };
    // A new user namespace does not change credentials: we still run as host uid 0, which is
    // unmapped there. Become the namespace's root (host uid = map base) so that files we create
    // (tmpfs on /dev…) and the command get a mapped owner.
    if c.userns {
        rep.check_at(Step::User, 1, sys::set_ids(0, 0, true));
    }
    rep.check(Step::Hostname, sys::sethostname(c.hostname));
    rep.check(Step::Private, sys::make_mounts_private());
    let mp = rep.check_at(Step::AttachRoot, 0, sys::open_dir_path(c.mountpoint));
    rep.check_at(
        Step::AttachRoot,
        1,
        sys::move_mount_fd(overlay.as_fd(), mp.as_fd()),
    );
    drop(mp);
    drop(overlay);
    let root = rep.check_at(Step::AttachRoot, 2, sys::open_dir_path(c.mountpoint));
    if c.own_netns {
        rep.check(Step::Loopback, sys::loopback_up());
    }
    if let Err((i, e)) = c.mounts.apply(root.as_fd()) {
        rep.fail(Step::Mount, i, e);
    }
    rep.check_at(Step::Pivot, 0, sys::fchdir(root.as_fd()));
    drop(root);
    rep.check_at(Step::Pivot, 1, sys::pivot_root_to_cwd());
    if let Err((i, e)) = c.mounts.apply_masks() {
        rep.fail(Step::Mask, i, e);
    }
    rep.phase(ChildPhase::Mounts);
    // Second sync point: the parent has moved us into the cgroup (done while we mounted, to
    // hide the cgroup v1 attach latency). Only now can the cgroup namespace be created, so
    // that the container's cgroup is its "/", and the command be started under the limits.
    if !c.setup.wait_release() {
        sys::exit_now(126);
    }
    rep.check(Step::CgroupNs, sys::unshare(libc::CLONE_NEWCGROUP));
    if c.tty {
        let master = rep.check_at(Step::Pty, 0, tty::open_pty_child());
        if c.setup.send_fd(master.as_fd()).is_err() {
            rep.fail(Step::Pty, 1, libc::EPIPE);
        }
        drop(master);
    } else if let Some(null) = &c.stdin_null {
        rep.check(Step::Stdin, process::redirect_stdin(null.as_fd()));
    }
    drop(c.setup);
    rep.check(Step::Cwd, c.process.enter_cwd());
    if c.init {
        let old = SignalMask::block_all();
        match sys::clone_fork(0) {
            Ok(0) => {
                old.restore();
                become_command(&rep, c.process, Step::Caps, Step::User)
            }
            Ok(pid) => {
                drop(rep);
                process::reaper(pid)
            }
            Err(e) => rep.fail(Step::InitFork, 0, e),
        }
    }
    become_command(&rep, c.process, Step::Caps, Step::User)
}

/// What `exec`'s helper needs, prepared before its `clone`. The fds are the helper's ends.
pub(crate) struct ExecHelper<'a> {
    /// Helper end of the release socket: one byte once the parent moved it into the cgroup.
    pub(crate) go: SetupSocket,
    /// Write end of the report pipe.
    pub(crate) report: Reporter,
    /// v1 `tasks` files of the container's cgroup.
    pub(crate) cgroup_tasks: Vec<OwnedFd>,
    /// The container's namespaces, in join order.
    pub(crate) ns: &'a NsHandles,
    /// `-t`: open a pty in the container's devpts and send the master back over `pty`.
    pub(crate) tty: bool,
    /// Child end of the pty socket.
    pub(crate) pty: SetupSocket,
    /// /dev/null for stdin unless `-i`/`-t`.
    pub(crate) stdin_null: Option<OwnedFd>,
    /// The command.
    pub(crate) process: &'a ProcessPlan,
}

/// `exec`'s helper: joins the cgroup and namespaces, forks (a PID namespace only applies to
/// children) and stays behind as the reaper of the command, relaying signals and its status.
pub(crate) fn exec_helper(h: ExecHelper<'_>) -> ! {
    let rep = h.report;
    join_cgroup(&rep, Step::ExecCgroup, h.cgroup_tasks);
    // Wait until the parent has (on v2) moved us into the cgroup.
    if !h.go.wait_release() {
        sys::exit_now(126);
    }
    if let Err((_, e)) = h.ns.join() {
        rep.fail(Step::ExecJoinNs, 0, e);
    }
    let old = SignalMask::block_all();
    match sys::clone_fork(0) {
        Ok(0) => {
            old.restore();
            if h.tty {
                // After setns(mnt), /dev/ptmx is the container's own devpts.
                let m = rep.check(Step::ExecPty, tty::open_pty_child());
                if h.pty.send_fd(m.as_fd()).is_err() {
                    rep.fail(Step::ExecPty, 0, libc::EPIPE);
                }
                drop(m);
            } else if let Some(null) = &h.stdin_null {
                let _ = process::redirect_stdin(null.as_fd());
            }
            drop(h.pty);
            rep.check(Step::ExecCwd, h.process.enter_cwd());
            become_command(&rep, h.process, Step::ExecUser, Step::ExecUser)
        }
        Ok(child) => {
            drop(rep);
            process::reaper(child)
        }
        Err(e) => rep.fail(Step::ExecFork, 0, e),
    }
}
