//! `VCOMPARE_VMM_PROFILE=FILE`: a sampling profiler of the guest, for finding where a boot's
//! seconds go on hosts that emulate guest kernel code (PVM), where the guest cannot profile
//! itself cheaply. A sampler thread kicks vCPU 0 out of KVM_RUN every millisecond; the vCPU
//! loop then reads RIP and records it with the time since VMM launch. `kernels/profile.sh`
//! turns the file into a per-function table with the vmlinux symbols. Off by default.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvm_ioctls::VcpuFd;

/// Environment variable naming the file the samples are written to (read by
/// [`crate::config::DebugOptions::from_env`]).
pub use crate::config::PROFILE_ENV;

/// Time between samples.
const PERIOD: Duration = Duration::from_millis(1);

/// Samples of vCPU 0's RIP: (µs since VMM launch, RIP, CPL).
pub struct GuestProfile {
    path: PathBuf,
    launched: Instant,
    samples: Vec<(u64, u64, u8)>,
}

impl GuestProfile {
    /// A profile written to `path`, timed from `launched`.
    pub fn new(path: PathBuf, launched: Instant) -> Self {
        GuestProfile {
            path,
            launched,
            samples: Vec::with_capacity(64 * 1024),
        }
    }

    /// Records where vCPU 0 is now (called after a kick made KVM_RUN return).
    pub fn sample(&mut self, vcpu: &VcpuFd) {
        if let (Ok(regs), Ok(sregs)) = (vcpu.get_regs(), vcpu.get_sregs()) {
            let at = self.launched.elapsed().as_micros() as u64;
            self.samples.push((at, regs.rip, sregs.cs.dpl));
        }
    }

    /// Writes "µs rip cpl" lines (hex RIP) to the file; says how many as a debug event, and
    /// a failure as a warning (a diagnostic only: the run goes on).
    pub fn write(&self) {
        let mut out = String::with_capacity(self.samples.len() * 24);
        for (at, rip, cpl) in &self.samples {
            out.push_str(&format!("{at} {rip:x} {cpl}\n"));
        }
        match std::fs::File::create(&self.path).and_then(|mut f| f.write_all(out.as_bytes())) {
            Ok(()) => tracing::debug!(
                samples = self.samples.len(),
                path = %self.path.display(),
                "guest samples written"
            ),
            // Asked for with VCOMPARE_VMM_PROFILE: a user-facing line, not a diagnostic.
            Err(e) => eprintln!("vmm: cannot write {}: {e}", self.path.display()),
        }
    }
}

/// The thread that kicks one vCPU thread every [`PERIOD`] until dropped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts kicking `target` with `signal` (whose handler must do nothing).
    pub fn start(target: libc::pthread_t, signal: i32) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("guest-sampler".into())
            .spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(PERIOD);
                    // SAFETY: the target thread outlives the sampler (it joins it on drop,
                    // before returning); the signal's handler does nothing.
                    unsafe { libc::pthread_kill(target, signal) };
                }
            })?;
        Ok(Sampler {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
