// What the guest init must do, written as JSON into the root disk's last bytes before each
// boot (see vmm/src/disk.rs). This file is shared verbatim with the init crate (`include!`),
// so it may only use `serde` and `std`.

/// Where the init lives on the root disk (the kernel's `init=`).
pub const INIT_PATH: &str = "/.vcompare/init";
/// Size of the area after the root file system that holds the spec.
pub const SPEC_AREA_BYTES: u64 = 64 * 1024;
/// First bytes of the spec area; a little-endian u32 length and the JSON follow.
pub const SPEC_MAGIC: &[u8; 8] = b"VCSPEC01";
/// The spec area for `json`: magic, little-endian u32 length, JSON, zero padding to
/// [`SPEC_AREA_BYTES`]; `None` if it does not fit. The VMM side writes it ([`encode`]), the
/// init reads it ([`decode`]): one definition of the format for both.
pub mod spec_area {
    use super::{SPEC_AREA_BYTES, SPEC_MAGIC};

    const HEADER: usize = 8 + 4;

    /// The whole area for `json`, or `None` if it is too large.
    pub fn encode(json: &[u8]) -> Option<Vec<u8>> {
        if HEADER + json.len() > SPEC_AREA_BYTES as usize {
            return None;
        }
        let mut area = vec![0u8; SPEC_AREA_BYTES as usize];
        area[..8].copy_from_slice(SPEC_MAGIC);
        area[8..HEADER].copy_from_slice(&(json.len() as u32).to_le_bytes());
        area[HEADER..HEADER + json.len()].copy_from_slice(json);
        Some(area)
    }

    /// The JSON in an area, or why there is none.
    pub fn decode(area: &[u8]) -> Result<&[u8], &'static str> {
        if area.get(..8) != Some(&SPEC_MAGIC[..]) {
            return Err("no spec (magic missing)");
        }
        let len = u32::from_le_bytes(area[8..HEADER].try_into().expect("4 bytes")) as usize;
        area.get(HEADER..HEADER + len)
            .ok_or("spec length out of range")
    }
}

/// Optional kernel command-line variable (the kernel hands it to the init as environment)
/// naming the block device whose spec area the init reads; `/dev/vda` without it.
pub const SPEC_DEVICE_VAR: &str = "vcompare_spec";

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
