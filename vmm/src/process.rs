//! Running the VMM as its own small process (`vcompare-vmm`), so that its memory overhead is
//! that of a lean binary and not of the whole CLI: the job (what to boot) goes in as a JSON
//! file, the result comes back as a JSON file; console output goes straight to the inherited
//! stdout, and the process is the one `stop`/`kill` signal.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::machine::{self, GuestExit, VmConfig};

/// What to boot (written by the CLI, read by `vcompare-vmm`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmJob {
    /// ELF vmlinux.
    pub kernel: PathBuf,
    /// Guest RAM, MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub cpus: u8,
    /// Fault in guest RAM up front.
    pub prealloc: bool,
    /// The initramfs: an archive file the VMM maps and bytes after it; empty: none.
    pub initramfs: crate::initramfs::Initramfs,
    /// Root disk.
    pub root_disk: Option<PathBuf>,
    /// Shared host directories (virtio-9p).
    #[serde(default)]
    pub shares: Vec<crate::devices::virtio::p9::Share>,
    /// Extra kernel arguments.
    pub extra_cmdline: Vec<String>,
    /// Forward the kernel's boot log.
    pub boot_log: bool,
    /// Watchdog, seconds.
    pub timeout_secs: Option<u64>,
    /// Where to write guest RAM's host ranges (JSON array), for the overhead measurement.
    pub memory_ranges_path: Option<PathBuf>,
    /// Where to write the guest's self-description (JSON).
    pub guest_info_path: Option<PathBuf>,
    /// Where to write the [`VmResult`].
    pub result_path: PathBuf,
}

/// One boot-timer mark, as CLOCK_MONOTONIC ns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarkNs {
    /// Phase name (snake_case, as in [`crate::devices::boot_timer::Phase`]).
    pub phase: String,
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
}

/// CLOCK_MONOTONIC now, ns.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// An `Instant` (CLOCK_MONOTONIC on Linux) as CLOCK_MONOTONIC ns.
pub fn instant_ns(t: Instant) -> u64 {
    let now = Instant::now();
    monotonic_ns().saturating_sub(now.saturating_duration_since(t).as_nanos() as u64)
}

/// Runs `job` in this process (the body of `vcompare-vmm`) and writes its result file.
/// `launched` is when the process's `main` started: the VMM setup span counts from there.
pub fn run_job(job: VmJob, launched: Instant) -> std::io::Result<()> {
    crate::trace::Trace::from_env("job", launched).step("job read");
    let result = execute(&job, launched);
    let tmp = job.result_path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(&result).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, &job.result_path)
}

/// Boots `job` in the calling process and returns how it ended: the body of [`run_job`],
/// and what the CLI calls directly when it runs the VMM in-process.
pub fn execute(job: &VmJob, launched: Instant) -> VmResult {
    let cfg = VmConfig {
        kernel: job.kernel.clone(),
        memory_mib: job.memory_mib,
        cpus: job.cpus,
        prealloc: job.prealloc,
        initramfs: job.initramfs.clone(),
        root_disk: job.root_disk.clone(),
        root_readonly: false,
        shares: job.shares.clone(),
        extra_cmdline: job.extra_cmdline.clone(),
        console: Box::new(std::io::stdout()),
        boot_log: job.boot_log,
        timeout: job.timeout_secs.map(Duration::from_secs),
        handle_signals: true,
        launched,
        on_guest_info: job.guest_info_path.clone().map(
            |p| -> crate::devices::boot_timer::InfoCallback {
                Box::new(move |i: &str| {
                    let _ = std::fs::write(&p, i);
                })
            },
        ),
        on_memory: job
            .memory_ranges_path
            .clone()
            .map(|p| -> machine::MemoryCallback {
                Box::new(move |r: &[(u64, u64)]| {
                    let _ = std::fs::write(&p, serde_json::to_vec(r).unwrap_or_default());
                })
            }),
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
                    phase: serde_json::to_value(m.phase)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default(),
                    at_ns: instant_ns(m.at),
                })
                .collect(),
            ended_ns: instant_ns(r.ended),
            console_tail: r.console_tail,
        },
        Err(e) => VmResult {
            exit: None,
            error: Some(e.to_string()),
            launched_ns: Some(instant_ns(launched)),
            first_entry_ns: None,
            marks: Vec::new(),
            ended_ns: monotonic_ns(),
            console_tail: Vec::new(),
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
                phase: "init_start".into(),
                at_ns: 7,
            }],
            ended_ns: 9,
            console_tail: vec!["x".into()],
        };
        let back: VmResult = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back.exit, Some(GuestExit::Signaled(15)));
        assert_eq!(back.marks[0].phase, "init_start");
    }

    #[test]
    fn phase_names_are_snake_case() {
        use crate::devices::boot_timer::Phase;
        assert_eq!(
            serde_json::to_value(Phase::InitStart).unwrap(),
            "init_start"
        );
        assert_eq!(
            serde_json::to_value(Phase::EntrypointExit).unwrap(),
            "entrypoint_exit"
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
