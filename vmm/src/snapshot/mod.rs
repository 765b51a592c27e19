//! Snapshot and restore of a whole microVM, so a VM can start from a guest that has already
//! booted instead of booting its kernel again.
//!
//! **When:** the guest init reports [`Phase::Ready`](vcompare_spec::guest::Phase::Ready)
//! after it has mounted /proc, /sys and /dev and before it reads the run's spec; up to there
//! every run of one (image, kernel, RAM, vCPUs, devices, VMM build) is alike. The init then
//! waits for the VMM's go message on the console, so the snapshot never races it. A VM whose
//! job asks for a snapshot pauses its vCPUs there ([`crate::vcpu::PauseGate`]), saves, and
//! goes on with its own run.
//!
//! **What** (in this directory, written to a temp directory and renamed, so a crash never
//! leaves half a snapshot): `state.json` ([`SnapshotState`]: every vCPU's KVM state
//! ([`vcpu_state`]), the VM's ([`vm_state`]), every device's ([`device_state`]), checksums),
//! `memory` (guest RAM, sparse, [`memory_file`]) and `disk.ext4` (the root disk as it was at
//! that instant: the guest's page cache in `memory` matches it, not the image's disk).
//!
//! **Restore:** [`crate::builder`] maps `memory` copy-on-write, creates the VM and its vCPUs,
//! restores the KVM state in Firecracker's order, recreates the devices for this run (its
//! own disk copy, TAP, shares, agent socket) with the saved transport state, and resumes;
//! the VMM then sends the go message, and the init reads this run's spec and goes on as
//! after a cold boot (wall clock from the go message, fresh entropy, hostname, MAC and
//! address from the spec; shares are mounted only now, so no 9p state spans the snapshot).

pub mod device_state;
pub mod memory_file;
pub mod vcpu_state;
pub mod vm_state;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::backend_detect::KvmBackend;
use crate::devices::Devices;
use crate::memory::GuestMem;
use device_state::DevicesSnapshot;
use vcpu_state::VcpuState;
use vm_state::VmState;

/// Version of the snapshot layout; a snapshot of another version is not restored.
pub const FORMAT: u32 = 1;
/// The state file in a snapshot directory.
pub const STATE_FILE: &str = "state.json";
/// The guest RAM file in a snapshot directory.
pub const MEMORY_FILE: &str = "memory";
/// The root disk as of the snapshot, in a snapshot directory.
pub const DISK_FILE: &str = "disk.ext4";

/// Why a snapshot could not be taken, checked or restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A KVM state ioctl failed.
    #[error("snapshot: {what} failed: {source}")]
    Kvm {
        /// The ioctl.
        what: &'static str,
        /// Its error.
        source: kvm_ioctls::Error,
    },
    /// A file of the snapshot could not be read or written.
    #[error("snapshot: {what}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file of the snapshot is damaged (checksum, size or format).
    #[error("the VM snapshot is damaged: {0}")]
    Corrupt(String),
    /// The snapshot does not fit the VM being built.
    #[error("the VM snapshot does not fit this VM: {0}")]
    Mismatch(String),
    /// KVM did not take the state back exactly.
    #[error("this host cannot restore the VM exactly: {0}")]
    Inexact(String),
    /// Mapping the memory file failed.
    #[error("snapshot: cannot map guest memory: {0}")]
    Map(String),
    /// More MSRs than a KVM request holds.
    #[error("snapshot: too many MSRs for one KVM request")]
    TooManyMsrs,
    /// Not every vCPU paused in time.
    #[error("snapshot: the vCPUs did not pause within {0:?}")]
    PauseTimeout(Duration),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SnapshotError {
    move |source| SnapshotError::Io { what, source }
}

/// A file's length and checksum (see [`memory_file::checksum`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Length in bytes.
    pub len: u64,
    /// CRC-32 of its non-zero pages with their indices.
    pub crc32: u32,
}

impl FileSum {
    fn of(path: &Path) -> Result<FileSum, SnapshotError> {
        let (len, crc32) = memory_file::checksum(path)?;
        Ok(FileSum { len, crc32 })
    }
}

/// The snapshot's state file.
#[derive(Serialize, Deserialize)]
pub struct SnapshotState {
    /// [`FORMAT`].
    pub format: u32,
    /// What the snapshot was taken for (the caller's key inputs: image, kernel, …), kept
    /// for listing and removal.
    pub label: serde_json::Value,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// KVM flavour of the host it was taken on.
    pub backend: KvmBackend,
    /// Every vCPU, in index order.
    pub vcpus: Vec<VcpuState>,
    /// The VM's KVM state.
    pub vm: VmState,
    /// The devices.
    pub devices: DevicesSnapshot,
    /// [`MEMORY_FILE`]'s length and checksum.
    pub memory: FileSum,
    /// [`DISK_FILE`]'s length and checksum, if the VM had a root disk.
    pub disk: Option<FileSum>,
    /// How long the VM was paused to take it, ms.
    pub pause_ms: f64,
}

/// What the VMM needs to take a snapshot besides the VM.
pub struct TakeRequest<'a> {
    /// The final directory (written as a temp sibling, then renamed).
    pub dir: &'a Path,
    /// [`SnapshotState::label`].
    pub label: serde_json::Value,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// The host's KVM flavour.
    pub backend: KvmBackend,
    /// The VM's root disk, copied as it is now.
    pub disk: Option<&'a Path>,
}

/// A VM with every vCPU parked: what a snapshot is taken of.
pub struct PausedVm<'a> {
    /// The KVM VM.
    pub vm: &'a kvm_ioctls::VmFd,
    /// Guest RAM.
    pub mem: &'a GuestMem,
    /// The devices.
    pub devices: &'a Devices,
    /// Every vCPU's state, saved by its own thread when it parked, in index order.
    pub vcpus: Vec<VcpuState>,
    /// When the pause began.
    pub paused_at: Instant,
}

/// Writes a snapshot of a paused VM. Returns the snapshot directory; on an error nothing is
/// left behind.
pub fn take(req: &TakeRequest<'_>, paused: PausedVm<'_>) -> Result<PathBuf, SnapshotError> {
    let tmp = req
        .dir
        .with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io("creating the snapshot directory"))?;
    let r = write_into(&tmp, req, paused);
    if r.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        return r.map(|_| req.dir.to_path_buf());
    }
    match std::fs::rename(&tmp, req.dir) {
        Ok(()) => Ok(req.dir.to_path_buf()),
        Err(e) => {
            // Another run of the same VM kind finished its snapshot first: keep that one.
            let _ = std::fs::remove_dir_all(&tmp);
            if req.dir.join(STATE_FILE).is_file() {
                Ok(req.dir.to_path_buf())
            } else {
                Err(SnapshotError::Io {
                    what: "publishing the snapshot",
                    source: e,
                })
            }
        }
    }
}

fn write_into(
    tmp: &Path,
    req: &TakeRequest<'_>,
    paused: PausedVm<'_>,
) -> Result<(), SnapshotError> {
    let PausedVm {
        vm,
        mem,
        devices,
        vcpus,
        paused_at,
    } = paused;
    let vm_state = vm_state::save(vm)?;
    let devices = DevicesSnapshot {
        serial: devices.serial.lock().unwrap().snapshot(),
        virtio: devices
            .virtio
            .iter()
            .map(|t| t.lock().unwrap().snapshot())
            .collect(),
    };
    let (len, crc32) = memory_file::write(mem, &tmp.join(MEMORY_FILE))?;
    let disk = match req.disk {
        Some(d) => {
            let copy = tmp.join(DISK_FILE);
            crate::disk::clone_or_copy(d, &copy).map_err(|e| SnapshotError::Io {
                what: "copying the root disk",
                source: std::io::Error::other(e.to_string()),
            })?;
            Some(FileSum::of(&copy)?)
        }
        None => None,
    };
    let state = SnapshotState {
        format: FORMAT,
        label: req.label.clone(),
        memory_mib: req.memory_mib,
        backend: req.backend,
        vcpus,
        vm: vm_state,
        devices,
        memory: FileSum { len, crc32 },
        disk,
        pause_ms: paused_at.elapsed().as_secs_f64() * 1e3,
    };
    let path = tmp.join(STATE_FILE);
    let bytes = serde_json::to_vec(&state).map_err(|e| SnapshotError::Io {
        what: "encoding the state file",
        source: std::io::Error::other(e),
    })?;
    let f = std::fs::File::create(&path).map_err(io("writing the state file"))?;
    std::io::Write::write_all(&mut &f, &bytes).map_err(io("writing the state file"))?;
    f.sync_all().map_err(io("syncing the state file"))
}

/// Reads a snapshot's state file (no file checksums: see [`verify`]).
pub fn load(dir: &Path) -> Result<SnapshotState, SnapshotError> {
    let bytes = std::fs::read(dir.join(STATE_FILE)).map_err(io("reading the state file"))?;
    let state: SnapshotState = serde_json::from_slice(&bytes)
        .map_err(|e| SnapshotError::Corrupt(format!("{STATE_FILE}: {e}")))?;
    if state.format != FORMAT {
        return Err(SnapshotError::Mismatch(format!(
            "format {} (this build reads {FORMAT})",
            state.format
        )));
    }
    Ok(state)
}

/// Reads a snapshot and checks its memory and disk files against the checksums in its state
/// file: a truncated or altered snapshot is never restored.
pub fn verify(dir: &Path) -> Result<SnapshotState, SnapshotError> {
    let state = load(dir)?;
    let memory = FileSum::of(&dir.join(MEMORY_FILE))?;
    if memory != state.memory {
        return Err(SnapshotError::Corrupt(format!(
            "{MEMORY_FILE} has {} bytes and checksum {:08x}, the state file says {} and {:08x}",
            memory.len, memory.crc32, state.memory.len, state.memory.crc32
        )));
    }
    if let Some(want) = state.disk {
        let disk = FileSum::of(&dir.join(DISK_FILE))?;
        if disk != want {
            return Err(SnapshotError::Corrupt(format!(
                "{DISK_FILE} has {} bytes and checksum {:08x}, the state file says {} and {:08x}",
                disk.len, disk.crc32, want.len, want.crc32
            )));
        }
    }
    Ok(state)
}
