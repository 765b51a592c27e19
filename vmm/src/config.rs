//! What one VM run is given: the serialisable [`VmJob`] (what the CLI sends to
//! `vcompare-vmm`), wrapped by [`VmConfig`] with what cannot cross a process boundary (the
//! console, callbacks, the launch instant) and the diagnostics switches ([`DebugOptions`]),
//! which are read from the environment here and only here, by the entry points.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::devices::boot_timer::InfoCallback;

/// Environment variable naming the file guest RIP samples go to (see [`crate::guest_profile`]).
pub const PROFILE_ENV: &str = "VCOMPARE_VMM_PROFILE";
/// Environment variable: skip the PVM adaptations, to show what a stock setup does here.
pub const PLAIN_ENV: &str = "VCOMPARE_VMM_PLAIN";

/// What to boot (written by the CLI, read by `vcompare-vmm`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmJob {
    /// ELF vmlinux with a PVH note.
    pub kernel: PathBuf,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u8,
    /// Fault in guest RAM up front.
    pub prealloc: bool,
    /// The initramfs: an archive file the VMM maps and bytes after it; empty: none.
    pub initramfs: crate::initramfs::Initramfs,
    /// Root disk, served writable as /dev/vda (the instance's own copy).
    pub root_disk: Option<PathBuf>,
    /// Shared host directories (virtio-9p), one device each after the root disk.
    #[serde(default)]
    pub shares: Vec<crate::devices::virtio::p9::Share>,
    /// `--network`: one virtio-net device on an already-open TAP (see [`NetJob`]); `None` = no NIC.
    #[serde(default)]
    pub net: Option<NetJob>,
    /// The guest-agent channel: one virtio-vsock device served in this process, its host
    /// side a Unix socket (see [`VsockJob`]); `None` = no vsock device.
    #[serde(default)]
    pub vsock: Option<VsockJob>,
    /// Snapshot use: take one when the guest is ready, or start from one (see
    /// [`crate::snapshot`]); `None` = a plain cold boot.
    #[serde(default)]
    pub snapshot: Option<SnapshotJob>,
    /// Extra kernel arguments (after ours).
    pub extra_cmdline: Vec<String>,
    /// Forward the kernel's boot log instead of only the entrypoint's output.
    pub boot_log: bool,
    /// Watchdog, seconds.
    pub timeout_secs: Option<u64>,
    /// Where to write guest RAM's host ranges (JSON array), for the overhead measurement.
    pub memory_ranges_path: Option<PathBuf>,
    /// Where to write the guest's self-description (JSON).
    pub guest_info_path: Option<PathBuf>,
    /// Where to write the [`crate::process::VmResult`].
    pub result_path: PathBuf,
}

/// The VM's network interface. The CLI opens the TAP (`IFF_TAP|IFF_NO_PI|IFF_VNET_HDR`) and
/// attaches it to the network's bridge, then hands the fd down across `exec`: the VMM needs
/// no `CAP_NET_ADMIN`, and the TAP vanishes with the VMM's last fd (nothing to leak on a crash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetJob {
    /// File descriptor number of the open TAP in the VMM process.
    pub tap_fd: i32,
    /// The guest NIC's MAC address (virtio-net config space, `VIRTIO_NET_F_MAC`).
    pub mac: [u8; 6],
}

/// The VM's virtio-vsock device. Its host side follows Firecracker's "hybrid vsock": the
/// VMM listens on `uds_path`; a host process connects, writes `CONNECT <port>\n` and, once
/// a guest listener accepted, reads `OK <host port>\n` and then talks to the guest. A guest
/// connection to host port P reaches a listener on `<uds_path>_P`. There is no
/// `/dev/vhost-vsock` on the hosts we develop on, so the device lives in user space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockJob {
    /// The guest's context id (3 or more; 0–2 are reserved).
    pub guest_cid: u64,
    /// The Unix socket the VMM listens on (created by the VMM, removed when it ends).
    pub uds_path: PathBuf,
}

/// What a run does with a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotJob {
    /// Boot cold and, when the guest init is ready, save the VM into `dir` (written as a
    /// temp sibling and renamed), then go on with this run. `label` is stored with it.
    Take {
        /// The snapshot directory to create.
        dir: PathBuf,
        /// What the snapshot is for (the caller's key inputs), kept in its state file.
        label: serde_json::Value,
    },
    /// Start from the snapshot in `dir` (checked by the caller) instead of booting; the
    /// job's root disk must be a copy of that snapshot's disk.
    Restore {
        /// The snapshot directory.
        dir: PathBuf,
    },
}

/// Diagnostics switches, off by default; never part of the job on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DebugOptions {
    /// Emit per-step setup timings as `tracing` debug events (see [`crate::trace`]); set by
    /// [`DebugOptions::from_env`] when the installed subscriber enables them.
    pub trace: bool,
    /// Sample guest RIPs into this file ([`PROFILE_ENV`]).
    pub profile: Option<PathBuf>,
    /// Treat the host as hardware KVM even on PVM ([`PLAIN_ENV`]).
    pub plain_kvm: bool,
}

impl DebugOptions {
    /// The switches from the environment: the one place the VMM's `VCOMPARE_VMM_*`
    /// variables are read (called by `vcompare-vmm`'s `main` and the CLI's in-process VMM),
    /// plus whether the `tracing` subscriber wants the setup timings (`RUST_LOG`): call it
    /// after the subscriber is installed.
    pub fn from_env() -> Self {
        DebugOptions {
            trace: crate::trace::wanted(),
            profile: std::env::var_os(PROFILE_ENV).map(PathBuf::from),
            plain_kvm: std::env::var_os(PLAIN_ENV).is_some(),
        }
    }
}

/// Receives guest RAM's (host address, length) ranges.
pub type MemoryCallback = Box<dyn FnOnce(&[(u64, u64)]) + Send>;

/// Callbacks into the caller during a run.
#[derive(Default)]
pub struct VmHooks {
    /// Called (on a vCPU thread) with the guest init's self-description, a JSON object.
    pub on_guest_info: Option<InfoCallback>,
    /// Called once guest RAM is mapped, with its (host address, length) ranges: lets the
    /// caller tell guest RAM from VMM memory in /proc/PID/smaps (the overhead measurement).
    pub on_memory: Option<MemoryCallback>,
}

impl VmHooks {
    /// Hooks that write to the job's `guest_info_path` and `memory_ranges_path`, if set.
    pub fn writing_files(job: &VmJob) -> Self {
        VmHooks {
            on_guest_info: job.guest_info_path.clone().map(|p| -> InfoCallback {
                Box::new(move |i: &str| {
                    let _ = std::fs::write(&p, i);
                })
            }),
            on_memory: job.memory_ranges_path.clone().map(|p| -> MemoryCallback {
                Box::new(move |r: &[(u64, u64)]| {
                    let _ = std::fs::write(&p, serde_json::to_vec(r).unwrap_or_default());
                })
            }),
        }
    }
}

/// Everything needed to start one VM: the job, plus what lives only in this process.
pub struct VmConfig {
    /// What to boot.
    pub job: VmJob,
    /// Diagnostics switches.
    pub debug: DebugOptions,
    /// Where the guest's console output goes (the instance's stdout).
    pub console: Box<dyn Write + Send>,
    /// Callbacks.
    pub hooks: VmHooks,
    /// Take over SIGTERM/SIGINT while running (first: ask the guest to stop; second: stop it).
    pub handle_signals: bool,
    /// The instant the VMM setup is measured from (process launch, or now).
    pub launched: Instant,
}

impl VmConfig {
    /// The product's configuration for `job`: console on stdout, the job's files written,
    /// signals handled, diagnostics off.
    pub fn new(job: VmJob, launched: Instant) -> Self {
        VmConfig {
            hooks: VmHooks::writing_files(&job),
            job,
            debug: DebugOptions::default(),
            console: Box::new(std::io::stdout()),
            handle_signals: true,
            launched,
        }
    }
}
