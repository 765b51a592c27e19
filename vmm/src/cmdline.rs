//! The guest kernel command line, built in order: our base arguments, the backend's, one
//! `virtio_mmio.device=` fragment per device (appended by the device manager as it attaches
//! each device), then the caller's extra arguments.

use crate::backend_detect::KvmBackend;

/// A kernel command line under construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCmdline {
    args: Vec<String>,
}

impl KernelCmdline {
    /// The arguments every VM gets on `backend`. Few on purpose: the kernel matches every
    /// argument against every built-in parameter once per initcall level, ~6 % of an emulated
    /// boot (kernels/profile.sh); so nothing that our kernel's config already implies (no
    /// PCI, no modules, one UART, no KASLR).
    pub fn base(backend: KvmBackend, tsc_khz: Option<u32>, boot_log: bool) -> Self {
        let mut c = KernelCmdline::default();
        for a in ["console=ttyS0", "reboot=k", "panic=-1"] {
            c.push(a);
        }
        if !boot_log {
            c.push("quiet");
        }
        c.extend(backend.kernel_args(tsc_khz));
        c
    }

    /// Appends one argument.
    pub fn push(&mut self, arg: impl Into<String>) {
        self.args.push(arg.into());
    }

    /// Appends arguments in order.
    pub fn extend(&mut self, args: impl IntoIterator<Item = String>) {
        self.args.extend(args);
    }

    /// The arguments so far.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

impl std::fmt::Display for KernelCmdline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.args.join(" "))
    }
}

/// The whole command line of a VM with `virtio_devices` virtio-mmio devices (in slot order)
/// on this backend: what the VMM writes into guest RAM, for peers that boot the same kernel
/// (the QEMU benchmark peer passes 0 devices).
pub fn kernel_cmdline(
    backend: KvmBackend,
    tsc_khz: Option<u32>,
    virtio_devices: usize,
    boot_log: bool,
    extra: &[String],
) -> String {
    let mut c = KernelCmdline::base(backend, tsc_khz, boot_log);
    for slot in crate::device_manager::MmioSlot::first(virtio_devices) {
        c.push(slot.cmdline_fragment());
    }
    c.extend(extra.iter().cloned());
    c.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_base_backend_devices_extra() {
        let s = kernel_cmdline(
            KvmBackend::Hardware,
            None,
            2,
            false,
            &["root=/dev/vda".into()],
        );
        assert_eq!(
            s,
            "console=ttyS0 reboot=k panic=-1 quiet \
             virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 root=/dev/vda"
        );
        let s = kernel_cmdline(KvmBackend::Hardware, None, 0, true, &[]);
        assert_eq!(s, "console=ttyS0 reboot=k panic=-1");
    }
}
