//! vcompare's KVM microVM: the "own kernel, exclusive RAM and vCPUs" half of the comparison.
//!
//! Built on the rust-vmm crates: `kvm-ioctls` (VM, vCPUs), `vm-memory` (guest RAM),
//! `linux-loader` (ELF vmlinux + PVH), `vm-superio` (8250 UART, i8042), `virtio-queue`
//! (virtio-blk). Entry points: [`machine::run`] (in this process) and [`process::run_job`]
//! (the `vcompare-vmm` binary: one VM in a small dedicated process).

pub mod backend_detect;
pub mod boot;
pub mod cpuid;
pub mod devices;
pub mod disk;
pub mod guest_profile;
pub mod initramfs;
pub mod machine;
pub mod memory;
pub mod process;
pub mod trace;
pub mod vcpu;

/// The spec the guest init reads (`/vcompare.json`), shared with the init crate.
pub mod guest_spec {
    include!("guest_spec.rs");
}

pub use backend_detect::KvmBackend;
pub use guest_spec::GuestSpec;
pub use machine::{run, GuestExit, VmConfig, VmError, VmReport};
