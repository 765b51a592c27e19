//! Thin system-call helpers the init's parts share (pipes, non-blocking I/O with deadlines,
//! forking a helper process), so each `unsafe` block lives once, next to its reason.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A `CLOEXEC` pipe: (read end, write end); errno on failure.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), i32> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(errno());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads until `buf` is full or EOF/error on a blocking fd; the number of bytes read.
pub fn read_full(fd: RawFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled tail of `buf`.
        let n = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            n if n > 0 => got += n as usize,
            n if n < 0 && errno() == libc::EINTR => {}
            _ => break,
        }
    }
    got
}

/// One `read`: `Ok(0)` at EOF (EIO from a pty master whose slave is closed counts as EOF),
/// `Err(EAGAIN)` when nothing is there.
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: reading into `buf`.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        n if n >= 0 => Ok(n as usize),
        _ if errno() == libc::EIO => Ok(0),
        _ => Err(errno()),
    }
}

/// One `write` (for a socket: `send` with MSG_NOSIGNAL, so a vanished host is an EPIPE
/// error, not a signal); the bytes taken.
pub fn write(fd: RawFd, buf: &[u8], socket: bool) -> Result<usize, i32> {
    // SAFETY: writing from `buf`.
    let n = unsafe {
        if socket {
            libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL)
        } else {
            libc::write(fd, buf.as_ptr().cast(), buf.len())
        }
    };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// Sets O_NONBLOCK on `fd`.
pub fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl flag get/set on an fd we hold.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Polls one fd for `events` for at most `timeout` (`None` = forever); its revents (0 on
/// timeout).
pub fn poll_one(fd: RawFd, events: i16, timeout: Option<Duration>) -> i16 {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, timeout_ms(timeout)) };
    if n > 0 {
        p.revents
    } else {
        0
    }
}

/// A poll timeout in milliseconds (-1 = forever), rounded up so a deadline is not spun on.
pub fn timeout_ms(timeout: Option<Duration>) -> i32 {
    timeout.map_or(-1, |d| {
        d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
    })
}

/// Writes all of `bytes` to a non-blocking socket, waiting for room until `deadline`;
/// false if the peer went away or the deadline passed.
pub fn send_all(fd: RawFd, mut bytes: &[u8], deadline: Instant) -> bool {
    while !bytes.is_empty() {
        match write(fd, bytes, true) {
            Ok(n) => bytes = &bytes[n..],
            Err(libc::EAGAIN) | Err(libc::EINTR) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || poll_one(fd, libc::POLLOUT, Some(left)) & libc::POLLOUT == 0 {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Ends our side of a conversation so the last message is not lost: shuts down the write
/// side (the peer reads EOF after everything sent) and waits, at most `timeout`, for the peer
/// to close, discarding what it still sends. Without this a VM that powers off right after
/// the init's last message could drop it from the transmit queue.
pub fn linger(fd: RawFd, timeout: Duration) {
    // SAFETY: shutdown on a socket we hold.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    let deadline = Instant::now() + timeout;
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || poll_one(fd, libc::POLLIN, Some(left)) == 0 {
            return;
        }
        match read(fd, &mut sink) {
            Ok(0) => return,
            Ok(_) | Err(libc::EAGAIN) | Err(libc::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Closes every fd from 3 up except those in `keep` (a helper process must not hold the
/// init's listener, other connections or the entrypoint's pipe ends, or EOFs never come).
fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd >= 3)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for k in keep.into_iter().chain([u32::MAX]) {
        if k > from {
            // SAFETY: close_range only closes fds; none of the closed ones is used again in
            // this process (see fork_process).
            let rc = unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0) };
            if rc != 0 {
                for fd in from..k.min(4096) {
                    // SAFETY: as above, fd by fd on kernels without close_range.
                    unsafe { libc::close(fd as RawFd) };
                }
            }
        }
        from = k.saturating_add(1);
    }
}

/// Forks a helper process (an agent session) that keeps the console (0..2) and the fds in
/// `keep`, runs `f` and exits with its result (125 if it panics). The child never returns or
/// unwinds into the caller's frames, whose fds it closed: it ends with `_exit`. The child
/// ignores SIGPIPE (writes to a closed pipe are errors, see [`write`]) and unblocks nothing:
/// it inherits PID 1's blocked SIGCHLD, which suits its own pidfd-based waiting.
pub fn fork_process(keep: &[RawFd], f: impl FnOnce() -> i32) -> Result<libc::pid_t, i32> {
    // SAFETY: PID 1 is single-threaded, so the child may run ordinary Rust code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(errno());
    }
    if pid > 0 {
        return Ok(pid);
    }
    close_fds_except(keep);
    // SAFETY: setting a signal disposition in our own process.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(125);
    // SAFETY: ends the helper without unwinding into (or dropping) the parent's state.
    unsafe { libc::_exit(code) }
}

/// The raw fd of an optional owned fd, -1 (ignored by poll) for none.
pub fn raw(fd: Option<&OwnedFd>) -> RawFd {
    fd.map_or(-1, |f| f.as_raw_fd())
}
