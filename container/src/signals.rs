//! Signal forwarding: while `run` or `exec` waits for its child, SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT received by the calling process go to the child instead of killing the caller.
//!
//! Dispositions are process-wide, so the target lives in a global: with several concurrent
//! calls in one process (the test harness) a signal reaches the most recently started child.
//! The CLI runs one container per process.

use std::sync::atomic::{AtomicI32, Ordering};

use crate::sys::{self, SavedAction};

/// The pid signals go to (0 = not cloned yet).
static CHILD_PID: AtomicI32 = AtomicI32::new(0);
/// A signal that arrived before there was a child; delivered by [`SignalForwarding::set_child`].
static PENDING_SIG: AtomicI32 = AtomicI32::new(0);

/// The forwarded signals.
const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

extern "C" fn on_signal(sig: libc::c_int) {
    let pid = CHILD_PID.load(Ordering::SeqCst);
    if pid > 0 {
        sys::kill(pid, sig);
    } else {
        PENDING_SIG.store(sig, Ordering::SeqCst);
    }
}

/// Installs the forwarding handlers; restores the previous ones on drop.
pub(crate) struct SignalForwarding {
    old: Vec<SavedAction>,
}

impl SignalForwarding {
    /// Starts forwarding (to nobody yet: a signal arriving now is kept for [`Self::set_child`]).
    pub(crate) fn install() -> SignalForwarding {
        CHILD_PID.store(0, Ordering::SeqCst);
        PENDING_SIG.store(0, Ordering::SeqCst);
        let old = FORWARDED
            .iter()
            .filter_map(|&sig| sys::install_handler(sig, on_signal).ok())
            .collect();
        SignalForwarding { old }
    }

    /// Points forwarding at `pid` and delivers a signal that arrived before it existed.
    pub(crate) fn set_child(&self, pid: i32) {
        CHILD_PID.store(pid, Ordering::SeqCst);
        let p = PENDING_SIG.swap(0, Ordering::SeqCst);
        if p > 0 {
            sys::kill(pid, p);
        }
    }
}

impl Drop for SignalForwarding {
    fn drop(&mut self) {
        for a in &self.old {
            a.restore();
        }
        CHILD_PID.store(0, Ordering::SeqCst);
    }
}
