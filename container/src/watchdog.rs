//! The `--timeout` watchdog: waits on a pidfd (no signals, no process-wide timer, so concurrent
//! runs in one process do not disturb each other) until the container exits or the limit
//! passes, then SIGKILLs it.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::sys;

/// Waits until `pid` exits or `limit` passes; then SIGKILLs it through its pidfd (immune to pid
/// reuse). Returns whether it had to kill. The caller reaps the child either way.
pub(crate) fn wait_or_kill(pid: i32, limit: Duration) -> bool {
    let Ok(pidfd) = sys::pidfd_open(pid) else {
        return false;
    };
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            sys::pidfd_kill(pidfd.as_fd(), libc::SIGKILL);
            return true;
        }
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        match sys::poll_readable(pidfd.as_fd(), ms.max(1)) {
            Ok(true) => return false,
            Ok(false) => {}
            Err(e) if e == libc::EINTR => {}
            Err(_) => return false,
        }
    }
}
