//! Running the VMM as its own small process (`vcompare-vmm`), so that its memory overhead is
//! that of a lean binary and not of the whole CLI: the job (what to boot) goes in as a JSON
//! file, the result comes back as a JSON file; console output goes straight to the inherited
//! stdout, and the process is the one `stop`/`kill` signal.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::{DebugOptions, VmConfig};
use crate::machine::{self, GuestExit};

pub use crate::config::VmJob;
/// CLOCK_MONOTONIC now, ns: the one clock of every phase timestamp (defined in
/// `vcompare_spec::clock`; re-exported here for the callers that know it by this path).
pub use vcompare_spec::clock::monotonic_ns;

/// One boot-timer mark, as CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarkNs {
    /// The guest phase (snake_case on the wire).
    pub phase: vcompare_spec::guest::Phase,
    /// CLOCK_MONOTONIC, ns.
    pub at_ns: u64,
}

/// How the VM ended (written by `vcompare-vmm`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmResult {
    /// The entrypoint's end, if the VM ran to it.
    pub exit: Option<GuestExit>,
    /// The VMM error (one sentence + console lines), if it did not.
    pub error: Option<String>,
    /// When the VMM process started (top of `vcompare-vmm`'s `main`), CLOCK_MONOTONIC ns:
    /// the start of the VMM setup span.
    #[serde(default)]
    pub launched_ns: Option<u64>,
    /// vCPU 0's first entry, CLOCK_MONOTONIC ns.
    pub first_entry_ns: Option<u64>,
    /// Boot-timer marks.
    pub marks: Vec<MarkNs>,
    /// Teardown, CLOCK_MONOTONIC ns.
    pub ended_ns: u64,
    /// Last console lines.
    pub console_tail: Vec<String>,
    /// The VM was restored from a snapshot.
    #[serde(default)]
    pub restored: bool,
    /// Restoring from the snapshot failed before the guest ran anything of this run (the
    /// caller may boot cold instead); `error` says why.
    #[serde(default)]
    pub restore_failed: bool,
    /// A snapshot was taken during the run: how long the vCPUs were paused for it, ms.
    #[serde(default)]
    pub snapshot_pause_ms: Option<f64>,
}

/// An `Instant` (CLOCK_MONOTONIC on Linux) as CLOCK_MONOTONIC ns.
pub fn instant_ns(t: Instant) -> u64 {
    let now = Instant::now();
    monotonic_ns().saturating_sub(now.saturating_duration_since(t).as_nanos() as u64)
}

/// Runs `job` in this process (the body of `vcompare-vmm`) and writes its result file.
/// `launched` is when the process's `main` started: the VMM setup span counts from there.
pub fn run_job(job: VmJob, debug: DebugOptions, launched: Instant) -> std::io::Result<()> {
    crate::trace::Trace::new("job", launched, debug.trace).step("job read");
    let result_path = job.result_path.clone();
    let result = execute(job, debug, launched);
    let tmp = result_path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(&result).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, &result_path)
}

/// Boots `job` in the calling process and returns how it ended: the body of [`run_job`],
/// and what the CLI calls directly when it runs the VMM in-process.
pub fn execute(job: VmJob, debug: DebugOptions, launched: Instant) -> VmResult {
    let restoring = matches!(
        job.snapshot,
        Some(crate::config::SnapshotJob::Restore { .. })
    );
    let cfg = VmConfig {
        debug,
        ..VmConfig::new(job, launched)
    };
    match machine::run(cfg) {
        Ok(r) => VmResult {
            exit: Some(r.exit),
            error: None,
            launched_ns: Some(instant_ns(launched)),
            first_entry_ns: r.first_entry.map(instant_ns),
            marks: r
                .marks
                .iter()
                .map(|m| MarkNs {
                    phase: m.phase,
                    at_ns: instant_ns(m.at),
                })
                .collect(),
            ended_ns: instant_ns(r.ended),
            console_tail: r.console_tail,
            restored: r.restored,
            restore_failed: false,
            snapshot_pause_ms: r.snapshot_pause_ms,
        },
        Err(e) => VmResult {
            exit: None,
            restore_failed: restoring && matches!(e, crate::error::VmError::Snapshot(_)),
            error: Some(e.to_string()),
            launched_ns: Some(instant_ns(launched)),
            first_entry_ns: None,
            marks: Vec::new(),
            ended_ns: monotonic_ns(),
            console_tail: Vec::new(),
            restored: restoring,
            snapshot_pause_ms: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_roundtrips_through_json() {
        let r = VmResult {
            exit: Some(GuestExit::Signaled(15)),
            error: None,
            launched_ns: Some(4),
            first_entry_ns: Some(5),
            marks: vec![MarkNs {
                phase: vcompare_spec::guest::Phase::InitStart,
                at_ns: 7,
            }],
            ended_ns: 9,
            console_tail: vec!["x".into()],
            restored: false,
            restore_failed: false,
            snapshot_pause_ms: None,
        };
        let back: VmResult = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back.exit, Some(GuestExit::Signaled(15)));
        assert_eq!(back.marks[0].phase, vcompare_spec::guest::Phase::InitStart);
        // The wire name stays the protocol's snake_case name.
        assert!(String::from_utf8(serde_json::to_vec(&r).unwrap())
            .unwrap()
            .contains("\"phase\":\"init_start\""));
    }

    #[test]
    fn phase_names_are_snake_case() {
        use vcompare_spec::guest::Phase;
        let names: Vec<serde_json::Value> = Phase::ALL
            .iter()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "init_start",
                "root_mounted",
                "entrypoint_exec",
                "entrypoint_exit",
                "init_failed",
                "ready"
            ]
        );
    }

    #[test]
    fn job_json_keeps_its_keys() {
        let job = VmJob {
            kernel: "/k".into(),
            memory_mib: 256,
            cpus: 1,
            prealloc: false,
            initramfs: Default::default(),
            root_disk: Some("/d".into()),
            shares: Vec::new(),
            net: None,
            vsock: None,
            snapshot: None,
            extra_cmdline: vec!["x=1".into()],
            boot_log: false,
            timeout_secs: None,
            memory_ranges_path: None,
            guest_info_path: None,
            result_path: "/r".into(),
        };
        let v = serde_json::to_value(&job).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "boot_log",
                "cpus",
                "extra_cmdline",
                "guest_info_path",
                "initramfs",
                "kernel",
                "memory_mib",
                "memory_ranges_path",
                "net",
                "prealloc",
                "result_path",
                "root_disk",
                "shares",
                "snapshot",
                "timeout_secs",
                "vsock"
            ]
        );
    }

    #[test]
    fn instant_ns_is_monotonic_clock() {
        let now = Instant::now();
        let a = monotonic_ns();
        let b = instant_ns(now);
        assert!(a.abs_diff(b) < 50_000_000);
    }
}
