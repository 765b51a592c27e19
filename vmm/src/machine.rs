//! One microVM from start to end: [`run`] builds it ([`crate::builder`]), runs its vCPUs
//! ([`crate::vcpu_manager`]) beside the main loop ([`crate::event_loop`]) until the guest is
//! done, fails, times out or is asked to stop, and classifies the end ([`crate::exit`]).
//! The other names here are kept for the callers that know them by this path.

use std::time::{Duration, Instant};

use vcompare_spec::guest::Phase;
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::backend_detect::KvmBackend;
use crate::builder::{self, BuildOptions};
use crate::config::SnapshotJob;
use crate::devices::boot_timer::Mark;
use crate::exit::{self, GuestReport};
use crate::guest_profile::GuestProfile;
use crate::signals::SignalGuard;
use crate::snapshot::{self, vcpu_state, PausedVm, TakeRequest};
use crate::trace::Trace;
use crate::vcpu::VcpuShared;
use crate::vcpu_manager::VcpuManager;

pub use crate::builder::validate;
pub use crate::cmdline::kernel_cmdline;
pub use crate::config::{MemoryCallback, VmConfig};
pub use crate::device_manager::VIRTIO_IRQ_BASE;
pub use crate::error::VmError;
pub use crate::exit::GuestExit;
pub use crate::signals::FORWARDED_SIGNALS;
pub use vcompare_spec::guest::{BOOT_TIMER_PORT, SIGNAL_BYTE};

/// Console lines shown with a guest failure.
pub const TAIL_LINES: usize = 20;

/// The result of a VM run, with the timing the benchmarks use.
#[derive(Debug, Clone)]
pub struct VmReport {
    /// How the entrypoint ended.
    pub exit: GuestExit,
    /// KVM flavour of this host.
    pub backend: KvmBackend,
    /// `VmConfig::launched`.
    pub launched: Instant,
    /// vCPU 0's first KVM_RUN: end of VMM setup, first guest instruction.
    pub first_entry: Option<Instant>,
    /// The guest's boot-timer marks.
    pub marks: Vec<Mark>,
    /// The last console lines (boot log included).
    pub console_tail: Vec<String>,
    /// When the VM was torn down.
    pub ended: Instant,
    /// The guest init's self-description (JSON), if it sent one.
    pub guest_info: Option<String>,
    /// The VM was restored from a snapshot instead of booting.
    pub restored: bool,
    /// A snapshot was taken during this run: how long the vCPUs were paused for it, ms.
    pub snapshot_pause_ms: Option<f64>,
}

/// Boots the VM and runs it until the guest is done. The calling thread runs vCPU 0 (no
/// thread hand-off before the first guest instruction); the main loop and the other vCPUs
/// get their own threads.
pub fn run(cfg: VmConfig) -> Result<VmReport, VmError> {
    let VmConfig {
        mut job,
        debug,
        console,
        hooks,
        handle_signals,
        launched,
    } = cfg;
    let mut trace = Trace::new("main", launched, debug.trace);
    trace.step("run() entered");
    validate(job.memory_mib, job.cpus)?;
    let backend = if debug.plain_kvm {
        KvmBackend::Hardware
    } else {
        KvmBackend::detect()
    };
    let signals = if handle_signals {
        Some(SignalGuard::new().map_err(VmError::Host)?)
    } else {
        None
    };
    let opts = BuildOptions {
        backend,
        console,
        on_guest_info: hooks.on_guest_info,
        launched,
        trace: debug.trace,
    };
    let builder::Vm {
        backend,
        vcpus,
        devices,
        reset_evt,
        vm,
        mem,
        kvm,
    } = builder::build(&mut job, opts, &mut trace)?;

    let restored = matches!(job.snapshot, Some(SnapshotJob::Restore { .. }));
    let take = match &job.snapshot {
        Some(SnapshotJob::Take { dir, label }) => match vcpu_state::msr_indices(&kvm) {
            Ok(msrs) => Some((dir.clone(), label.clone(), msrs)),
            Err(e) => {
                eprintln!("vcompare: not taking a VM snapshot: {e}");
                None
            }
        },
        _ => None,
    };
    let snapshot_pause_ms = std::sync::Mutex::new(None);
    let cpus = usize::from(job.cpus);
    let on_ready = |shared: &VcpuShared| {
        let Some((dir, label, msrs)) = &take else {
            return;
        };
        let paused_at = Instant::now();
        let taken = shared
            .pause_all(cpus, msrs.clone(), Duration::from_secs(5))
            .and_then(|states| {
                let req = TakeRequest {
                    dir,
                    label: label.clone(),
                    memory_mib: job.memory_mib,
                    backend,
                    disk: job.root_disk.as_deref(),
                };
                let paused = PausedVm {
                    vm: &vm,
                    mem: &mem,
                    devices: &devices,
                    vcpus: states,
                    paused_at,
                };
                let r = snapshot::take(&req, paused);
                shared.resume();
                r
            });
        match taken {
            Ok(_) => {
                let ms = paused_at.elapsed().as_secs_f64() * 1e3;
                tracing::debug!(ms, "snapshot taken");
                *snapshot_pause_ms.lock().unwrap() = Some(ms);
            }
            Err(e) => eprintln!("vcompare: could not snapshot the VM ({e}); later runs boot cold until one succeeds"),
        }
    };
    let mut vcpus = VcpuManager::start(vcpus, &devices)?;
    let on_memory = hooks.on_memory;
    let timeout = job.timeout_secs.map(Duration::from_secs);
    let profile = debug.profile.map(|p| GuestProfile::new(p, launched));
    let end = vcpus.run(&devices, profile, &mut trace, |shared| {
        // Only for `inspect` (a file write): off the setup's critical path.
        if let Some(f) = on_memory {
            let r: Vec<(u64, u64)> = mem.iter().map(|r| (r.as_ptr() as u64, r.len())).collect();
            f(&r);
        }
        let mut on_ready = on_ready;
        crate::event_loop::main_loop(
            timeout,
            &devices,
            shared,
            &reset_evt,
            signals.as_ref(),
            restored,
            &mut on_ready,
        )
    })?;
    if let Some(first) = vcpus.first_entry() {
        tracing::debug!(
            ms = crate::trace::ms(first - launched),
            "vmm setup done: launch → first KVM_RUN"
        );
    }
    vcpus.stop();
    let ended = Instant::now();
    let tail = {
        let mut s = devices.serial.lock().unwrap();
        let _ = std::io::Write::flush(s.sink());
        s.sink().last_lines(TAIL_LINES)
    };
    drop(vm);
    drop(kvm);
    let timer = &devices.boot_timer;
    let guest = GuestReport {
        exit_arg: timer.last(Phase::EntrypointExit).map(|m| m.arg),
        init_failed: timer.last(Phase::InitFailed).is_some(),
        console_tail: &tail,
    };
    match exit::classify(&end, &guest, backend) {
        Ok(exit) => Ok(VmReport {
            exit,
            backend,
            launched,
            first_entry: vcpus.first_entry(),
            marks: timer.marks(),
            console_tail: tail,
            ended,
            guest_info: timer.guest_info(),
            restored,
            snapshot_pause_ms: snapshot_pause_ms.into_inner().unwrap(),
        }),
        // A restored guest that fails before it has even read its spec never ran anything of
        // this run: the restore itself is what failed, and the caller may boot cold instead.
        Err(failure) if restored && timer.last(Phase::RootMounted).is_none() => {
            Err(snapshot::SnapshotError::Inexact(format!(
                "the restored guest failed before reading its spec: {failure}"
            ))
            .into())
        }
        Err(failure) => Err(VmError::Guest {
            failure,
            lines: tail,
        }),
    }
}
