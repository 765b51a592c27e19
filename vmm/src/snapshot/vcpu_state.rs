//! One vCPU's KVM state: saved and restored in Firecracker's set and order (the order is a
//! property of KVM, not a style choice: `KVM_GET_MP_STATE` first because it makes KVM accept
//! pending APIC events; `SET_REGS` clears pending exceptions, so vCPU events go last;
//! `SET_LAPIC` after `SET_SREGS`, which restores the APIC base; the TSC deadline after the
//! TSC). There is no `KVM_GET_FPU`: XSAVE covers it.

use kvm_bindings::{
    kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs, kvm_sregs,
    kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::VcpuFd;
use serde::{Deserialize, Serialize};

use super::SnapshotError;

/// `IA32_TSC`: on PVM hosts writing it is accepted and ignored (the guest TSC is the host's).
pub const MSR_IA32_TSC: u32 = 0x10;
/// `IA32_TSC_DEADLINE`: must be written after `IA32_TSC`, or the deadline is lost.
pub const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
/// `IA32_TSC_ADJUST`: follows the TSC, so it is not compared after a restore either.
pub const MSR_IA32_TSC_ADJUST: u32 = 0x3b;
/// PVM's own MSRs (`LINEAR_ADDRESS_RANGE` .. `RETS_RIP`), which the PVM host we develop on
/// does not list in `KVM_GET_MSR_INDEX_LIST`: probed, and saved when the host answers.
pub const PVM_MSRS: std::ops::RangeInclusive<u32> = 0x4b56_4df0..=0x4b56_4df6;

/// Everything KVM holds for one vCPU.
#[derive(Serialize, Deserialize)]
pub struct VcpuState {
    /// Running, halted, …
    pub mp_state: kvm_mp_state,
    /// General-purpose registers, RIP, RFLAGS.
    pub regs: kvm_regs,
    /// Segment, control and descriptor-table registers, EFER, APIC base.
    pub sregs: kvm_sregs,
    /// FPU/SSE/AVX state (the legacy 4 KiB `KVM_GET_XSAVE` area).
    pub xsave: kvm_xsave,
    /// Extended control registers.
    pub xcrs: kvm_xcrs,
    /// Debug registers.
    pub debug_regs: kvm_debugregs,
    /// The local APIC's registers (its timer included).
    pub lapic: kvm_lapic_state,
    /// The guest TSC frequency, if KVM reports it.
    pub tsc_khz: Option<u32>,
    /// The CPUID the guest saw (set first on restore: KVM checks MSRs against it).
    pub cpuid: CpuId,
    /// Every MSR KVM could read from the list given to [`save`].
    pub msrs: Vec<kvm_msr_entry>,
    /// Pending exceptions, interrupts, NMIs, SMIs.
    pub events: kvm_vcpu_events,
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> SnapshotError {
    move |source| SnapshotError::Kvm { what, source }
}

/// Reads the MSRs in `indices` that this vCPU has: `KVM_GET_MSRS` stops at the first one it
/// cannot read, so that one is dropped and the rest read again (Cloud Hypervisor's way).
fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, SnapshotError> {
    let mut want: Vec<u32> = indices.to_vec();
    let mut out = Vec::with_capacity(want.len());
    while !want.is_empty() {
        let entries: Vec<kvm_msr_entry> = want
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| SnapshotError::TooManyMsrs)?;
        let n = vcpu.get_msrs(&mut msrs).map_err(ioctl("KVM_GET_MSRS"))?;
        out.extend_from_slice(&msrs.as_slice()[..n]);
        // Skip the one that failed (if any) and go on after it.
        want.drain(..(n + 1).min(want.len()));
    }
    Ok(out)
}

/// Saves one vCPU (which must be out of `KVM_RUN` with its pending I/O completed).
pub fn save(vcpu: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, SnapshotError> {
    let mp_state = vcpu.get_mp_state().map_err(ioctl("KVM_GET_MP_STATE"))?;
    let regs = vcpu.get_regs().map_err(ioctl("KVM_GET_REGS"))?;
    let sregs = vcpu.get_sregs().map_err(ioctl("KVM_GET_SREGS"))?;
    let xsave = vcpu.get_xsave().map_err(ioctl("KVM_GET_XSAVE"))?;
    let xcrs = vcpu.get_xcrs().map_err(ioctl("KVM_GET_XCRS"))?;
    let debug_regs = vcpu.get_debug_regs().map_err(ioctl("KVM_GET_DEBUGREGS"))?;
    let lapic = vcpu.get_lapic().map_err(ioctl("KVM_GET_LAPIC"))?;
    let tsc_khz = vcpu.get_tsc_khz().ok();
    let cpuid = vcpu
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map_err(ioctl("KVM_GET_CPUID2"))?;
    let msrs = read_msrs(vcpu, msr_indices)?;
    let events = vcpu
        .get_vcpu_events()
        .map_err(ioctl("KVM_GET_VCPU_EVENTS"))?;
    Ok(VcpuState {
        mp_state,
        regs,
        sregs,
        xsave,
        xcrs,
        debug_regs,
        lapic,
        tsc_khz,
        cpuid,
        msrs,
        events,
    })
}

/// The MSRs in the order they must be written: the TSC deadline last (after the TSC), and a
/// deadline of 0 replaced by the TSC value (else the vCPU never gets a timer interrupt again,
/// as Firecracker found).
fn msrs_for_restore(saved: &[kvm_msr_entry]) -> Vec<kvm_msr_entry> {
    let tsc = saved
        .iter()
        .find(|m| m.index == MSR_IA32_TSC)
        .map(|m| m.data);
    let mut out: Vec<kvm_msr_entry> = saved
        .iter()
        .filter(|m| m.index != MSR_IA32_TSC_DEADLINE)
        .copied()
        .collect();
    if let Some(d) = saved.iter().find(|m| m.index == MSR_IA32_TSC_DEADLINE) {
        let mut d = *d;
        if d.data == 0 {
            d.data = tsc.unwrap_or(0);
        }
        out.push(d);
    }
    out
}

/// Restores one vCPU of a VM whose guest memory is already registered.
pub fn restore(vcpu: &VcpuFd, s: &VcpuState) -> Result<(), SnapshotError> {
    vcpu.set_cpuid2(&s.cpuid).map_err(ioctl("KVM_SET_CPUID2"))?;
    vcpu.set_mp_state(s.mp_state)
        .map_err(ioctl("KVM_SET_MP_STATE"))?;
    vcpu.set_regs(&s.regs).map_err(ioctl("KVM_SET_REGS"))?;
    vcpu.set_sregs(&s.sregs).map_err(ioctl("KVM_SET_SREGS"))?;
    // SAFETY: `xsave` is the legacy 4 KiB area KVM_GET_XSAVE filled on this host kind; KVM
    // copies exactly that size.
    unsafe { vcpu.set_xsave(&s.xsave) }.map_err(ioctl("KVM_SET_XSAVE"))?;
    vcpu.set_xcrs(&s.xcrs).map_err(ioctl("KVM_SET_XCRS"))?;
    vcpu.set_debug_regs(&s.debug_regs)
        .map_err(ioctl("KVM_SET_DEBUGREGS"))?;
    vcpu.set_lapic(&s.lapic).map_err(ioctl("KVM_SET_LAPIC"))?;
    let msrs = msrs_for_restore(&s.msrs);
    let list = Msrs::from_entries(&msrs).map_err(|_| SnapshotError::TooManyMsrs)?;
    let n = vcpu.set_msrs(&list).map_err(ioctl("KVM_SET_MSRS"))?;
    if n != msrs.len() {
        return Err(SnapshotError::Inexact(format!(
            "KVM took {n} of {} MSRs (MSR {:#x} refused)",
            msrs.len(),
            msrs[n].index
        )));
    }
    vcpu.set_vcpu_events(&s.events)
        .map_err(ioctl("KVM_SET_VCPU_EVENTS"))?;
    // Tells the guest's watchdogs the vCPU was paused; not every host has it.
    let _ = vcpu.kvmclock_ctrl();
    Ok(())
}

/// Reads the restored state back and compares what must round-trip exactly: the registers
/// and every MSR except those that follow the TSC (on PVM hosts the guest TSC is the host's and cannot be
/// set; the guest keeps time with kvm-clock). A difference means this host cannot restore
/// the VM, and the caller boots cold instead.
pub fn check_exact(vcpu: &VcpuFd, s: &VcpuState) -> Result<(), SnapshotError> {
    let regs = vcpu.get_regs().map_err(ioctl("KVM_GET_REGS"))?;
    if regs != s.regs {
        return Err(SnapshotError::Inexact(format!(
            "registers differ after restore (RIP {:#x}, saved {:#x})",
            regs.rip, s.regs.rip
        )));
    }
    let indices: Vec<u32> = s
        .msrs
        .iter()
        .map(|m| m.index)
        .filter(|i| ![MSR_IA32_TSC, MSR_IA32_TSC_DEADLINE, MSR_IA32_TSC_ADJUST].contains(i))
        .collect();
    let now = read_msrs(vcpu, &indices)?;
    for want in s.msrs.iter().filter(|m| indices.contains(&m.index)) {
        match now.iter().find(|m| m.index == want.index) {
            Some(got) if got.data == want.data => {}
            got => {
                return Err(SnapshotError::Inexact(format!(
                    "MSR {:#x} is {:?} after restore, saved {:#x}",
                    want.index,
                    got.map(|g| g.data),
                    want.data
                )))
            }
        }
    }
    Ok(())
}

/// The MSRs to save on this host: KVM's list plus PVM's own when the host answers for them.
pub fn msr_indices(kvm: &kvm_ioctls::Kvm) -> Result<Vec<u32>, SnapshotError> {
    let list = kvm
        .get_msr_index_list()
        .map_err(ioctl("KVM_GET_MSR_INDEX_LIST"))?;
    let mut v: Vec<u32> = list.as_slice().to_vec();
    for m in PVM_MSRS {
        if !v.contains(&m) {
            v.push(m);
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: u32, data: u64) -> kvm_msr_entry {
        kvm_msr_entry {
            index,
            data,
            ..Default::default()
        }
    }

    #[test]
    fn tsc_deadline_goes_last_and_zero_becomes_the_tsc() {
        let saved = [
            e(MSR_IA32_TSC_DEADLINE, 0),
            e(0xc000_0080, 0xd01),
            e(MSR_IA32_TSC, 777),
        ];
        let r = msrs_for_restore(&saved);
        assert_eq!(
            r.iter().map(|m| m.index).collect::<Vec<_>>(),
            [0xc000_0080, MSR_IA32_TSC, MSR_IA32_TSC_DEADLINE]
        );
        assert_eq!(r[2].data, 777);
        let r = msrs_for_restore(&[e(MSR_IA32_TSC_DEADLINE, 5), e(MSR_IA32_TSC, 777)]);
        assert_eq!(r.last().unwrap().data, 5);
    }
}
