//! The guest's CPUID: KVM's supported set, with per-vCPU topology (APIC ids, counts), the
//! hypervisor bit, no PMU, and — on PVM hosts — the features the instruction emulator
//! cannot execute at CPL0 hidden.

use kvm_bindings::{kvm_cpuid_entry2, CpuId};

use crate::backend_detect::KvmBackend;

/// A (leaf, register, bit) triple.
#[derive(Debug, Clone, Copy)]
pub struct FeatureBit {
    /// CPUID leaf (subleaf 0).
    pub leaf: u32,
    /// 0 = EAX, 1 = EBX, 2 = ECX, 3 = EDX.
    pub reg: u8,
    /// Bit number.
    pub bit: u8,
    /// Feature name as in /proc/cpuinfo.
    pub name: &'static str,
}

/// Features hidden from the guest on PVM hosts (see kernels/README.md): those the instruction emulator
/// cannot execute at CPL0, plus the invariant TSC: a guest that sees it moves its clock from
/// kvm-clock to the TSC during boot, work that cost ~1 s of emulated boot (10 alternating
/// pairs of boots: 18.73 → 17.60 s median) while kvm-clock serves the guest as well.
pub const PVM_MASKED: &[FeatureBit] = &[
    FeatureBit {
        leaf: 1,
        reg: 2,
        bit: 13,
        name: "cx16",
    },
    FeatureBit {
        leaf: 1,
        reg: 2,
        bit: 17,
        name: "pcid",
    },
    FeatureBit {
        leaf: 1,
        reg: 2,
        bit: 23,
        name: "popcnt",
    },
    FeatureBit {
        leaf: 1,
        reg: 2,
        bit: 26,
        name: "xsave",
    },
    FeatureBit {
        leaf: 1,
        reg: 2,
        bit: 27,
        name: "osxsave",
    },
    FeatureBit {
        leaf: 1,
        reg: 2,
        bit: 28,
        name: "avx",
    },
    FeatureBit {
        leaf: 7,
        reg: 1,
        bit: 0,
        name: "fsgsbase",
    },
    FeatureBit {
        leaf: 7,
        reg: 1,
        bit: 5,
        name: "avx2",
    },
    FeatureBit {
        leaf: 7,
        reg: 1,
        bit: 7,
        name: "smep",
    },
    FeatureBit {
        leaf: 7,
        reg: 1,
        bit: 9,
        name: "erms",
    },
    FeatureBit {
        leaf: 7,
        reg: 1,
        bit: 10,
        name: "invpcid",
    },
    FeatureBit {
        leaf: 7,
        reg: 1,
        bit: 20,
        name: "smap",
    },
    FeatureBit {
        leaf: 7,
        reg: 2,
        bit: 22,
        name: "rdpid",
    },
    FeatureBit {
        leaf: 7,
        reg: 3,
        bit: 4,
        name: "fsrm",
    },
    FeatureBit {
        leaf: 0x8000_0007,
        reg: 3,
        bit: 8,
        name: "invtsc",
    },
];

fn reg_mut(e: &mut kvm_cpuid_entry2, reg: u8) -> &mut u32 {
    match reg {
        0 => &mut e.eax,
        1 => &mut e.ebx,
        2 => &mut e.ecx,
        _ => &mut e.edx,
    }
}

/// Adjusts `entries` (KVM's supported CPUID) for vCPU `index` of `cpus`.
pub fn filter(entries: &mut [kvm_cpuid_entry2], index: u8, cpus: u8, backend: KvmBackend) {
    let shift = 32 - u32::from(cpus).saturating_sub(1).leading_zeros(); // bits for the core id
    for e in entries.iter_mut() {
        match e.function {
            1 => {
                e.ebx = (e.ebx & 0x0000_00ff)
                    | (u32::from(index) << 24)
                    | (u32::from(cpus) << 16)
                    | (8 << 8);
                e.ecx |= 1 << 31; // running under a hypervisor
                if cpus > 1 {
                    e.edx |= 1 << 28; // HTT: more than one logical CPU per package
                }
            }
            4 => {
                // cores per package - 1 in EAX[31:26]; each cache shared by one core.
                e.eax = (e.eax & 0x03ff_ffff & !(0xfff << 14)) | (u32::from(cpus - 1) << 26);
            }
            0xa => {
                // no PMU
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xb | 0x1f => {
                e.edx = u32::from(index);
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 1 << 8;
                    }
                    1 => {
                        e.eax = shift;
                        e.ebx = u32::from(cpus);
                        e.ecx = (2 << 8) | 1;
                    }
                    n => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = n;
                    }
                }
            }
            _ => {}
        }
        if backend == KvmBackend::Pvm {
            for f in PVM_MASKED {
                if e.function == f.leaf && e.index == 0 {
                    *reg_mut(e, f.reg) &= !(1u32 << f.bit);
                }
            }
            if e.function == 0xd {
                // no xsave: no xsave state components
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
        }
    }
}

/// A filtered copy of KVM's supported CPUID for one vCPU.
pub fn for_vcpu(supported: &CpuId, index: u8, cpus: u8, backend: KvmBackend) -> CpuId {
    let mut c = supported.clone();
    filter(c.as_mut_slice(), index, cpus, backend);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, v: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: v,
            ebx: v,
            ecx: v,
            edx: v,
            ..Default::default()
        }
    }

    #[test]
    fn topology_and_hypervisor_bit() {
        let mut e = vec![entry(1, 0, 0), entry(0xb, 0, 0), entry(0xb, 1, 0)];
        filter(&mut e, 2, 4, KvmBackend::Hardware);
        assert_eq!(e[0].ebx >> 24, 2);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_ne!(e[0].ecx & (1 << 31), 0);
        assert_ne!(e[0].edx & (1 << 28), 0);
        assert_eq!(e[1].edx, 2);
        assert_eq!((e[2].eax, e[2].ebx), (2, 4));
    }

    #[test]
    fn pvm_masks_only_on_pvm() {
        let mut hw = vec![entry(1, 0, u32::MAX), entry(7, 0, u32::MAX)];
        filter(&mut hw, 0, 1, KvmBackend::Hardware);
        assert_ne!(hw[0].ecx & (1 << 23), 0, "popcnt kept on hardware");
        let mut p = vec![
            entry(1, 0, u32::MAX),
            entry(7, 0, u32::MAX),
            entry(0xd, 0, 7),
        ];
        filter(&mut p, 0, 1, KvmBackend::Pvm);
        assert_eq!(p[0].ecx & ((1 << 13) | (1 << 23) | (1 << 26)), 0);
        assert_eq!(p[1].ebx & ((1 << 0) | (1 << 7) | (1 << 20)), 0);
        assert_eq!(p[1].ecx & (1 << 22), 0);
        assert_eq!(p[1].edx & (1 << 4), 0);
        assert_eq!(p[2].eax, 0);
    }
}
