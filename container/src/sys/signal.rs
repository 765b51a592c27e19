//! Signal system calls: the calling thread's mask, process-wide handlers and synchronous
//! waiting (`sigwaitinfo`), as small typed wrappers.

use super::{check_int, SysResult};

/// A saved signal mask, restored with [`SignalMask::restore`].
#[derive(Clone, Copy)]
pub struct SignalMask(libc::sigset_t);

impl SignalMask {
    /// Blocks every signal in the calling thread; returns the previous mask.
    pub fn block_all() -> SignalMask {
        // SAFETY: sigset manipulation on stack values.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::sigprocmask(libc::SIG_BLOCK, &all, &mut old);
            SignalMask(old)
        }
    }

    /// Makes this the calling thread's mask again.
    pub fn restore(&self) {
        // SAFETY: a valid sigset.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Waits for any (blocked) signal and returns its number; retries on failure.
pub fn wait_any_signal() -> libc::c_int {
    // SAFETY: a full set on the stack, NULL siginfo.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        loop {
            let sig = libc::sigwaitinfo(&all, std::ptr::null_mut());
            if sig > 0 {
                return sig;
            }
        }
    }
}

/// A signal's previous disposition, put back by [`SavedAction::restore`].
pub struct SavedAction {
    sig: libc::c_int,
    old: libc::sigaction,
}

impl SavedAction {
    /// Restores the disposition that [`install_handler`] replaced.
    pub fn restore(&self) {
        // SAFETY: restoring a disposition the kernel gave us.
        unsafe { libc::sigaction(self.sig, &self.old, std::ptr::null_mut()) };
    }
}

/// Installs `handler` for `sig` (`SA_RESTART`, empty mask). The handler must only make
/// async-signal-safe calls.
pub fn install_handler(
    sig: libc::c_int,
    handler: extern "C" fn(libc::c_int),
) -> SysResult<SavedAction> {
    // SAFETY: zeroed sigactions are valid; the handler has the C signature the kernel calls.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        check_int(libc::sigaction(sig, &sa, &mut old))?;
        Ok(SavedAction { sig, old })
    }
}
