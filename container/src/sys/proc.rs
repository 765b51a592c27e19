//! Process system calls: the fork-like `clone`s, waiting, signalling, `_exit`, credentials,
//! capabilities, namespaces (`setns`, `unshare`, hostname), the working directory, `execve`
//! and pidfds.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{check, check_int, errno, owned, SysResult};

/// A fork that also creates the namespaces in `flags` (`CLONE_NEW*`): returns 0 in the child and
/// the child's pid in the parent. The child runs on a copy-on-write copy of the caller's stack,
/// exactly like `fork(2)`, but glibc's atfork handlers do not run, hence the no-allocation rule.
pub fn clone_fork(flags: libc::c_int) -> SysResult<libc::pid_t> {
    // SAFETY: with a NULL stack the raw clone behaves like fork; the child only continues in
    // code that respects the async-signal-safety rules documented in the module.
    check(unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    })
    .map(|p| p as libc::pid_t)
}

/// Like [`clone_fork`] but with `clone3(CLONE_INTO_CGROUP)`: the child starts life inside the
/// cgroup v2 directory `cgroup`, so no later `cgroup.procs` write (and its global lock) is
/// needed. cgroup v2 only; the caller falls back to [`clone_fork`] on `ENOSYS`/`E2BIG`.
pub fn clone_into_cgroup(flags: libc::c_int, cgroup: BorrowedFd<'_>) -> SysResult<libc::pid_t> {
    #[repr(C)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: flags as u32 as u64 | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.as_raw_fd() as u64,
    };
    // SAFETY: with no stack the child continues on a copy of ours, like fork (see clone_fork).
    check(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })
    .map(|p| p as libc::pid_t)
}

/// How a waited-for process ended, decoded from a raw wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl Ended {
    /// Decodes a raw `waitpid` status.
    pub fn from_status(status: i32) -> Ended {
        if libc::WIFSIGNALED(status) {
            Ended::Signaled(libc::WTERMSIG(status))
        } else {
            Ended::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// The shell's convention: the code, or 128+N for signal N.
    pub fn shell_code(self) -> i32 {
        match self {
            Ended::Exited(c) => c,
            Ended::Signaled(s) => 128 + s,
        }
    }
}

/// Waits for our own child `pid` to end (retrying on EINTR); `what` names the wait in the error.
pub fn wait_child(pid: libc::pid_t, what: &str) -> crate::error::Result<Ended> {
    loop {
        let mut st = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            return Ok(Ended::from_status(st));
        }
        if r < 0 && errno() != libc::EINTR {
            return Err(crate::error::Error::sys(
                what,
                nix::errno::Errno::last(),
                "this should not happen; report a bug",
            ));
        }
    }
}

/// Reaps our child `pid`, ignoring errors (cleanup paths).
pub fn reap(pid: libc::pid_t) {
    let mut st = 0;
    // SAFETY: waiting for our own child with a valid out-pointer.
    while unsafe { libc::waitpid(pid, &mut st, 0) } < 0 && errno() == libc::EINTR {}
}

/// Reaps any one exited child without blocking: `Some((pid, how))`, or `None` if none is ready.
pub fn reap_any_nohang() -> Option<(libc::pid_t, Ended)> {
    let mut st = 0;
    // SAFETY: valid out-pointer.
    let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
    (pid > 0).then(|| (pid, Ended::from_status(st)))
}

/// `kill(2)`, ignoring errors (the target may already be gone). Async-signal-safe.
pub fn kill(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: no pointers.
    unsafe { libc::kill(pid, sig) };
}

/// `_exit(2)`: leaves the (child) process at once, without destructors or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: terminating the process is always sound.
    unsafe { libc::_exit(code) }
}

/// Raw `setresuid`/`setresgid`/`setgroups(0)` system calls. glibc's wrappers broadcast the
/// change to every thread it believes exists (the "setxid" protocol) and wait for them on a
/// futex; after a raw clone of a multi-threaded parent those threads do not exist in the child,
/// so the wrappers would hang forever. The kernel calls act on the calling thread only, which is
/// the whole child.
pub fn set_ids(uid: u32, gid: u32, clear_groups: bool) -> SysResult<()> {
    // SAFETY: credential syscalls without pointers (setgroups with size 0 and NULL).
    unsafe {
        if clear_groups
            && libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0
        {
            return Err(errno());
        }
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
            return Err(errno());
        }
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// Removes capability number `cap` from the bounding set (`PR_CAPBSET_DROP`); `EINVAL` means
/// the kernel has no such capability.
pub fn cap_bound_drop(cap: u32) -> SysResult<()> {
    // SAFETY: no pointers.
    check_int(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) })
        .map(|_| ())
}

/// `capset(2)` of the calling thread: effective = permitted = `caps` (bit N = capability N),
/// inheritable empty.
pub fn capset(caps: u64) -> SysResult<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let (lo, hi) = (caps as u32, (caps >> 32) as u32);
    let data = [
        Data {
            effective: lo,
            permitted: lo,
            inheritable: 0,
        },
        Data {
            effective: hi,
            permitted: hi,
            inheritable: 0,
        },
    ];
    // SAFETY: header and two data structs on the stack, as capset v3 expects.
    check(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) })
        .map(|_| ())
}

/// Sets the calling thread's name (`PR_SET_NAME`, what `ps` shows).
pub fn set_name(name: &CStr) {
    // SAFETY: valid C string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// `setns(2)` into the namespace `fd` of type `nstype` (`CLONE_NEW*`).
pub fn setns(fd: BorrowedFd<'_>, nstype: libc::c_int) -> SysResult<()> {
    // SAFETY: no pointers.
    check_int(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(|_| ())
}

/// `unshare(2)` of the namespaces in `flags`.
pub fn unshare(flags: libc::c_int) -> SysResult<()> {
    // SAFETY: no pointers.
    check_int(unsafe { libc::unshare(flags) }).map(|_| ())
}

/// `sethostname(2)` in the current UTS namespace.
pub fn sethostname(name: &[u8]) -> SysResult<()> {
    // SAFETY: the slice is valid for its length.
    check_int(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(|_| ())
}

/// `fchdir(2)`; an `O_PATH` directory fd is accepted.
pub fn fchdir(fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: no pointers.
    check_int(unsafe { libc::fchdir(fd.as_raw_fd()) }).map(|_| ())
}

/// `chdir(2)`.
pub fn chdir(path: &CStr) -> SysResult<()> {
    // SAFETY: valid C string.
    check_int(unsafe { libc::chdir(path.as_ptr()) }).map(|_| ())
}

/// `execve(2)` with NULL-terminated pointer arrays; returns only on failure, with `errno`.
///
/// # Safety
/// `argv` and `envp` must be NULL-terminated arrays of pointers to valid C strings.
pub unsafe fn execve(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> super::Errno {
    // SAFETY: guaranteed by the caller.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    errno()
}

/// `pidfd_open(2)` on our own (unreaped) child: a handle immune to pid reuse.
pub fn pidfd_open(pid: libc::pid_t) -> SysResult<OwnedFd> {
    // SAFETY: no pointers.
    check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) }).map(owned)
}

/// `pidfd_send_signal(2)`, ignoring errors (the process may be gone).
pub fn pidfd_kill(pidfd: BorrowedFd<'_>, sig: libc::c_int) {
    // SAFETY: NULL siginfo is allowed.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// `poll(2)` on one fd for `POLLIN` for at most `ms` milliseconds: `Ok(true)` = readable.
pub fn poll_readable(fd: BorrowedFd<'_>, ms: i32) -> SysResult<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    check_int(unsafe { libc::poll(&mut p, 1, ms) }).map(|n| n > 0)
}
