//! Signal masks and the VMM's signalfd: which signals the VMM passes on to the guest's
//! entrypoint, holding them blocked (and restoring the old mask) around a VM, and reading
//! them. Sets are built with vmm-sys-util's `create_sigset`.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Signals the VMM passes on to the entrypoint in the guest (`kill -s SIG` on the VMM pid).
pub const FORWARDED_SIGNALS: [i32; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

fn sigset(signals: &[i32]) -> std::io::Result<libc::sigset_t> {
    vmm_sys_util::signal::create_sigset(signals)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
}

/// The calling thread's signal mask as it was; put back on drop. Lets a thread block signals
/// for a while (a VM's lifetime) without losing the caller's mask.
pub struct SavedMask(libc::sigset_t);

impl SavedMask {
    /// Blocks `signals` in the calling thread (threads spawned meanwhile inherit it).
    pub fn block(signals: &[i32]) -> std::io::Result<Self> {
        let set = sigset(signals)?;
        // SAFETY: `old` is a valid out-pointer; pthread_sigmask affects this thread only.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `set` is initialised by create_sigset.
        match unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) } {
            0 => Ok(SavedMask(old)),
            e => Err(std::io::Error::from_raw_os_error(e)),
        }
    }

    /// The current mask, unchanged (to restore it after code that changes it).
    pub fn current() -> Self {
        // SAFETY: a null new set only reads the mask into `old`.
        unsafe {
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old);
            SavedMask(old)
        }
    }
}

impl Drop for SavedMask {
    fn drop(&mut self) {
        // SAFETY: restoring a mask read by pthread_sigmask.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// Blocks [`FORWARDED_SIGNALS`] in this thread (inherited by the vCPU threads) and reads
/// them from a signalfd; closes it and restores the old mask on drop.
pub struct SignalGuard {
    // Field order = drop order: the fd is closed before the mask is restored.
    fd: OwnedFd,
    _mask: SavedMask,
}

impl SignalGuard {
    /// Takes the forwarded signals over.
    pub fn new() -> std::io::Result<Self> {
        let set = sigset(&FORWARDED_SIGNALS)?;
        let mask = SavedMask::block(&FORWARDED_SIGNALS)?;
        // SAFETY: `set` is initialised; signalfd returns a new fd or -1.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()); // `mask` restores the old mask
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SignalGuard { fd, _mask: mask })
    }

    /// The signalfd, for poll.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// The next pending signal, if any (non-blocking).
    pub fn read(&self) -> Option<i32> {
        // SAFETY: reading one signalfd_siginfo into a properly sized local buffer.
        unsafe {
            let mut info: libc::signalfd_siginfo = std::mem::zeroed();
            let n = libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                std::mem::size_of::<libc::signalfd_siginfo>(),
            );
            (n == std::mem::size_of::<libc::signalfd_siginfo>() as isize)
                .then_some(info.ssi_signo as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(sig: i32) -> bool {
        vmm_sys_util::signal::get_blocked_signals()
            .unwrap()
            .contains(&sig)
    }

    #[test]
    fn saved_mask_blocks_and_restores() {
        // A fresh thread: the test harness's other threads keep their masks.
        std::thread::spawn(|| {
            assert!(!blocked(libc::SIGUSR2));
            let m = SavedMask::block(&FORWARDED_SIGNALS).unwrap();
            assert!(FORWARDED_SIGNALS.iter().all(|&s| blocked(s)));
            drop(m);
            assert!(!blocked(libc::SIGUSR2));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn signal_guard_reads_a_thread_directed_signal() {
        std::thread::spawn(|| {
            let g = SignalGuard::new().unwrap();
            assert_eq!(g.read(), None);
            // SAFETY: signalling this thread; the signal is blocked, so it stays pending.
            unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR1) };
            assert_eq!(g.read(), Some(libc::SIGUSR1));
            drop(g);
            assert!(!blocked(libc::SIGUSR1));
        })
        .join()
        .unwrap();
    }
}
