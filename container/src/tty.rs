//! `-t`: the container's pseudo-terminal. The child opens it on the container's **own** devpts
//! instance (`/dev/ptmx` after `pivot_root` or `setns`), so inside the container `tty` names a
//! /dev/pts entry that really exists there, and sends the master to the parent, which relays it
//! to our stdio.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use crate::sys::{self, SavedAction, SavedTermios, SysResult};

/// Child side: a new session whose controlling terminal (and stdin/stdout/stderr) is the slave
/// of a fresh pty; returns the master for the parent. Allocation-free.
pub fn open_pty_child() -> SysResult<OwnedFd> {
    sys::open_pty_as_stdio()
}

/// Parent side: relays between our stdin/stdout and the container's pty master until the
/// container side closes. Puts our terminal (if stdin is one) in raw mode and copies its window
/// size; both are restored/stopped by dropping the handle after the container exits.
pub struct PtyRelay {
    saved: Option<SavedTermios>,
    out: Option<std::thread::JoinHandle<()>>,
    old_winch: Option<SavedAction>,
    /// Keeps the master open (and so `WINCH_MASTER` valid) until the relay is dropped.
    _master: Arc<OwnedFd>,
}

/// The pty master the SIGWINCH handler resizes (-1 = none).
static WINCH_MASTER: AtomicI32 = AtomicI32::new(-1);

/// Copies our terminal's size to the container's pty; async-signal-safe.
extern "C" fn on_winch(_: libc::c_int) {
    let m = WINCH_MASTER.load(Ordering::SeqCst);
    if m >= 0 {
        // SAFETY: the relay keeps the master open while WINCH_MASTER names it.
        sys::copy_winsize_from_stdin(unsafe { std::os::fd::BorrowedFd::borrow_raw(m) });
    }
}

/// Copies `from` to `to` until either end fails or `from` reaches its end: one direction of
/// the relay.
fn pump(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = sys::read(from, &mut buf) {
        if sys::write_all(to, &buf[..n]).is_err() {
            break;
        }
    }
}

impl PtyRelay {
    /// Starts the relay threads for `master` (takes ownership).
    pub fn start(master: OwnedFd) -> PtyRelay {
        use std::os::fd::AsRawFd;
        sys::copy_winsize_from_stdin(master.as_fd());
        let saved = sys::stdin_raw_mode();
        // Window resizes follow the user's terminal (SIGWINCH), until the relay is dropped.
        WINCH_MASTER.store(master.as_raw_fd(), Ordering::SeqCst);
        let old_winch = sys::install_handler(libc::SIGWINCH, on_winch).ok();
        let master = Arc::new(master);
        let m_in = master.clone();
        // stdin -> master: detached; it ends when stdin does or the process exits.
        std::thread::spawn(move || pump(std::io::stdin().as_fd(), m_in.as_fd()));
        let m_out = master.clone();
        // Ends at EIO from the master: every slave fd is closed, the container is gone.
        let out = std::thread::spawn(move || pump(m_out.as_fd(), std::io::stdout().as_fd()));
        PtyRelay {
            saved,
            out: Some(out),
            old_winch,
            _master: master,
        }
    }
}

impl Drop for PtyRelay {
    fn drop(&mut self) {
        WINCH_MASTER.store(-1, Ordering::SeqCst);
        if let Some(a) = &self.old_winch {
            a.restore();
        }
        if let Some(h) = self.out.take() {
            let _ = h.join();
        }
        if let Some(t) = &self.saved {
            t.restore();
        }
    }
}
