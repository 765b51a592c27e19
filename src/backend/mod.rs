//! The one contract both execution modes implement, so `run`, `ps`, `stop`, `kill`, `start`,
//! `rm`, `exec` and `inspect` treat a container and a microVM the same way and only the
//! mechanism differs (which is the point of the comparison).

pub mod container;
pub mod network;
pub mod vm;
pub mod vm_agent;
pub mod vm_snapshot;

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use vcompare_spec::{ProcessSpec, StartupPhase};

/// How an instance runs: the two sides of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Namespace container on the shared host kernel.
    Container,
    /// KVM microVM with its own guest kernel.
    Vm,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Container => "container",
            Mode::Vm => "vm",
        })
    }
}

pub use vcompare_spec::Volume;

/// Everything a backend needs to start one instance; identical for both modes so that the
/// same image and the same flags give a fair comparison. Stored as `spec.json` in the
/// instance directory so `start` can run it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSpec {
    /// 64 hex chars.
    pub id: String,
    /// Optional `--name`.
    pub name: Option<String>,
    /// Which side of the comparison.
    pub mode: Mode,
    /// The image reference the user typed, as resolved (`name:tag`).
    pub image_ref: String,
    /// Manifest digest (`sha256:…`) of the image; keys the rootfs and disk caches.
    pub image_digest: String,
    /// The image's unpacked root filesystem (read-only cache shared by all instances).
    pub rootfs: PathBuf,
    /// The entrypoint after CLI overrides (flattened: `spec.json` keeps its `args`, `env`, …
    /// keys, so instances made by older builds still start).
    #[serde(flatten)]
    pub process: ProcessSpec,
    /// Hostname inside the instance (12-hex short id unless `--hostname`).
    pub hostname: String,
    /// `-v` mounts.
    pub volumes: Vec<Volume>,
    /// `--memory`, bytes: a cgroup limit for containers, the guest RAM size for VMs.
    pub memory_bytes: Option<u64>,
    /// `--cpus`: a CPU quota for containers, the number of vCPUs for VMs.
    pub cpus: Option<f64>,
    /// `--pids-limit` (containers).
    pub pids_limit: Option<i64>,
    /// `-t`: allocate a pseudo-terminal.
    pub tty: bool,
    /// `-i`: keep stdin open.
    pub interactive: bool,
    /// `--init` (containers): a tiny reaper is PID 1 instead of the entrypoint.
    pub init: bool,
    /// `--userns host` turns the user namespace off (containers).
    pub userns: bool,
    /// `--network host` shares the host network stack (containers).
    pub network_host: bool,
    /// `--network NAME`: the networks joined at start (the first gets `-p` and the default
    /// route). Empty (and not `network_host`) = only `lo`, which is also what records written
    /// before networks existed mean.
    #[serde(default)]
    pub networks: Vec<String>,
    /// `-p` mappings, served through the first network.
    #[serde(default)]
    pub ports: Vec<vcompare_network::ports::PortMapping>,
    /// `--prealloc` (VMs): fault all guest RAM in up front.
    pub prealloc: bool,
    /// `--no-snapshot` (VMs): boot the guest kernel, neither restoring nor taking a snapshot.
    #[serde(default)]
    pub no_snapshot: bool,
    /// `--timeout` seconds: watchdog for the whole run (VMs; containers too).
    pub timeout_secs: Option<u64>,
    /// Per-instance directory: copy-on-write layer, VM disk, logs, state.
    pub instance_dir: PathBuf,
    /// The data directory (`--root`): caches keyed by image digest live below it.
    pub data_root: PathBuf,
}

impl RunSpec {
    /// The 12-hex short id users see (`ps`, errors).
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// How an instance's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Outcome {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
    /// Killed by the kernel's OOM killer because of `--memory`.
    OomKilled,
    /// The watchdog (`--timeout`) ended it.
    TimedOut,
}

/// The container runtime's exit status maps one to one onto the backend-neutral outcome.
impl From<vcompare_container::ExitStatus> for Outcome {
    fn from(s: vcompare_container::ExitStatus) -> Outcome {
        use vcompare_container::ExitStatus as S;
        match s {
            S::Exited(c) => Outcome::Exited(c),
            S::Signaled(sig) => Outcome::Signaled(sig),
            S::OomKilled => Outcome::OomKilled,
            S::TimedOut => Outcome::TimedOut,
        }
    }
}

impl Outcome {
    /// The exit status vcompare itself returns: the code, or 128+N for signal N.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Exited(c) => c,
            Outcome::Signaled(s) => 128 + s,
            Outcome::OomKilled => 137,
            Outcome::TimedOut => 124,
        }
    }
}

/// A named instant during startup, for the phase breakdown of the startup benchmark.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseMark {
    /// A [`StartupPhase`] name. Kept as a string in the record so that records written by
    /// other builds still load; new marks are made by [`PhaseMark::new`] only.
    pub name: String,
    /// Nanoseconds since the `vcompare` process started (CLOCK_MONOTONIC based).
    pub at_ns: u64,
}

impl PhaseMark {
    /// `phase` reached `at_ns` after the process start.
    pub fn new(phase: StartupPhase, at_ns: u64) -> PhaseMark {
        PhaseMark {
            name: phase.name().to_string(),
            at_ns,
        }
    }
}

/// Callbacks from a running backend to the lifecycle code, so the instance record is written
/// as soon as there is a process to signal (before the run ends).
pub trait RunHooks {
    /// The process `stop`/`kill` should signal is alive: container init (host pid) or the VMM.
    fn started(&mut self, pid: i32);
    /// A startup phase finished.
    fn phase(&mut self, mark: PhaseMark);
}

/// `CLOCK_MONOTONIC` (ns) when this process entered `main`: the zero of every [`PhaseMark`].
static PROCESS_START: OnceLock<u64> = OnceLock::new();

/// Current `CLOCK_MONOTONIC` time in ns (the clock the backends stamp phases with); the
/// VMM's result file uses the same function, so its marks and ours share one clock.
pub use vcompare_vmm::process::monotonic_ns;

/// Records the process start; called first thing in `main` so phase marks are exact.
pub fn mark_process_start() {
    let _ = PROCESS_START.set(monotonic_ns());
}

/// The recorded process start (or now, if `main` did not record it, e.g. in unit tests).
pub fn process_start_ns() -> u64 {
    *PROCESS_START.get_or_init(monotonic_ns)
}
