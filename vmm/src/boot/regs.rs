//! vCPU register state for the PVH entry (32-bit protected mode, paging off, %ebx = start
//! info), FPU defaults, the boot MSRs and the local APIC's LINT0/LINT1 wiring.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use super::gdt::{segment_from_gdt, BOOT_GDT};
use super::{GDT_ADDR, START_INFO_ADDR};
use crate::memory::GuestMem;

/// Errors programming a vCPU's boot state.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    /// A KVM register ioctl failed.
    #[error("cannot set vCPU {what}: {source}")]
    Kvm {
        /// Which state.
        what: &'static str,
        /// The ioctl error.
        source: kvm_ioctls::Error,
    },
    /// Writing the GDT into guest memory failed.
    #[error("cannot write the boot GDT: {0}")]
    Gdt(vm_memory::GuestMemoryError),
}

const X86_CR0_PE: u64 = 0x1;
const X86_CR0_ET: u64 = 0x10;
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;

/// Writes the boot GDT (shared by all vCPUs) into guest memory.
pub fn write_gdt(mem: &GuestMem) -> Result<(), RegsError> {
    for (i, e) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(GDT_ADDR + 8 * i as u64))
            .map_err(RegsError::Gdt)?;
    }
    Ok(())
}

/// The general registers at the PVH entry point.
pub fn pvh_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rbx: START_INFO_ADDR,
        ..Default::default()
    }
}

/// Applies the PVH segment/control register state to `sregs` (as read from KVM).
pub fn pvh_sregs(sregs: &mut kvm_sregs) {
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (BOOT_GDT.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    let code = segment_from_gdt(BOOT_GDT[1], 1);
    let data = segment_from_gdt(BOOT_GDT[2], 2);
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = segment_from_gdt(BOOT_GDT[3], 3);
    sregs.cr0 = X86_CR0_PE | X86_CR0_ET;
    sregs.cr3 = 0;
    sregs.cr4 = 0;
    sregs.efer = 0;
}

/// Sets registers, FPU, MSRs for the boot vCPU's PVH entry. Application processors are
/// started by the guest through INIT/SIPI, so only their LAPIC wiring is set here.
pub fn setup_vcpu(vcpu: &VcpuFd, index: u8, entry: u64) -> Result<(), RegsError> {
    let kvm = |what| move |source| RegsError::Kvm { what, source };
    setup_lapic(vcpu)?;
    let msrs = Msrs::from_entries(&[kvm_msr_entry {
        index: MSR_IA32_MISC_ENABLE,
        data: MISC_ENABLE_FAST_STRING,
        ..Default::default()
    }])
    .expect("one MSR fits");
    vcpu.set_msrs(&msrs).map_err(kvm("MSRs"))?;
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("FPU"))?;
    if index == 0 {
        let mut sregs = vcpu.get_sregs().map_err(kvm("special registers (get)"))?;
        pvh_sregs(&mut sregs);
        vcpu.set_sregs(&sregs).map_err(kvm("special registers"))?;
        vcpu.set_regs(&pvh_regs(entry)).map_err(kvm("registers"))?;
    }
    Ok(())
}

fn set_lvt(lapic: &mut kvm_lapic_state, reg: usize, mode: u32) {
    let mut b = [0u8; 4];
    for (i, x) in b.iter_mut().enumerate() {
        *x = lapic.regs[reg + i] as u8;
    }
    let v = (u32::from_le_bytes(b) & !0x700) | (mode << 8);
    for (i, x) in v.to_le_bytes().iter().enumerate() {
        lapic.regs[reg + i] = *x as _;
    }
}

/// LINT0 = ExtINT (the legacy PIC path), LINT1 = NMI, as the MP table says.
fn setup_lapic(vcpu: &VcpuFd) -> Result<(), RegsError> {
    let mut lapic = vcpu.get_lapic().map_err(|source| RegsError::Kvm {
        what: "LAPIC (get)",
        source,
    })?;
    set_lvt(&mut lapic, APIC_LVT0, APIC_MODE_EXTINT);
    set_lvt(&mut lapic, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic).map_err(|source| RegsError::Kvm {
        what: "LAPIC",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvh_entry_state() {
        let r = pvh_regs(0x100_0000);
        assert_eq!((r.rip, r.rbx, r.rflags), (0x100_0000, START_INFO_ADDR, 2));
        let mut s = kvm_sregs::default();
        pvh_sregs(&mut s);
        assert_eq!(s.cr0 & 1, 1, "protected mode");
        assert_eq!(s.cr0 & (1 << 31), 0, "paging off");
        assert_eq!((s.cs.selector, s.ds.selector, s.tr.selector), (8, 16, 24));
        assert_eq!(s.efer, 0);
    }

    #[test]
    fn lvt_mode_bits() {
        let mut l = kvm_lapic_state::default();
        set_lvt(&mut l, APIC_LVT0, APIC_MODE_EXTINT);
        assert_eq!(l.regs[APIC_LVT0 + 1] as u8, 0x07);
        set_lvt(&mut l, APIC_LVT1, APIC_MODE_NMI);
        assert_eq!(l.regs[APIC_LVT1 + 1] as u8, 0x04);
    }
}
