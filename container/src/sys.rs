//! Thin wrappers over the raw Linux system calls the runtime needs that `nix` 0.29 does not
//! wrap: the new mount API (`open_tree`, `mount_setattr`, `fsopen`/`fsconfig`/`fsmount`,
//! `move_mount`), `openat2` and a fork-like `clone` that takes namespace flags.
//!
//! Every function here is async-signal-safe: it allocates nothing and returns the raw `errno`
//! on failure, so it can be called in the cloned child, which must not touch the allocator (the
//! parent may have had other threads holding the malloc lock at clone time).

use std::ffi::CStr;
use std::os::fd::RawFd;

/// `errno` of a failed call, kept raw so the child can report it without allocating.
pub type Errno = i32;

/// Result of a raw call: the value, or `errno`.
pub type SysResult<T> = Result<T, Errno>;

pub(crate) const OPEN_TREE_CLONE: u32 = 1;
pub(crate) const AT_RECURSIVE: u32 = 0x8000;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x04;
pub(crate) const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
pub(crate) const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
pub(crate) const FSOPEN_CLOEXEC: u32 = 1;
pub(crate) const FSMOUNT_CLOEXEC: u32 = 1;
pub(crate) const FSCONFIG_SET_FLAG: u32 = 0;
pub(crate) const FSCONFIG_SET_STRING: u32 = 1;
pub(crate) const FSCONFIG_CMD_CREATE: u32 = 6;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

#[inline]
fn errno() -> Errno {
    // SAFETY: reading the thread-local errno location is always valid.
    unsafe { *libc::__errno_location() }
}

#[inline]
fn check(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// `open_tree(2)`: with `OPEN_TREE_CLONE` a detached copy of the mount at `path`, which can be
/// re-configured (`mount_setattr`) and attached elsewhere (`move_mount`) without ever being
/// visible in the host's mount table.
pub fn open_tree(dirfd: RawFd, path: &CStr, flags: u32) -> SysResult<RawFd> {
    // SAFETY: `path` is a valid NUL-terminated string; the kernel only reads it.
    check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd,
            path.as_ptr(),
            flags | libc::O_CLOEXEC as u32,
        )
    })
    .map(|fd| fd as RawFd)
}

/// `mount_setattr(2)` on the mount referred to by `fd` (`AT_EMPTY_PATH`), optionally recursive.
/// `userns_fd` is only read when `set` contains `MOUNT_ATTR_IDMAP`.
pub fn mount_setattr_fd(
    fd: RawFd,
    recursive: bool,
    set: u64,
    clr: u64,
    userns_fd: RawFd,
) -> SysResult<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: userns_fd.max(0) as u64,
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: `attr` lives across the call and its size is passed; the empty path is a valid C string.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(|_| ())
}

/// `mount_setattr(2)` on the mount at `path` (relative to the current root/cwd).
pub fn mount_setattr_path(path: &CStr, recursive: bool, set: u64, clr: u64) -> SysResult<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: as above.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(|_| ())
}

/// `fsopen(2)`: a filesystem context for `fstype`, configured with `fsconfig` and turned into a
/// detached mount by `fsmount`.
pub fn fsopen(fstype: &CStr) -> SysResult<RawFd> {
    // SAFETY: valid C string.
    check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) })
        .map(|fd| fd as RawFd)
}

/// `fsconfig(2)` with a string value (`FSCONFIG_SET_STRING`) or a flag (`value = None`).
pub fn fsconfig(fd: RawFd, key: &CStr, value: Option<&CStr>) -> SysResult<()> {
    let (cmd, val) = match value {
        Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
        None => (FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: valid C strings or NULL as the command requires.
    check(unsafe { libc::syscall(libc::SYS_fsconfig, fd, cmd, key.as_ptr(), val, 0) }).map(|_| ())
}

/// `fsconfig(FSCONFIG_CMD_CREATE)` then `fsmount(2)`: the configured filesystem as a detached
/// mount with the given `MOUNT_ATTR_*` flags. Closes nothing; the caller owns both fds.
pub fn fsmount(fsfd: RawFd, attrs: u64) -> SysResult<RawFd> {
    // SAFETY: no pointers.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fsfd,
            FSCONFIG_CMD_CREATE,
            0usize,
            0usize,
            0,
        )
    })?;
    // SAFETY: no pointers.
    check(unsafe { libc::syscall(libc::SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, attrs) })
        .map(|fd| fd as RawFd)
}

/// `move_mount(2)` of the detached mount `from_fd` onto the object `to_fd` refers to.
pub fn move_mount_fd(from_fd: RawFd, to_fd: RawFd) -> SysResult<()> {
    // SAFETY: empty paths are valid C strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from_fd,
            c"".as_ptr(),
            to_fd,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(|_| ())
}

/// `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: `path` is resolved as if `root`
/// were `/`, so `..` and absolute symlinks cannot leave the container's root filesystem.
pub fn openat_in_root(root: RawFd, path: &CStr, flags: i32) -> SysResult<RawFd> {
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // The kernel answers EAGAIN when a `..` step raced with a mount or rename anywhere on the
    // host (openat2(2): "the caller should retry"); a bounded retry keeps that from failing a
    // container start on a busy host. No allocation: this also runs in the forked child.
    let mut tries = 0;
    loop {
        // SAFETY: `how` lives across the call and its size is passed.
        let ret = check(unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        });
        match ret {
            Err(libc::EAGAIN) if tries < 100 => tries += 1,
            other => return other.map(|fd| fd as RawFd),
        }
    }
}

/// A fork that also creates the namespaces in `flags` (`CLONE_NEW*`): returns 0 in the child and
/// the child's pid in the parent. The child runs on a copy-on-write copy of the caller's stack,
/// exactly like `fork(2)`, but glibc's atfork handlers do not run, hence the no-allocation rule.
pub fn clone_fork(flags: libc::c_int) -> SysResult<libc::pid_t> {
    // SAFETY: with a NULL stack the raw clone behaves like fork; the child only continues in
    // code that respects the async-signal-safety rules documented above.
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

/// Writes all of `buf` to `fd`, retrying on `EINTR`.
pub fn write_all(fd: RawFd, buf: &[u8]) -> SysResult<()> {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: the slice is valid for reads of its remaining length.
        let n = unsafe { libc::write(fd, buf[off..].as_ptr().cast(), buf.len() - off) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        off += n as usize;
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in nanoseconds; the time base of every phase timestamp.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Closes `fd`, ignoring errors (used on cleanup paths only).
pub fn close(fd: RawFd) {
    if fd >= 0 {
        // SAFETY: closing an fd we own.
        unsafe { libc::close(fd) };
    }
}

/// The calling thread's `errno` after a failed libc call.
pub fn last_errno() -> Errno {
    errno()
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

/// Like [`clone_fork`] but with `clone3(CLONE_INTO_CGROUP)`: the child starts life inside the
/// cgroup v2 directory `cgroup_fd`, so no later `cgroup.procs` write (and its global lock) is
/// needed. cgroup v2 only; the caller falls back to [`clone_fork`] on `ENOSYS`/`E2BIG`.
pub fn clone_into_cgroup(flags: libc::c_int, cgroup_fd: RawFd) -> SysResult<libc::pid_t> {
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
        cgroup: cgroup_fd as u64,
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

/// Waits for our own child `pid` to end (retrying on EINTR) and returns its raw wait status;
/// `what` names the wait in the error.
pub fn wait_child(pid: libc::pid_t, what: &str) -> crate::error::Result<i32> {
    loop {
        let mut st = 0;
        // SAFETY: waiting for our own child with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            return Ok(st);
        }
        if r < 0 && last_errno() != libc::EINTR {
            return Err(crate::error::Error::sys(
                what,
                nix::errno::Errno::last(),
                "this should not happen; report a bug",
            ));
        }
    }
}

/// A close-on-exec `SOCK_SEQPACKET` pair: the parent/child channels of `run` and `exec`
/// (setup handshake, pty handover) use message boundaries; `what` names it in the error.
pub fn seqpacket_pair(
    what: &str,
) -> crate::error::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| crate::error::Error::sys(what, e, "the process may be out of file descriptors"))
}
