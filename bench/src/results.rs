//! The results.json schema: one file per benchmark run, every raw sample kept, with the
//! environment it was measured in, so a report can be re-rendered (and compared) anywhere.
//! `schema_version` changes whenever a field changes meaning.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{io_at, BenchError, Result};

/// Bumped when a field is renamed or changes meaning; readers reject other versions.
pub const SCHEMA_VERSION: u32 = 1;

/// One benchmark run: environment, configuration and all raw measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA_VERSION`] at write time.
    pub schema_version: u32,
    /// Where and when this was measured.
    pub environment: Environment,
    /// What was asked for.
    pub config: RunConfig,
    /// Startup series, one per subject (host, container, vm, crun, runc, qemu…).
    #[serde(default)]
    pub startup: Vec<StartupSeries>,
    /// CPU/syscall/page-fault/IO workloads, one series per (workload, subject).
    #[serde(default)]
    pub cpu: Vec<CpuSeries>,
    /// Memory figures, one series per (subject, metric).
    #[serde(default)]
    pub memory: Vec<MemorySeries>,
    /// Density: host memory as idle instances are added, one series per subject.
    #[serde(default)]
    pub density: Vec<DensitySeries>,
    /// Host disk bytes per extra instance, one series per subject.
    #[serde(default)]
    pub disk: Vec<DiskSeries>,
    /// Shared-directory I/O: throughput and metadata cost, one series per place.
    #[serde(default)]
    pub share: Vec<ShareSeries>,
    /// TCP request/response latency and bulk throughput, one series per network path
    /// (`--suite net`). Absent from older files, hence the default.
    #[serde(default)]
    pub net: Vec<NetSeries>,
    /// `vcompare exec` into a running instance: round-trip time and stdout throughput, one
    /// series per mode (`--suite exec`). Absent from older files, hence the default.
    #[serde(default)]
    pub exec: Vec<ExecSeries>,
    /// VM snapshot/restore vs cold boot (`--suite snapshot`): ours and Firecracker's.
    /// Absent from older files, hence the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotResults>,
    /// What was not measured, and why (peer not installed, VM mode failing…).
    #[serde(default)]
    pub skipped: Vec<Skipped>,
    /// Free-form remarks recorded during the run (e.g. noisy neighbours).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The machine and software the numbers come from (recorded in every report: VM figures mean
/// little without the KVM backend next to them).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Environment {
    /// UTC start of the run, RFC 3339.
    pub date: String,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// Online CPUs.
    pub cpus: usize,
    /// MemTotal in bytes.
    pub memory_total_bytes: u64,
    /// `uname -r` of the host.
    pub host_kernel: String,
    /// Cgroup setup as `vcompare doctor` reports it (v1 / v2 / hybrid + controllers).
    pub cgroup: String,
    /// How /dev/kvm is served: VM numbers are only comparable across equal backends.
    pub kvm_backend: String,
    /// `git describe`-style revision of the vcompare tree that ran the bench.
    pub vcompare_revision: String,
    /// Peer name → version line (only peers found on PATH).
    #[serde(default)]
    pub peers: BTreeMap<String, String>,
    /// Human remarks about the machine (shared, nested, …).
    #[serde(default)]
    pub machine_notes: Vec<String>,
}

/// The benchmark's parameters, as given on the command line.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RunConfig {
    /// Modes measured (host, container, vm).
    pub modes: Vec<String>,
    /// Peers requested (crun, runc, qemu, firecracker).
    pub peers: Vec<String>,
    /// Suites requested (startup, cpu, memory, density, disk).
    pub suites: Vec<String>,
    /// Runs per measurement for host, containers and container peers.
    pub runs: usize,
    /// Runs per measurement for VMs and VM peers (each boot is slow on a nested host).
    pub vm_runs: usize,
    /// Image reference measured.
    pub image: String,
    /// Wall-clock duration of the whole run, seconds.
    #[serde(default)]
    pub duration_secs: f64,
}

/// One named span of a startup, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSpan {
    /// The phase that *ended* this span (e.g. "cgroup", "namespaces", "exec"), or
    /// "workload+teardown" for the rest up to the process exit.
    pub name: String,
    /// Duration of the span in ns.
    pub duration_ns: u64,
}

/// One startup measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartupRun {
    /// Wall time from spawning the command to observing its exit, ns.
    pub wall_ns: u64,
    /// Phase breakdown summing to `wall_ns` (empty for subjects without marks).
    #[serde(default)]
    pub phases: Vec<PhaseSpan>,
    /// Named instants (ns since spawn) the subject exposes, e.g. a peer VM's "init" line.
    #[serde(default)]
    pub marks: BTreeMap<String, u64>,
    /// Removal of the finished instance, timed separately (spawn of `vcompare rm -f NAME` →
    /// its exit) for subjects whose timed command leaves the instance behind (vcompare's
    /// container and VM); `None` where the timed command removes it itself (crun/runc `run`
    /// delete the container before exiting) or there is nothing to remove (host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_ns: Option<u64>,
}

impl StartupRun {
    /// Run plus removal: the like-for-like figure against crun/runc, whose `run` includes the
    /// delete (crun 1.8 has no `--keep` to leave it out).
    pub fn with_removal_ns(&self) -> u64 {
        self.wall_ns + self.remove_ns.unwrap_or(0)
    }
}

/// All startup runs of one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartupSeries {
    /// host, container, vm, crun, runc, qemu, firecracker.
    pub subject: String,
    /// Start and end event of the number, stated next to it in the report.
    pub definition: String,
    /// Raw runs in measurement order.
    pub runs: Vec<StartupRun>,
}

impl StartupSeries {
    /// Median duration of each phase span, in the order of the first run that has phase
    /// marks; `None` for a span no run measured. The chart and the report's table both read
    /// it, so they cannot disagree.
    pub fn phase_medians_ns(&self) -> Vec<(String, Option<f64>)> {
        let Some(first) = self.runs.iter().find(|x| !x.phases.is_empty()) else {
            return Vec::new();
        };
        first
            .phases
            .iter()
            .map(|p| {
                let v: Vec<f64> = self
                    .runs
                    .iter()
                    .filter_map(|x| x.phases.iter().find(|q| q.name == p.name))
                    .map(|q| q.duration_ns as f64)
                    .collect();
                (p.name.clone(), crate::stats::median(&v))
            })
            .collect()
    }
}

/// One workload in one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuSeries {
    /// cpu, syscalls, pagefaults, io.
    pub workload: String,
    /// host, container, vm.
    pub subject: String,
    /// The probe command line used.
    pub args: Vec<String>,
    /// Unit of `samples` (e.g. "ns/iteration").
    pub unit: String,
    /// Per-operation cost measured inside by the probe, one per run.
    pub samples: Vec<f64>,
    /// The probe's JSON lines, untouched.
    #[serde(default)]
    pub raw: Vec<serde_json::Value>,
}

/// One memory metric of one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemorySeries {
    /// host, container, vm, qemu.
    pub subject: String,
    /// vmm_overhead_rss, guest_touched, cgroup_usage, pss, rss, monitor_rss…
    pub metric: String,
    /// How it was measured (files read, what was subtracted).
    pub definition: String,
    /// Bytes, one per sample.
    pub samples_bytes: Vec<u64>,
}

/// One step of a density series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DensityPoint {
    /// Idle instances running.
    pub instances: u32,
    /// MemAvailable before − after starting them, bytes (noisy on a shared machine).
    pub available_drop_bytes: i64,
    /// Sum of PSS of the instances' host processes (less noisy).
    pub pss_sum_bytes: u64,
}

/// Density of one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DensitySeries {
    /// container, vm.
    pub subject: String,
    /// The command each idle instance runs.
    pub workload: String,
    /// One point per instance count.
    pub points: Vec<DensityPoint>,
}

/// Host disk use per extra instance of one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSeries {
    /// container, vm.
    pub subject: String,
    /// What was summed (the instance directory: upper dir or disk copy, logs, record).
    pub definition: String,
    /// Allocated bytes (st_blocks × 512) per instance.
    pub allocated_bytes: Vec<u64>,
    /// Apparent bytes (st_size) per instance; a sparse disk copy shows the difference.
    pub apparent_bytes: Vec<u64>,
}

/// Sequential I/O and small-file metadata cost in one place a workload can write to (the
/// host directory, a container bind mount or volume, a VM's 9p share or its root disk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareSeries {
    /// host, container bind, container volume, vm 9p, vm root disk.
    pub place: String,
    /// host, container, vm: who ran the probe (VM rows carry the backend caveat).
    pub subject: String,
    /// How the path reaches the workload.
    pub definition: String,
    /// File system type of the path as the workload's /proc/mounts shows it.
    pub fstype: String,
    /// The probe command line used.
    pub args: Vec<String>,
    /// MiB written then read per run.
    pub mib: u64,
    /// Small files created, stat'ed and deleted per run.
    pub files: u64,
    /// Write + fsync throughput, MiB/s, one per run.
    pub write_mib_s: Vec<f64>,
    /// Read-back throughput, MiB/s, one per run (O_DIRECT unless the raw line says buffered).
    pub read_mib_s: Vec<f64>,
    /// create + stat + delete of all `files`, ns, one per run.
    pub metadata_ns: Vec<u64>,
    /// The probe's JSON lines, untouched.
    #[serde(default)]
    pub raw: Vec<serde_json::Value>,
}

/// TCP latency and throughput over one network path (host loopback, a published port into
/// a container or a VM, a bridge network between instances), every run of `probe
/// net-client` kept as the probe reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetSeries {
    /// loopback, container -p, vm -p, container-container, container-vm.
    pub path: String,
    /// Who ran `probe net-client`: host or container.
    pub client: String,
    /// Who ran `probe net-serve`: host, container or vm (VM rows carry the backend caveat).
    pub server: String,
    /// How the bytes travel, stated next to the figures.
    pub definition: String,
    /// The client command line after `probe` (the target as it was for the first run).
    pub args: Vec<String>,
    /// One report per measured run (the warm-up round is not kept).
    pub runs: Vec<probe::net::ClientReport>,
}

/// `vcompare exec` into one detached instance of the bench image (container or VM): the
/// round trip of a trivial command and the throughput of a large fixed output through the
/// CLI's stdout, each timed from outside like every CLI spawn (see `suites::exec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecSeries {
    /// container, vm (VM rows carry the backend caveat).
    pub subject: String,
    /// The `vcompare` arguments that started the instance (`run --network none -d …`, the
    /// generated name left out).
    pub instance: Vec<String>,
    /// The timed round-trip command after `vcompare` (`exec ID /bin/probe true`).
    pub round_trip_args: Vec<String>,
    /// What one round-trip sample spans.
    pub round_trip_definition: String,
    /// Spawn of `vcompare exec` → its exit, ns, one per measured call (warm-up not kept).
    pub round_trip_ns: Vec<u64>,
    /// The timed output command after `vcompare` (`exec ID /bin/dd if=/dev/zero …`).
    pub stream_args: Vec<String>,
    /// What one output sample spans and counts.
    pub stream_definition: String,
    /// Bytes the command writes per run (every run must deliver exactly these).
    pub stream_bytes: u64,
    /// One per measured run (warm-up not kept).
    pub stream: Vec<ExecStreamRun>,
}

/// One run of the output command through `vcompare exec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecStreamRun {
    /// Bytes read from `vcompare exec`'s stdout pipe up to EOF.
    pub bytes: u64,
    /// Spawn of `vcompare exec` → the later of its exit and EOF on its stdout, ns.
    pub wall_ns: u64,
    /// `bytes` ÷ `wall_ns`, in bytes per second.
    pub bytes_per_s: f64,
}

impl ExecStreamRun {
    /// A run that read `bytes` in `wall_ns`.
    pub fn new(bytes: u64, wall_ns: u64) -> ExecStreamRun {
        ExecStreamRun {
            bytes,
            wall_ns,
            bytes_per_s: bytes as f64 * 1e9 / wall_ns.max(1) as f64,
        }
    }
}

/// The snapshot suite's figures: restored vs cold-booted VMs (ours and Firecracker's), the
/// snapshot's size and cost, and density from one snapshot vs cold boots (see
/// `suites::snapshot`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SnapshotResults {
    /// One series per subject: `vm restored`, `vm cold`, `firecracker restored`,
    /// `firecracker cold`.
    pub series: Vec<SnapshotSeries>,
    /// Our snapshot: the memory file's allocated bytes (st_blocks × 512) — what the page
    /// cache shares between restored VMs at most.
    pub memory_allocated_bytes: Option<u64>,
    /// Our snapshot: the memory file's logical size (st_size, = guest RAM).
    pub memory_logical_bytes: Option<u64>,
    /// Our snapshot: allocated bytes of the whole snapshot directory (memory, state, disk).
    pub dir_allocated_bytes: Option<u64>,
    /// Our snapshot: how long taking it paused the VM (`host.snapshot.taken_pause_ms` of the
    /// run that took it), ms.
    pub taken_pause_ms: Option<f64>,
    /// Firecracker's snapshot of the same guest at the same point, if measured.
    #[serde(default)]
    pub firecracker: Option<PeerSnapshot>,
    /// Density: N VMs restored from one snapshot vs N cold-booted (`vm restored`, `vm cold`).
    #[serde(default)]
    pub density: Vec<DensitySeries>,
}

/// One subject of the snapshot suite: named figures per measured run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSeries {
    /// vm restored, vm cold, firecracker restored, firecracker cold.
    pub subject: String,
    /// What each figure spans for this subject.
    pub definition: String,
    /// One map per measured run: figure name (see `suites::snapshot::FIGURES`) → ns.
    pub runs: Vec<BTreeMap<String, u64>>,
}

/// Firecracker's snapshot of the guest at the init's `ready` report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PeerSnapshot {
    /// `PATCH /vm Paused`, ns.
    pub pause_ns: u64,
    /// `PUT /snapshot/create` (Full), ns.
    pub create_ns: u64,
    /// Memory file allocated bytes.
    pub memory_allocated_bytes: u64,
    /// Memory file logical size.
    pub memory_logical_bytes: u64,
}

/// A measurement that was not taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// e.g. "peer firecracker", "vm startup".
    pub what: String,
    /// Why, as the user can act on it.
    pub reason: String,
}

impl Results {
    /// An empty run record for `environment` and `config`.
    pub fn new(environment: Environment, config: RunConfig) -> Self {
        Results {
            schema_version: SCHEMA_VERSION,
            environment,
            config,
            startup: Vec::new(),
            cpu: Vec::new(),
            memory: Vec::new(),
            density: Vec::new(),
            disk: Vec::new(),
            share: Vec::new(),
            net: Vec::new(),
            exec: Vec::new(),
            snapshot: None,
            skipped: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records that `what` was skipped because of `reason`.
    pub fn skip(&mut self, what: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            what: what.into(),
            reason: reason.into(),
        });
    }

    /// Adds `text` to the notes unless it is there already (notes said by every boot or run).
    pub fn note_once(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }

    /// Whether any VM-backed numbers are present (they need the backend caveat).
    pub fn has_vm_numbers(&self) -> bool {
        self.startup
            .iter()
            .any(|s| is_vm_subject(&s.subject) && !s.runs.is_empty())
            || self.cpu.iter().any(|s| is_vm_subject(&s.subject))
            || self.memory.iter().any(|s| is_vm_subject(&s.subject))
            || self.density.iter().any(|s| is_vm_subject(&s.subject))
            || self.disk.iter().any(|s| is_vm_subject(&s.subject))
            || self.share.iter().any(|s| is_vm_subject(&s.subject))
            || self.net.iter().any(|s| {
                !s.runs.is_empty() && (is_vm_subject(&s.server) || is_vm_subject(&s.client))
            })
            || self.exec.iter().any(|s| {
                is_vm_subject(&s.subject) && !(s.round_trip_ns.is_empty() && s.stream.is_empty())
            })
            || self
                .snapshot
                .as_ref()
                .is_some_and(|s| s.series.iter().any(|x| !x.runs.is_empty()))
    }

    /// Writes `results.json` into `dir` (pretty-printed, so diffs between runs are readable).
    pub fn save(&self, dir: &Path) -> Result<std::path::PathBuf> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let path = dir.join("results.json");
        let text = serde_json::to_string_pretty(self).map_err(|source| BenchError::Json {
            path: path.clone(),
            source,
        })?;
        std::fs::write(&path, text + "\n").map_err(io_at(&path))?;
        Ok(path)
    }

    /// Reads `results.json` from `dir` (or `dir` itself if it is the file).
    pub fn load(dir: &Path) -> Result<Results> {
        let path = if dir.is_dir() {
            dir.join("results.json")
        } else {
            dir.to_path_buf()
        };
        let text = std::fs::read_to_string(&path).map_err(io_at(&path))?;
        let r: Results = serde_json::from_str(&text).map_err(|source| BenchError::Json {
            path: path.clone(),
            source,
        })?;
        if r.schema_version != SCHEMA_VERSION {
            return Err(BenchError::Parse {
                what: path.display().to_string(),
                detail: format!(
                    "schema_version {} (this vcompare reads {SCHEMA_VERSION})",
                    r.schema_version
                ),
            });
        }
        Ok(r)
    }
}

/// Subjects whose numbers come from a guest kernel under KVM (and so carry the backend caveat).
pub fn is_vm_subject(subject: &str) -> bool {
    matches!(
        subject,
        "vm" | "vm-cold"
            | "qemu"
            | "qemu-rootdisk"
            | "qemu-reference"
            | "firecracker"
            | "vm restored"
            | "vm cold"
            | "firecracker restored"
            | "firecracker cold"
    )
}
