//! [`VmError`]: every way a VM can fail to run to the entrypoint's end, one typed enum for
//! the builder, the device manager, the vCPU manager and the exit classification.

use crate::boot::{self, mptable, regs};
use crate::exit::GuestFailure;
use crate::memory;

/// Why a VM could not run to the entrypoint's end.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// /dev/kvm is missing or not accessible.
    #[error("cannot open /dev/kvm: {0} (KVM is needed for --mode vm: load kvm_intel/kvm_amd/kvm_pvm and make /dev/kvm accessible, e.g. add the user to group kvm)")]
    KvmOpen(std::io::Error),
    /// A KVM ioctl failed during setup.
    #[error("KVM setup failed at {what}: {source}")]
    Kvm {
        /// The step.
        what: &'static str,
        /// The ioctl error.
        source: kvm_ioctls::Error,
    },
    /// Invalid configuration.
    #[error("{0}")]
    Config(String),
    /// Guest RAM.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// Kernel loading / boot structures.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// vCPU register setup.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    /// MP table.
    #[error(transparent)]
    MpTable(#[from] mptable::MpTableError),
    /// Root disk.
    #[error(transparent)]
    Disk(#[from] crate::devices::virtio::block::BlockError),
    /// A shared directory.
    #[error(transparent)]
    Share(#[from] crate::devices::virtio::p9::ShareError),
    /// The network interface (`--network`): the TAP handed to the VMM is unusable.
    #[error(transparent)]
    Net(#[from] crate::devices::virtio::net::NetError),
    /// The guest-agent channel: the vsock device's Unix socket could not be set up.
    #[error(transparent)]
    Vsock(#[from] crate::devices::virtio::vsock::VsockError),
    /// Restoring from a snapshot failed.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// Host resources (eventfd, threads, signals).
    #[error("VMM error: {0}")]
    Host(std::io::Error),
    /// The guest failed: what happened ([`crate::exit::classify`]) and the last console lines.
    #[error("{failure}{}", format_tail(.lines))]
    Guest {
        /// What went wrong, one sentence when displayed.
        failure: GuestFailure,
        /// Last console lines.
        lines: Vec<String>,
    },
}

fn format_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        " (the guest printed nothing)".to_string()
    } else {
        let mut s = format!("\n--- last {} console lines ---", lines.len());
        for l in lines {
            s.push('\n');
            s.push_str(l);
        }
        s
    }
}

/// Maps a failed KVM ioctl to [`VmError::Kvm`] naming the setup step `what`.
pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Kvm { what, source }
}
