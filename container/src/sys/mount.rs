//! Mount system calls: the new fd-based mount API (`open_tree`, `mount_setattr`,
//! `fsopen`/`fsconfig`/`fsmount`, `move_mount`), `openat2` confined to a root, the legacy
//! `mount(2)` calls used after `pivot_root`, and `pivot_root` itself.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::{check, check_int, errno, owned, SysResult};

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

/// `open_tree(2)`: with `OPEN_TREE_CLONE` a detached copy of the mount at `path`, which can be
/// re-configured (`mount_setattr`) and attached elsewhere (`move_mount`) without ever being
/// visible in the host's mount table.
pub fn open_tree(dirfd: Option<BorrowedFd<'_>>, path: &CStr, flags: u32) -> SysResult<OwnedFd> {
    let dirfd = dirfd.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `path` is a valid NUL-terminated string; the kernel only reads it.
    check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            dirfd,
            path.as_ptr(),
            flags | libc::O_CLOEXEC as u32,
        )
    })
    .map(owned)
}

/// `mount_setattr(2)` on the mount referred to by `fd` (`AT_EMPTY_PATH`), optionally recursive.
/// `userns_fd` is only read when `set` contains `MOUNT_ATTR_IDMAP`.
pub fn mount_setattr_fd(
    fd: BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clr: u64,
    userns_fd: Option<BorrowedFd<'_>>,
) -> SysResult<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: userns_fd.map_or(0, |f| f.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: `attr` lives across the call and its size is passed; the empty path is a valid C string.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
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
pub fn fsopen(fstype: &CStr) -> SysResult<OwnedFd> {
    // SAFETY: valid C string.
    check(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) }).map(owned)
}

/// `fsconfig(2)` with a string value (`FSCONFIG_SET_STRING`) or a flag (`value = None`).
pub fn fsconfig(fd: BorrowedFd<'_>, key: &CStr, value: Option<&CStr>) -> SysResult<()> {
    let (cmd, val) = match value {
        Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
        None => (FSCONFIG_SET_FLAG, std::ptr::null()),
    };
    // SAFETY: valid C strings or NULL as the command requires.
    check(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fd.as_raw_fd(),
            cmd,
            key.as_ptr(),
            val,
            0,
        )
    })
    .map(|_| ())
}

/// `fsconfig(FSCONFIG_CMD_CREATE)` then `fsmount(2)`: the configured filesystem as a detached
/// mount with the given `MOUNT_ATTR_*` flags. Closes nothing; the caller owns both fds.
pub fn fsmount(fsfd: BorrowedFd<'_>, attrs: u64) -> SysResult<OwnedFd> {
    let fsfd = fsfd.as_raw_fd();
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
    check(unsafe { libc::syscall(libc::SYS_fsmount, fsfd, FSMOUNT_CLOEXEC, attrs) }).map(owned)
}

/// `move_mount(2)` of the detached mount `from_fd` onto the object `to_fd` refers to.
pub fn move_mount_fd(from_fd: BorrowedFd<'_>, to_fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: empty paths are valid C strings.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from_fd.as_raw_fd(),
            c"".as_ptr(),
            to_fd.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(|_| ())
}

/// `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: `path` is resolved as if `root`
/// were `/`, so `..` and absolute symlinks cannot leave the container's root filesystem.
pub fn openat_in_root(root: BorrowedFd<'_>, path: &CStr, flags: i32) -> SysResult<OwnedFd> {
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
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        });
        match ret {
            Err(libc::EAGAIN) if tries < 100 => tries += 1,
            other => return other.map(owned),
        }
    }
}

/// `mount(2)` with `MS_REC | MS_PRIVATE` on `/`: nothing mounted from now on propagates back to
/// the host's mount namespace.
pub fn make_mounts_private() -> SysResult<()> {
    // SAFETY: constant C string, NULL for the unused arguments.
    check_int(unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })
    .map(|_| ())
}

/// Mounts an empty read-only tmpfs on the directory `path` (masking it).
pub fn mount_empty_tmpfs_ro(path: &CStr) -> SysResult<()> {
    // SAFETY: valid C strings.
    check_int(unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            path.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"size=0".as_ptr().cast(),
        )
    })
    .map(|_| ())
}

/// Bind-mounts `src` on `dst` (`MS_BIND`, plus `MS_REC` if `recursive`).
pub fn bind_mount(src: &CStr, dst: &CStr, recursive: bool) -> SysResult<()> {
    let flags = libc::MS_BIND | if recursive { libc::MS_REC } else { 0 };
    // SAFETY: valid C strings, NULL for the unused arguments.
    check_int(unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    })
    .map(|_| ())
}

/// `pivot_root(".", ".")`, then a lazy unmount of the old root now stacked on `.`, then
/// `chdir("/")`: the current directory becomes the root and the old root disappears.
pub fn pivot_root_to_cwd() -> SysResult<()> {
    // SAFETY: constant C strings.
    unsafe {
        if libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0 {
            return Err(errno());
        }
        if libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0 {
            return Err(errno());
        }
        if libc::chdir(c"/".as_ptr()) != 0 {
            return Err(errno());
        }
    }
    Ok(())
}
