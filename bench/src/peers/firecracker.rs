//! Firecracker as a VM peer. Only detected here: measuring it needs its API socket or a
//! config file plus a rootfs image, which is future work; when it is on PATH the report says
//! it was found but not measured.

/// Whether firecracker is on PATH.
pub fn available() -> bool {
    super::which("firecracker").is_some()
}

/// `firecracker --version` first line.
pub fn version() -> Option<String> {
    super::version("firecracker", &["--version"])
}
