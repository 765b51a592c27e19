//! vcompare's KVM microVM: the "own kernel, exclusive RAM and vCPUs" half of the comparison.
//!
//! Built on the rust-vmm crates: `kvm-ioctls` (VM, vCPUs), `vm-memory` (guest RAM),
//! `linux-loader` (ELF vmlinux + PVH), `vm-superio` (8250 UART, i8042), `virtio-queue`
//! (virtio-blk, virtio-9p, virtio-net). Entry points: [`machine::run`] (in this process) and
//! [`process::run_job`] (the `vcompare-vmm` binary: one VM in a small dedicated process).
//! The VMM ↔ guest-init protocol (spec area, boot-timer port and phases, console marker,
//! signal byte) is `vcompare_spec::guest`, shared with the init.
//!
//! One file per concept:
//! - `config.rs`: [`VmJob`] (the serialisable job), [`VmConfig`] (job + console + hooks),
//!   [`config::DebugOptions`] (the one place `VCOMPARE_VMM_*` is read).
//! - `machine.rs`: [`machine::run`], one VM from build to exit; [`machine::VmReport`].
//! - `builder.rs`: size checks, KVM, guest RAM, kernel loading, vCPUs: a ready VM.
//! - `device_manager.rs`: device order: MMIO slot, IRQ and `virtio_mmio.device=` in one call.
//! - `cmdline.rs`: the guest kernel command line (base arguments, then devices, then extra).
//! - `vcpu_manager.rs`: starts vCPU threads, runs vCPU 0 beside the main loop, stops them.
//! - `vcpu.rs`: one vCPU's KVM_RUN loop and exit dispatch; the kick signal.
//! - `event_loop.rs`: the main loop (reset, vCPU end, watchdog, forwarded signals).
//! - `exit.rs`: [`GuestExit`] and the pure classification of how a run ended.
//! - `error.rs`: [`VmError`], the one error type of a run.
//! - `signals.rs`: forwarded signals, saved signal masks, the signalfd.
//! - `process.rs`: the `vcompare-vmm` process: job in, [`process::VmResult`] out; the clock.
//! - `memory.rs`: guest RAM and the guest-physical layout.
//! - `boot/`: kernel and initrd loading, PVH start info, MP table, GDT, boot registers.
//! - `cpuid.rs`: the CPUID each vCPU sees (PVM masking).
//! - `backend_detect.rs`: hardware KVM or PVM.
//! - `devices/`: COM1, i8042 reset, the boot timer, virtio-mmio (block, 9p, net on a TAP) and the buses.
//! - `snapshot/`: snapshot and restore (vCPU, VM and device state, the memory file).
//! - `disk.rs`: the root disk image and the spec area on it.
//! - `initramfs.rs`: cpio newc archives for booting without a root disk.
//! - `trace.rs`: the setup stopwatch (debug events, `RUST_LOG=vcompare_vmm=debug`).
//! - `guest_profile.rs`: `VCOMPARE_VMM_PROFILE` guest RIP sampler.
//! - `bin/vcompare-vmm.rs`: the VMM process's `main`.

pub mod backend_detect;
pub mod boot;
pub mod builder;
pub mod cmdline;
pub mod config;
pub mod cpuid;
pub mod device_manager;
pub mod devices;
pub mod disk;
pub mod error;
pub mod event_loop;
pub mod exit;
pub mod guest_profile;
pub mod initramfs;
pub mod machine;
pub mod memory;
pub mod process;
pub mod signals;
pub mod snapshot;
pub mod trace;
pub mod vcpu;
pub mod vcpu_manager;

/// The spec the guest init reads (`/vcompare.json`), shared with the init crate.
pub mod guest_spec {
    pub use vcompare_spec::guest::*;
}

pub use backend_detect::KvmBackend;
pub use config::{DebugOptions, NetJob, SnapshotJob, VmConfig, VmHooks, VmJob, VsockJob};
pub use error::VmError;
pub use exit::GuestExit;
pub use guest_spec::GuestSpec;
pub use machine::{run, VmReport};
