//! Which KVM implementation serves /dev/kvm. On PVM (nested, software-assisted: guest kernel
//! code runs in KVM's instruction emulator) a stock guest dies, so the VMM hides CPU features
//! the emulator cannot execute and passes the kernel arguments kernels/README.md explains.

use std::path::Path;

/// The KVM flavour of this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvmBackend {
    /// VT-x / AMD-V: guest kernel code runs natively.
    Hardware,
    /// `kvm_pvm`: nested, guest kernel code emulated.
    Pvm,
}

/// PVM runs guest user code natively, so user-mode CPUID and XGETBV show the host's AVX,
/// AVX2 and AVX-512, and glibc's memcpy uses them; but the guest kernel runs with `noxsave`
/// (PVM cannot emulate XSAVE in guest kernel mode) and switches only the legacy SSE state
/// between processes. Upper vector-register halves then leak between guest processes: glibc's
/// start-up copy of its TLS image came out zeroed and the process died in `__ctype_init`
/// (21–25 of 80 busybox pipelines per guest; 0 of 80 with this). The kernel hands this
/// unknown argument to the init as environment, and the init to the entrypoint.
pub const PVM_GLIBC_TUNABLES: &str =
    "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX,-AVX2,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD";

impl KvmBackend {
    /// Looks at the loaded modules (`/sys/module/kvm_pvm`).
    pub fn detect() -> Self {
        Self::detect_in(Path::new("/sys/module"))
    }

    /// As [`KvmBackend::detect`], with the sysfs module directory given (for tests).
    pub fn detect_in(sys_module: &Path) -> Self {
        if sys_module.join("kvm_pvm").exists() {
            KvmBackend::Pvm
        } else {
            KvmBackend::Hardware
        }
    }

    /// How reports should describe this backend next to VM numbers.
    pub fn describe(self) -> &'static str {
        match self {
            KvmBackend::Hardware => "hardware KVM",
            KvmBackend::Pvm => "nested (PVM): guest kernel code emulated",
        }
    }

    /// Extra guest kernel arguments this backend needs. Each one, why:
    /// `noxsave` + `clearcpuid=…`: the emulator cannot execute xsave/xrstor, cmpxchg16b,
    /// popcnt, clac/stac, and the kernel must not pick fsgsbase/pcid/invpcid/rdpid/erms/fsrm
    /// code paths (hiding them in CPUID alone was not enough); `noint3selftest`: our kernel
    /// patch 1 (int3 at CPL0 ends the VM); `tsc=reliable no_timer_check lpj=`:
    /// skip calibration loops that take seconds in the emulator; `rodata=off`: ~2 s of
    /// page-table work at boot; `noreplace-smp`: on one vCPU the kernel would rewrite every
    /// `lock` prefix in its text one `text_poke` (page-table switch + TLB flush) at a time,
    /// ~4 % of the boot; `percpu_alloc=page`: the per-CPU area in pages instead of one 2 MiB
    /// chunk that memblock zeroes (~2.5 %). All are ordinary upstream parameters.
    pub fn kernel_args(self, tsc_khz: Option<u32>) -> Vec<String> {
        match self {
            KvmBackend::Hardware => Vec::new(),
            KvmBackend::Pvm => {
                let mut v: Vec<String> = [
                    "noxsave",
                    "clearcpuid=cx16,popcnt,smap,smep,fsgsbase,pcid,invpcid,rdpid,erms,fsrm",
                    "noint3selftest",
                    "tsc=reliable",
                    "no_timer_check",
                    "rodata=off",
                    "noreplace-smp",
                    "percpu_alloc=page",
                    PVM_GLIBC_TUNABLES,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                if let Some(khz) = tsc_khz {
                    // loops per jiffy with the TSC delay loop at HZ=100.
                    v.push(format!("lpj={}", u64::from(khz) * 1000 / 100));
                }
                v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_pvm_module_dir() {
        let d = std::env::temp_dir().join(format!("vcmp-detect-{}", std::process::id()));
        std::fs::create_dir_all(d.join("kvm_intel")).unwrap();
        assert_eq!(KvmBackend::detect_in(&d), KvmBackend::Hardware);
        std::fs::create_dir_all(d.join("kvm_pvm")).unwrap();
        assert_eq!(KvmBackend::detect_in(&d), KvmBackend::Pvm);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn args_only_on_pvm() {
        assert!(KvmBackend::Hardware.kernel_args(Some(2_000_000)).is_empty());
        let a = KvmBackend::Pvm.kernel_args(Some(2_000_000));
        assert!(a.contains(&"noxsave".to_string()));
        assert!(a.contains(&"lpj=20000000".to_string()));
    }
}
