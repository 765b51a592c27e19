//! The boot-timer pseudo-device: the guest init writes a 32-bit value to one I/O port, the
//! VMM timestamps it (like Firecracker's "boot time" MMIO byte). The low byte is the phase,
//! the upper 24 bits an argument; the exit phase carries the entrypoint's status, so this is
//! also how the guest reports how the entrypoint ended.
//!
//! Guest kernels without `CONFIG_X86_IOPL_IOPERM` (ours: it would cost boot time, and user-mode
//! port I/O is doubtful under PVM) cannot let the init touch a port, so the same value can
//! also arrive as a console marker, `ESC _ vcompare:<value> ESC \` (an APC sequence that
//! terminals ignore); the serial sink strips it from the output and calls [`BootTimer::record`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vmm_sys_util::eventfd::EventFd;

/// The phases are the guest-init protocol's, defined once in `vcompare_spec::guest` (as is
/// the port, `BOOT_TIMER_PORT`).
pub use vcompare_spec::guest::Phase;

/// Receives the guest init's self-description (JSON).
pub type InfoCallback = Box<dyn Fn(&str) + Send>;

/// One timestamped write.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    /// Which phase.
    pub phase: Phase,
    /// The 24-bit argument.
    pub arg: u32,
    /// When the VMM saw the write.
    pub at: Instant,
}

/// The device: a list of marks, plus the console-forwarding switch it flips when the
/// entrypoint starts and ends.
pub struct BootTimer {
    marks: Mutex<Vec<Mark>>,
    forward: Arc<AtomicBool>,
    keep_forwarding: bool,
    /// Written when the guest reports the entrypoint's end or an init failure: the VM's
    /// work is over and the VMM need not wait for the guest kernel's reboot path.
    pub done: EventFd,
    /// Written when the init reports [`Phase::Ready`]: the main loop may snapshot the VM,
    /// then sends the go message the init waits for.
    pub ready: EventFd,
    info: Mutex<Option<String>>,
    on_info: Mutex<Option<InfoCallback>>,
}

impl BootTimer {
    /// `forward` is the console switch; `keep_forwarding` leaves it on all the time (boot log
    /// wanted).
    pub fn new(forward: Arc<AtomicBool>, keep_forwarding: bool) -> std::io::Result<Self> {
        Ok(BootTimer {
            marks: Mutex::new(Vec::new()),
            forward,
            keep_forwarding,
            done: EventFd::new(libc::EFD_NONBLOCK)?,
            ready: EventFd::new(libc::EFD_NONBLOCK)?,
            info: Mutex::new(None),
            on_info: Mutex::new(None),
        })
    }

    /// A port write from a vCPU.
    pub fn write(&self, data: &[u8]) {
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        self.record(u32::from_le_bytes(v));
    }

    /// Records one report (`phase | arg << 8`), from the port or from a console marker.
    pub fn record(&self, value: u32) {
        let at = Instant::now();
        let Some((phase, arg)) = vcompare_spec::guest::decode_report(value) else {
            return;
        };
        self.marks.lock().unwrap().push(Mark { phase, arg, at });
        match phase {
            Phase::EntrypointExec => self.forward.store(true, Ordering::SeqCst),
            Phase::EntrypointExit | Phase::InitFailed => {
                if !self.keep_forwarding {
                    self.forward.store(false, Ordering::SeqCst);
                }
                let _ = self.done.write(1);
            }
            Phase::Ready => {
                let _ = self.ready.write(1);
            }
            _ => {}
        }
    }

    /// Calls `f` with the guest's self-description (JSON) when the init sends it.
    pub fn on_guest_info(&self, f: InfoCallback) {
        *self.on_info.lock().unwrap() = Some(f);
    }

    /// Stores the guest's self-description and passes it on.
    pub fn set_guest_info(&self, info: String) {
        if let Some(f) = &*self.on_info.lock().unwrap() {
            f(&info);
        }
        *self.info.lock().unwrap() = Some(info);
    }

    /// The guest's self-description, if it arrived.
    pub fn guest_info(&self) -> Option<String> {
        self.info.lock().unwrap().clone()
    }

    /// All marks so far.
    pub fn marks(&self) -> Vec<Mark> {
        self.marks.lock().unwrap().clone()
    }

    /// The last mark of `phase`.
    pub fn last(&self, phase: Phase) -> Option<Mark> {
        self.marks
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|m| m.phase == phase)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_forwarding() {
        let fwd = Arc::new(AtomicBool::new(false));
        let t = BootTimer::new(fwd.clone(), false).unwrap();
        t.write(&1u32.to_le_bytes());
        assert!(!fwd.load(Ordering::SeqCst));
        t.write(&3u32.to_le_bytes());
        assert!(fwd.load(Ordering::SeqCst));
        t.write(&(4u32 | (42 << 8) | (9 << 16)).to_le_bytes());
        assert!(!fwd.load(Ordering::SeqCst));
        assert_eq!(t.done.read().unwrap(), 1);
        let m = t.last(Phase::EntrypointExit).unwrap();
        assert_eq!((m.arg & 0xff, m.arg >> 8), (42, 9));
        t.write(&[0x77]); // unknown phase: ignored
        assert_eq!(t.marks().len(), 3);
    }
}
