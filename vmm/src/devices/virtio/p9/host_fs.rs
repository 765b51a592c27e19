//! The host side of the share: every path the guest names is one component, resolved with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to a directory fd that is itself
//! inside the shared directory. A `..` that would leave it, an absolute or relative symlink
//! anywhere in the way, or a directory swapped for a symlink between check and use all fail
//! in the kernel, not in a check of ours that could race.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Turns a libc return value into a `Result`.
pub fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An error reply with `errno`.
pub fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// Checks that `name` is one path component the guest may create or look up: not empty, not
/// `.` or `..`, no `/`, no NUL.
pub fn component(name: &[u8]) -> io::Result<CString> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(errno(libc::EINVAL));
    }
    CString::new(name).map_err(|_| errno(libc::EINVAL))
}

/// `openat2(dir, name, flags, mode)` confined beneath `dir`, never following a symlink.
pub fn open_beneath(dir: RawFd, name: &CString, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: open_how is plain integers; all-zero is its "no options" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64;
    if flags & libc::O_CREAT != 0 {
        how.mode = u64::from(mode);
    }
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: valid C string and open_how; the returned fd is new and owned by us.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// An `O_PATH` handle on `name` in `dir` (the handle a walk produces).
pub fn lookup(dir: RawFd, name: &CString) -> io::Result<OwnedFd> {
    open_beneath(dir, name, libc::O_PATH, 0)
}

/// The parent of `fd` (a directory known to be strictly beneath the share's root).
pub fn parent(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: constant C string; new fd owned below.
    let r = check(unsafe {
        libc::openat(
            fd,
            c"..".as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// The `/proc/self/fd/N` name of an fd, to reopen an `O_PATH` handle with real access.
fn proc_path(fd: RawFd) -> CString {
    CString::new(format!("/proc/self/fd/{fd}")).expect("no NUL in a number")
}

/// Opens the file behind an `O_PATH` handle for I/O. Only regular files and directories:
/// a device node would hand the guest a host device, and a FIFO would block the vCPU.
pub fn reopen(path_fd: RawFd, st: &libc::stat, flags: i32) -> io::Result<File> {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFDIR => {}
        libc::S_IFLNK => return Err(errno(libc::ELOOP)),
        _ => return Err(errno(libc::EACCES)),
    }
    let p = proc_path(path_fd);
    // SAFETY: valid C string; the new fd is owned by the File.
    let fd = check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// An `O_PATH` handle on the file an open fd refers to.
pub fn path_of(fd: RawFd) -> io::Result<OwnedFd> {
    let p = proc_path(fd);
    // SAFETY: valid C string; new fd owned below.
    let r = check(unsafe { libc::open(p.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// `fstat` (works on `O_PATH` handles).
pub fn stat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd number and out-pointer.
    check(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st)
}

/// Changes owner and group of the file behind `fd` itself (a symlink stays a symlink);
/// `u32::MAX` leaves one unchanged.
pub fn chown(fd: RawFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: empty path with AT_EMPTY_PATH acts on fd itself.
    check(unsafe {
        libc::fchownat(
            fd,
            c"".as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
}

/// Changes the permission bits of a non-symlink behind an `O_PATH` handle.
pub fn chmod(fd: RawFd, st: &libc::stat, mode: u32) -> io::Result<()> {
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(errno(libc::EOPNOTSUPP));
    }
    let p = proc_path(fd);
    // SAFETY: valid C string.
    check(unsafe { libc::chmod(p.as_ptr(), mode) }).map(drop)
}

/// Sets access and modification times of a non-symlink; `None` leaves a time unchanged.
pub fn set_times(
    fd: RawFd,
    st: &libc::stat,
    atime: Option<libc::timespec>,
    mtime: Option<libc::timespec>,
) -> io::Result<()> {
    if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Ok(()); // link times are not worth a host-path round trip
    }
    let omit = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    let ts = [atime.unwrap_or(omit), mtime.unwrap_or(omit)];
    let p = proc_path(fd);
    // SAFETY: valid C string and a two-element timespec array.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) }).map(drop)
}

/// `readlink` of the symlink behind an `O_PATH` handle.
pub fn readlink(fd: RawFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: empty path reads the link fd refers to; buffer is valid for its length.
    let n = unsafe { libc::readlinkat(fd, c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// `fstatfs`.
pub fn statfs(fd: RawFd) -> io::Result<libc::statfs64> {
    // SAFETY: zeroed statfs64 is a valid out-buffer.
    let mut s: libc::statfs64 = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-pointer.
    check(unsafe { libc::fstatfs64(fd, &mut s) })?;
    Ok(s)
}

/// One directory entry as the guest needs it.
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// Cookie to continue after this entry.
    pub next: u64,
    /// `DT_*` type.
    pub kind: u8,
    /// Name.
    pub name: Vec<u8>,
}

/// Reads directory entries from `dir` starting at cookie `offset`, at most `max` bytes of
/// getdents64 records (roughly what fits in the reply).
pub fn read_dir(dir: &File, offset: u64, max: usize) -> io::Result<Vec<DirEntry>> {
    // SAFETY: lseek on an owned directory fd.
    if unsafe { libc::lseek64(dir.as_raw_fd(), offset as i64, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; max.clamp(512, 64 * 1024)];
    // SAFETY: the buffer is valid for its length; the kernel writes whole records.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut at = 0usize;
    let n = n as usize;
    // Record layout: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name NUL-terminated.
    while at + 19 <= n {
        let rec = &buf[at..n];
        let reclen = u16::from_ne_bytes([rec[16], rec[17]]) as usize;
        if reclen < 19 || reclen > rec.len() {
            break;
        }
        let name = &rec[19..reclen];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        out.push(DirEntry {
            ino: u64::from_ne_bytes(rec[0..8].try_into().unwrap()),
            next: u64::from_ne_bytes(rec[8..16].try_into().unwrap()),
            kind: rec[18],
            name: name.to_vec(),
        });
        at += reclen;
    }
    Ok(out)
}
