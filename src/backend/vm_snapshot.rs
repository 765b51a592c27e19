//! The VM snapshot cache: which snapshot a VM run starts from, or takes (see
//! `vcompare_vmm::snapshot` for what a snapshot holds and when it is taken).
//!
//! One snapshot serves every run of the same *VM kind*: image (its cached disk, which names
//! the image digest and the init build), guest kernel, guest RAM, vCPUs, device shape
//! (shares, NIC), kernel arguments and VMM build. The kind's description is hashed into the
//! directory name, `<data root>/snapshots/<image hex>-<kind hash>`, so a change to any part
//! simply selects another snapshot; `image rm` removes an image's snapshots with its disks,
//! and taking a new one removes the image's snapshots of an older kernel or VMM build.
//!
//! A snapshot is checked (its files' checksums) before every restore; a damaged one is
//! removed and rebuilt by a cold boot, never restored. When a restore fails on this host,
//! the run boots cold, and a marker keeps later runs of that kind from trying again.

use std::path::{Path, PathBuf};

use sha2::Digest as _;
use vcompare_vmm::snapshot;

use super::RunSpec;

/// Directory of the snapshot cache under the data root.
const SNAPSHOTS: &str = "snapshots";
/// Suffix of the marker left when restoring a kind failed on this host.
const NO_RESTORE: &str = "no-restore";

/// What a VM run does about snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Start from the (checked) snapshot in this directory.
    Restore(PathBuf),
    /// Boot cold and take a snapshot into this directory when the guest is ready.
    Take {
        /// The snapshot directory to create.
        dir: PathBuf,
        /// The VM kind, stored in the snapshot.
        label: serde_json::Value,
    },
    /// Boot cold, take nothing; the reason, for `--debug`.
    ColdOnly(&'static str),
}

impl Plan {
    /// The plan as `inspect` shows it (`host.snapshot`): `plan` is `restore`, `take` or
    /// `cold`; the run adds `restored` and `taken_pause_ms` when it ends.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            Plan::Restore(dir) => serde_json::json!({ "plan": "restore", "dir": dir }),
            Plan::Take { dir, .. } => serde_json::json!({ "plan": "take", "dir": dir }),
            Plan::ColdOnly(why) => serde_json::json!({ "plan": "cold", "reason": why }),
        }
    }
}

/// The parts of a VM run that the guest saw before the snapshot point.
pub struct VmKind<'a> {
    /// The image's cached root disk (its name holds the digest and the init build).
    pub image_disk: &'a Path,
    /// The guest kernel.
    pub kernel: &'a Path,
    /// The VMM executable.
    pub vmm: &'a Path,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u8,
    /// Read-only flag of each share, in order.
    pub shares: Vec<bool>,
    /// A NIC is attached.
    pub nic: bool,
    /// Kernel arguments after ours.
    pub extra_cmdline: &'a [String],
    /// The whole boot log is forwarded.
    pub boot_log: bool,
}

/// A file's identity for the kind: path, size and modification time (a rebuilt kernel or
/// VMM has another), without reading it.
fn file_identity(p: &Path) -> serde_json::Value {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok();
    serde_json::json!({
        "path": p,
        "size": m.as_ref().map(|m| m.size()),
        "mtime_ns": m.as_ref().map(|m| m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128).map(|n| n.to_string()),
    })
}

impl VmKind<'_> {
    /// The kind as stored in the snapshot (and hashed into its directory name).
    pub fn label(&self, image_digest: &str) -> serde_json::Value {
        serde_json::json!({
            "image_digest": image_digest,
            "image_disk": file_identity(self.image_disk),
            "kernel": file_identity(self.kernel),
            "vmm": file_identity(self.vmm),
            "memory_mib": self.memory_mib,
            "cpus": self.cpus,
            "shares_read_only": self.shares,
            "nic": self.nic,
            "extra_cmdline": self.extra_cmdline,
            "boot_log": self.boot_log,
            "backend": vcompare_vmm::KvmBackend::detect(),
        })
    }
}

/// The snapshot directory of a kind.
fn dir_for(data_root: &Path, image_digest: &str, label: &serde_json::Value) -> PathBuf {
    let hash = sha2::Sha256::digest(label.to_string().as_bytes());
    let hex: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
    data_root
        .join(SNAPSHOTS)
        .join(format!("{}-{hex}", image_hex(image_digest)))
}

fn image_hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

fn marker(dir: &Path) -> PathBuf {
    dir.with_extension(NO_RESTORE)
}

/// Decides what the run does: restore a checked snapshot of its kind, or boot cold and take
/// one. `fresh_disk` is false when the instance already has a disk (`start` after `stop`):
/// that disk has moved on from any snapshot's, so the VM boots cold and takes nothing.
pub fn plan(spec: &RunSpec, kind: &VmKind<'_>, fresh_disk: bool) -> Plan {
    if spec.no_snapshot {
        return Plan::ColdOnly("--no-snapshot");
    }
    if spec.prealloc {
        return Plan::ColdOnly("--prealloc (guest RAM of its own, not a shared snapshot's)");
    }
    if !fresh_disk {
        return Plan::ColdOnly("the instance's disk has moved on from the snapshot's (start)");
    }
    let label = kind.label(&spec.image_digest);
    let dir = dir_for(&spec.data_root, &spec.image_digest, &label);
    if marker(&dir).exists() {
        return Plan::ColdOnly("restoring this VM kind failed on this host before");
    }
    if dir.join(snapshot::STATE_FILE).is_file() {
        match snapshot::verify(&dir) {
            Ok(_) => return Plan::Restore(dir),
            Err(e) => {
                eprintln!("vcompare: {e}; removing it and booting cold to take a new snapshot");
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
    remove_stale(&spec.data_root, &spec.image_digest, &label);
    Plan::Take { dir, label }
}

/// Removes the image's snapshots taken with another kernel or VMM build (they can never be
/// selected again), keeping those of other RAM sizes, vCPU counts or device shapes.
fn remove_stale(data_root: &Path, image_digest: &str, label: &serde_json::Value) {
    let prefix = format!("{}-", image_hex(image_digest));
    let Ok(rd) = std::fs::read_dir(data_root.join(SNAPSHOTS)) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) || name.contains(".tmp-") {
            continue;
        }
        let stale = match snapshot::load(&e.path()) {
            Ok(s) => s.label["kernel"] != label["kernel"] || s.label["vmm"] != label["vmm"],
            Err(_) => !name.ends_with(NO_RESTORE),
        };
        if stale {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A restore of `dir` failed on this host: remove the snapshot and leave the marker that
/// makes later runs of the kind boot cold (with a one-line notice each time).
pub fn restore_failed(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::write(
        marker(dir),
        b"restoring a snapshot of this VM kind failed here\n",
    );
}

/// The root disk a run starts from: the snapshot's disk for a restore (the guest's page
/// cache in the snapshot matches it), the image's disk otherwise.
pub fn source_disk(plan: &Plan, image_disk: &Path) -> PathBuf {
    match plan {
        Plan::Restore(dir) => dir.join(snapshot::DISK_FILE),
        _ => image_disk.to_path_buf(),
    }
}

/// The VMM job's snapshot part.
pub fn job(plan: &Plan) -> Option<vcompare_vmm::SnapshotJob> {
    match plan {
        Plan::Restore(dir) => Some(vcompare_vmm::SnapshotJob::Restore { dir: dir.clone() }),
        Plan::Take { dir, label } => Some(vcompare_vmm::SnapshotJob::Take {
            dir: dir.clone(),
            label: label.clone(),
        }),
        Plan::ColdOnly(_) => None,
    }
}
