//! A host directory shown inside an instance (`-v HOST:GUEST[:ro]`): one type for the CLI's
//! stored spec, the container runtime's bind mounts and the VM's shares.

use std::path::PathBuf;

/// A `-v HOST:GUEST[:ro]` request, already validated by the CLI (the host path exists and is
/// absolute and canonical).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Volume {
    /// Absolute, canonical host path.
    pub host: PathBuf,
    /// Absolute path inside the instance (containers resolve it inside the root).
    pub guest: String,
    /// `:ro`: read-only, enforced by the kernel (containers) or the VMM's 9p server (VMs).
    pub readonly: bool,
}
