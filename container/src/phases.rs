//! Startup phase timestamps, so the benchmark can break a container's startup down into the
//! mechanisms the lecture names instead of reporting one opaque number.
//!
//! Every timestamp is `CLOCK_MONOTONIC` in nanoseconds; the child's "mounts" mark is taken in the
//! child itself and sent through the report pipe, the others in the parent.

use vcompare_spec::StartupPhase;

/// A named instant of the start path, in order of occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `clone` with all namespace flags returned and the id maps written.
    Namespaces,
    /// Overlay root filesystem built (idmapped lower + detached overlay) and handed to the child.
    Rootfs,
    /// The child is in its cgroup (directories and limits were written before `clone`). On v1
    /// the child moves itself right after `clone` and timestamps it (so this mark can precede
    /// [`Phase::Namespaces`], which the parent stamps after writing the id maps); on v2 the
    /// child is born in it (`clone3`) or the parent moves it while the child mounts.
    Cgroup,
    /// Child finished /proc, /sys, /dev, volumes, `pivot_root`, masks (timestamped in the child).
    Mounts,
    /// `execve` of the command succeeded (the close-on-exec report pipe hit EOF).
    Exec,
}

impl From<Phase> for StartupPhase {
    /// The container's marks are a subset of the startup phases both modes share; their
    /// names live there, once.
    fn from(p: Phase) -> StartupPhase {
        match p {
            Phase::Cgroup => StartupPhase::Cgroup,
            Phase::Namespaces => StartupPhase::Namespaces,
            Phase::Rootfs => StartupPhase::Rootfs,
            Phase::Mounts => StartupPhase::Mounts,
            Phase::Exec => StartupPhase::Exec,
        }
    }
}

impl Phase {
    /// The stable name used in reports ("namespaces", "mounts", "cgroup", "exec", "rootfs").
    pub fn name(self) -> &'static str {
        StartupPhase::from(self).name()
    }
}

/// Callbacks from [`crate::run`] to its caller (the lifecycle code records the pid as soon as
/// it exists and collects phase marks for the startup breakdown).
pub trait Observer {
    /// The container's command is running; `pid` is the host pid of container PID 1, the one
    /// `stop`/`kill` should signal.
    fn started(&mut self, pid: i32);
    /// `phase` finished at `monotonic_ns` (`CLOCK_MONOTONIC`, nanoseconds).
    fn phase(&mut self, phase: Phase, monotonic_ns: u64);
    /// The container's own network namespace exists (and its user namespace is mapped) but
    /// nothing in it runs yet: connect it to its networks now, so the entrypoint starts with
    /// its interfaces up. Not called with `--network host`. An error aborts the start.
    fn network_namespace(&mut self, _pid: i32) -> Result<(), String> {
        Ok(())
    }
}

/// An observer that ignores everything (tests, callers that do not measure).
#[derive(Debug, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn started(&mut self, _pid: i32) {}
    fn phase(&mut self, _phase: Phase, _monotonic_ns: u64) {}
}
