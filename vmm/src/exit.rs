//! How a VM run ended, decided by one pure function ([`classify`]) from why the main loop
//! stopped and what the guest reported: an entrypoint exit status, a timeout or a second stop
//! signal, or a guest failure (kernel panic, init failure, reboot without a report, triple
//! fault, KVM internal error, entry failure, unexpected exit, KVM_RUN error).

use crate::backend_detect::KvmBackend;
use crate::vcpu::VcpuEnd;

/// How the entrypoint inside the guest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestExit {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// The `timeout` watchdog stopped the VM.
    TimedOut,
    /// Stopped by a second SIGTERM/SIGINT to the VMM before the guest finished.
    Killed,
}

/// Why the VMM's main loop stopped waiting for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopEnd {
    /// The guest reset (i8042), or reported the entrypoint's end or an init failure.
    Reset,
    /// A vCPU stopped the VM (index, why).
    Vcpu(usize, VcpuEnd),
    /// The watchdog fired.
    TimedOut,
    /// A second SIGTERM/SIGINT arrived.
    Killed,
}

/// What the guest told the VMM, as far as [`classify`] needs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuestReport<'a> {
    /// The argument of the last `entrypoint_exit` report (exit code and signal).
    pub exit_arg: Option<u32>,
    /// The init reported `init_failed`.
    pub init_failed: bool,
    /// The last console lines (boot log included).
    pub console_tail: &'a [String],
}

/// A guest failure; its `Display` is the one sentence users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestFailure {
    /// "Kernel panic" on the console (the line, trimmed).
    #[error("the guest kernel panicked ({0})")]
    KernelPanic(String),
    /// The init reported `init_failed`.
    #[error("the guest init failed before the entrypoint could run")]
    InitFailed,
    /// Reset or system event without an exit report.
    #[error("the guest rebooted without reporting how the entrypoint ended")]
    RebootedWithoutReport,
    /// KVM_EXIT_SHUTDOWN.
    #[error("vCPU {vcpu} hit a triple fault (KVM_EXIT_SHUTDOWN); the guest kernel crashed")]
    TripleFault {
        /// The vCPU.
        vcpu: usize,
    },
    /// KVM_EXIT_INTERNAL_ERROR.
    #[error("KVM could not run a guest instruction on vCPU {vcpu} (KVM_EXIT_INTERNAL_ERROR, suberror {suberror}, RIP {rip:#x}, CPL {cpl}){}",
        if *.pvm { "; on PVM hosts the guest kernel must be vcompare's patched one (kernels/build.sh)" } else { "" })]
    InternalError {
        /// The vCPU.
        vcpu: usize,
        /// KVM's suberror.
        suberror: u32,
        /// Guest RIP.
        rip: u64,
        /// Guest CPL.
        cpl: u8,
        /// The host is PVM (adds the hint about the patched kernel).
        pvm: bool,
    },
    /// KVM_EXIT_FAIL_ENTRY.
    #[error("KVM refused to enter vCPU {vcpu} (KVM_EXIT_FAIL_ENTRY, reason {reason:#x})")]
    FailEntry {
        /// The vCPU.
        vcpu: usize,
        /// Hardware entry failure reason.
        reason: u64,
    },
    /// Any other exit the vCPU loop does not handle.
    #[error("unexpected exit on vCPU {vcpu}: {what}")]
    Unexpected {
        /// The vCPU.
        vcpu: usize,
        /// The exit, debug-formatted.
        what: String,
    },
    /// KVM_RUN itself failed.
    #[error("KVM_RUN failed on vCPU {vcpu}: {what}")]
    RunError {
        /// The vCPU.
        vcpu: usize,
        /// The error.
        what: String,
    },
}

/// Decides how the run ended. Order matters and is the contract: a watchdog or a second
/// signal wins; a reset or shutdown after an exit report is that exit; otherwise a kernel
/// panic on the console, then an init failure, then the way the loop ended.
pub fn classify(
    end: &LoopEnd,
    guest: &GuestReport<'_>,
    backend: KvmBackend,
) -> Result<GuestExit, GuestFailure> {
    let exit_status = guest
        .exit_arg
        .map(|arg| match vcompare_spec::guest::exit_from_arg(arg) {
            (_, sig) if sig != 0 => GuestExit::Signaled(sig),
            (code, _) => GuestExit::Exited(code),
        });
    let panic_line = guest
        .console_tail
        .iter()
        .find(|l| l.contains("Kernel panic"));
    match end {
        LoopEnd::TimedOut => Ok(GuestExit::TimedOut),
        LoopEnd::Killed => Ok(GuestExit::Killed),
        LoopEnd::Reset
        | LoopEnd::Vcpu(_, VcpuEnd::SystemEvent(_))
        | LoopEnd::Vcpu(_, VcpuEnd::Shutdown)
            if exit_status.is_some() =>
        {
            Ok(exit_status.expect("checked by the guard"))
        }
        _ if panic_line.is_some() => Err(GuestFailure::KernelPanic(
            panic_line.expect("checked by the guard").trim().to_string(),
        )),
        _ if guest.init_failed => Err(GuestFailure::InitFailed),
        LoopEnd::Reset | LoopEnd::Vcpu(_, VcpuEnd::SystemEvent(_)) => {
            Err(GuestFailure::RebootedWithoutReport)
        }
        &LoopEnd::Vcpu(vcpu, VcpuEnd::Shutdown) => Err(GuestFailure::TripleFault { vcpu }),
        &LoopEnd::Vcpu(vcpu, VcpuEnd::InternalError { suberror, rip, cpl }) => {
            Err(GuestFailure::InternalError {
                vcpu,
                suberror,
                rip,
                cpl,
                pvm: backend == KvmBackend::Pvm,
            })
        }
        &LoopEnd::Vcpu(vcpu, VcpuEnd::FailEntry(reason)) => {
            Err(GuestFailure::FailEntry { vcpu, reason })
        }
        LoopEnd::Vcpu(vcpu, VcpuEnd::Unexpected(what)) => Err(GuestFailure::Unexpected {
            vcpu: *vcpu,
            what: what.clone(),
        }),
        LoopEnd::Vcpu(vcpu, VcpuEnd::RunError(what)) => Err(GuestFailure::RunError {
            vcpu: *vcpu,
            what: what.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcompare_spec::guest::exit_arg;

    const HW: KvmBackend = KvmBackend::Hardware;

    fn report(exit: Option<(i32, i32)>, init_failed: bool, tail: &[String]) -> GuestReport<'_> {
        GuestReport {
            exit_arg: exit.map(|(c, s)| exit_arg(c, s)),
            init_failed,
            console_tail: tail,
        }
    }

    #[test]
    fn clean_power_off_with_a_report_is_the_entrypoint_status() {
        let r = report(Some((3, 0)), false, &[]);
        for end in [
            LoopEnd::Reset,
            LoopEnd::Vcpu(0, VcpuEnd::SystemEvent(1)),
            LoopEnd::Vcpu(1, VcpuEnd::Shutdown),
        ] {
            assert_eq!(classify(&end, &r, HW), Ok(GuestExit::Exited(3)));
        }
        let killed = report(Some((0, 15)), false, &[]);
        assert_eq!(
            classify(&LoopEnd::Reset, &killed, HW),
            Ok(GuestExit::Signaled(15))
        );
    }

    #[test]
    fn watchdog_and_second_signal_win_over_everything() {
        let tail = vec!["Kernel panic - not syncing".to_string()];
        let r = report(Some((0, 0)), true, &tail);
        assert_eq!(
            classify(&LoopEnd::TimedOut, &r, HW),
            Ok(GuestExit::TimedOut)
        );
        assert_eq!(classify(&LoopEnd::Killed, &r, HW), Ok(GuestExit::Killed));
    }

    #[test]
    fn guest_panic_is_named_with_its_line() {
        let tail = vec![
            "boot".to_string(),
            "  Kernel panic - not syncing: VFS  ".to_string(),
        ];
        let r = report(None, true, &tail);
        let e = classify(&LoopEnd::Reset, &r, HW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the guest kernel panicked (Kernel panic - not syncing: VFS)"
        );
        // A panic after the exit report (reset path) does not hide the status...
        let r = report(Some((1, 0)), false, &tail);
        assert_eq!(classify(&LoopEnd::Reset, &r, HW), Ok(GuestExit::Exited(1)));
        // ...but a panic with a vCPU failure is reported as the panic.
        let e = classify(&LoopEnd::Vcpu(0, VcpuEnd::FailEntry(7)), &r, HW).unwrap_err();
        assert!(matches!(e, GuestFailure::KernelPanic(_)));
    }

    #[test]
    fn init_failure_and_silent_reboot() {
        let r = report(None, true, &[]);
        assert_eq!(
            classify(&LoopEnd::Reset, &r, HW),
            Err(GuestFailure::InitFailed)
        );
        let r = report(None, false, &[]);
        let e = classify(&LoopEnd::Vcpu(0, VcpuEnd::SystemEvent(2)), &r, HW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the guest rebooted without reporting how the entrypoint ended"
        );
    }

    #[test]
    fn triple_fault_and_internal_error() {
        let r = report(None, false, &[]);
        let e = classify(&LoopEnd::Vcpu(2, VcpuEnd::Shutdown), &r, HW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vCPU 2 hit a triple fault (KVM_EXIT_SHUTDOWN); the guest kernel crashed"
        );
        let ie = LoopEnd::Vcpu(
            0,
            VcpuEnd::InternalError {
                suberror: 1,
                rip: 0xffff_ffff_8100_0000,
                cpl: 0,
            },
        );
        let hw = classify(&ie, &r, HW).unwrap_err().to_string();
        assert_eq!(hw, "KVM could not run a guest instruction on vCPU 0 (KVM_EXIT_INTERNAL_ERROR, suberror 1, RIP 0xffffffff81000000, CPL 0)");
        let pvm = classify(&ie, &r, KvmBackend::Pvm).unwrap_err().to_string();
        assert!(pvm.starts_with(&hw) && pvm.ends_with("patched one (kernels/build.sh)"));
    }

    #[test]
    fn other_vcpu_ends() {
        let r = report(None, false, &[]);
        let msg = |end: VcpuEnd| {
            classify(&LoopEnd::Vcpu(1, end), &r, HW)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            msg(VcpuEnd::FailEntry(0x21)),
            "KVM refused to enter vCPU 1 (KVM_EXIT_FAIL_ENTRY, reason 0x21)"
        );
        assert_eq!(
            msg(VcpuEnd::Unexpected("Debug".into())),
            "unexpected exit on vCPU 1: Debug"
        );
        assert_eq!(
            msg(VcpuEnd::RunError("EFAULT".into())),
            "KVM_RUN failed on vCPU 1: EFAULT"
        );
    }
}
