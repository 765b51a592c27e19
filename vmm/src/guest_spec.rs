// What the guest init must do, sent as `/vcompare.json` in the initramfs. This file is shared
// verbatim with the init crate (`include!`), so it may only use `serde` and `std`.

/// Instructions for the guest init (PID 1).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GuestSpec {
    /// Entrypoint + command, never empty.
    pub args: Vec<String>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// Working directory inside the image.
    pub cwd: String,
    /// Numeric user.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Hostname.
    pub hostname: String,
    /// Block device holding the image's root filesystem (ext4), e.g. `/dev/vda`.
    pub root_device: String,
    /// Filesystem type of the root device.
    pub root_fstype: String,
    /// Mount the root read-only.
    #[serde(default)]
    pub root_readonly: bool,
    /// Shared host directories to mount (virtio-9p), in order.
    #[serde(default)]
    pub shares: Vec<GuestShare>,
    /// I/O port of the boot-timer device (phase reports, exit status).
    pub boot_timer_port: u16,
}

/// One shared directory as the guest init mounts it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct GuestShare {
    /// virtio-9p mount tag.
    pub tag: String,
    /// Absolute mount point inside the image.
    pub path: String,
    /// Mount read-only.
    pub read_only: bool,
}
