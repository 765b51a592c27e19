//! File-descriptor system calls: opening paths and creating entries relative to a directory fd,
//! reading and writing without allocation, `dup2`, and passing an fd over a Unix socket
//! (`SCM_RIGHTS`).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use super::{check_int, errno, owned, SysResult};

/// Opens `path` as an `O_PATH | O_DIRECTORY` fd (close-on-exec): a handle to resolve under,
/// `fchdir` into or attach a mount on.
pub fn open_dir_path(path: &CStr) -> SysResult<OwnedFd> {
    // SAFETY: valid C string.
    check_int(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
    .map(|fd| owned(fd as libc::c_long))
}

/// Creates an empty file `name` in `dir` (mode 0644, never following a symlink); an existing
/// file is fine.
pub fn create_file_at(dir: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    // SAFETY: valid C string and fd.
    let fd = check_int(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o644,
        )
    })?;
    drop(owned(fd as libc::c_long));
    Ok(())
}

/// `mkdirat(2)` of `name` in `dir`.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: libc::mode_t) -> SysResult<()> {
    // SAFETY: valid C string and fd.
    check_int(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(|_| ())
}

/// `symlinkat(2)`: creates `dir/name -> target` (an `O_PATH` directory fd is a valid `dir`).
pub fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> SysResult<()> {
    // SAFETY: valid C strings and fd.
    check_int(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
        .map(|_| ())
}

/// Whether `path` (followed) is a directory.
pub fn is_dir(path: &CStr) -> SysResult<bool> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    check_int(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Writes all of `buf` to `fd`, retrying on `EINTR`.
pub fn write_all(fd: BorrowedFd<'_>, buf: &[u8]) -> SysResult<()> {
    let mut off = 0;
    while off < buf.len() {
        // SAFETY: the slice is valid for reads of its remaining length.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf[off..].as_ptr().cast(), buf.len() - off) };
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

/// One `read(2)` into `buf`, retrying on `EINTR`; `Ok(0)` is end of file.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> SysResult<usize> {
    loop {
        // SAFETY: the slice is valid for writes of its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// `dup2(fd, target)`: makes `fd` also available as `target` (0, 1, 2 for the stdio slots).
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> SysResult<()> {
    // SAFETY: no pointers; `target` is a slot number, not an fd we own elsewhere.
    check_int(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(|_| ())
}

/// The one-byte payload both ends of an fd transfer carry.
fn one_byte_iov(byte: &mut [u8; 1]) -> libc::iovec {
    libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    }
}

/// A `msghdr` over `iov` with `cbuf` as its control buffer, `controllen` bytes of it used.
/// Both stay on the caller's stack (no allocation: the child calls this after `clone`).
fn msghdr_for(iov: &mut libc::iovec, cbuf: &mut [u64; 8], controllen: usize) -> libc::msghdr {
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = controllen;
    msg
}

/// Sends `fd` over the Unix socket `sock` as `SCM_RIGHTS` with a one-byte payload.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> SysResult<()> {
    let mut byte = [1u8; 1];
    let mut iov = one_byte_iov(&mut byte);
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr points at stack buffers that outlive the call; CMSG macros stay in cbuf.
    unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize;
        let msg = msghdr_for(&mut iov, &mut cbuf, space);
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd.as_raw_fd());
        if libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) < 0 {
            return Err(errno());
        }
    }
    Ok(())
}

/// Receives one fd sent by [`send_fd`] (close-on-exec). `EPIPE` = the peer closed the socket
/// without sending; `EBADMSG` = a message without an fd.
pub fn recv_fd(sock: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = one_byte_iov(&mut byte);
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr points at stack buffers that outlive the call.
    unsafe {
        let space = std::mem::size_of_val(&cbuf);
        let mut msg = msghdr_for(&mut iov, &mut cbuf, space);
        let n = loop {
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            break n;
        };
        if n <= 0 {
            return Err(if n == 0 { libc::EPIPE } else { errno() });
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(libc::EBADMSG);
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
        Ok(owned(fd as libc::c_long))
    }
}

/// A close-on-exec `SOCK_SEQPACKET` pair: the parent/child channels of `run` and `exec`
/// (setup handshake, pty handover) use message boundaries; `what` names it in the error.
pub fn seqpacket_pair(what: &str) -> crate::error::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| crate::error::Error::sys(what, e, "the process may be out of file descriptors"))
}

/// A close-on-exec pipe `(read end, write end)`.
pub fn pipe_cloexec() -> crate::error::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| {
        crate::error::Error::sys(
            "creating a pipe",
            e,
            "the process may be out of file descriptors",
        )
    })
}
