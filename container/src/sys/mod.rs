//! The only place in the crate that calls `libc` directly: thin, typed wrappers over the raw
//! Linux system calls the runtime needs (many of which `nix` 0.29 does not wrap).
//!
//! Every wrapper here is async-signal-safe: it allocates nothing and returns the raw `errno` on
//! failure, so it can be called in the cloned child, which must not touch the allocator (the
//! parent may have had other threads holding the malloc lock at clone time). File descriptors
//! go in as [`BorrowedFd`](std::os::fd::BorrowedFd) and come out as
//! [`OwnedFd`](std::os::fd::OwnedFd): both are plain integers, so using them in the child
//! allocates nothing either, and dropping an `OwnedFd` is exactly one `close`.
//!
//! * [`mount`](self::mount): the new mount API, legacy `mount`, `pivot_root`.
//! * [`fd`](self::fd): opening, reading, writing, fd passing over a socket.
//! * [`proc`](self::proc): clone, wait, credentials, capabilities, namespaces, `execve`, pidfd.
//! * [`signal`](self::signal): masks, handlers, `sigwaitinfo`.
//! * [`tty`](self::tty): pseudo-terminals, terminal modes, loopback interface, `uname`.

pub mod fd;
pub mod mount;
pub mod proc;
pub mod signal;
pub mod tty;

pub use fd::*;
pub use mount::*;
pub use proc::*;
pub use signal::*;
pub use tty::*;

/// `errno` of a failed call, kept raw so the child can report it without allocating.
pub type Errno = i32;

/// Result of a raw call: the value, or `errno`.
pub type SysResult<T> = Result<T, Errno>;

#[inline]
pub(crate) fn errno() -> Errno {
    // SAFETY: reading the thread-local errno location is always valid.
    unsafe { *libc::__errno_location() }
}

#[inline]
pub(crate) fn check(ret: libc::c_long) -> SysResult<libc::c_long> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// `check` for the `c_int` returning libc functions.
#[inline]
pub(crate) fn check_int(ret: libc::c_int) -> SysResult<libc::c_int> {
    check(ret.into()).map(|r| r as libc::c_int)
}

/// Wraps a fresh fd the kernel just returned.
#[inline]
pub(crate) fn owned(fd: libc::c_long) -> std::os::fd::OwnedFd {
    // SAFETY: only called on the non-negative result of a call that returns a new fd.
    unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as std::os::fd::RawFd) }
}

/// The calling thread's `errno` after a failed libc call.
pub fn last_errno() -> Errno {
    errno()
}

/// `CLOCK_MONOTONIC` in nanoseconds: the one clock of every phase timestamp (shared).
pub use vcompare_spec::clock::monotonic_ns;
