//! Drives the real `vcompare` binary as a user would (spawn, wait, `inspect`, `rm`), times
//! it from outside, and reads host-side facts (/proc, cgroups) about running instances.
//!
//! This file holds [`Harness`] itself (the `vcompare` calls a suite makes); running and timing
//! child processes, host facts from /proc and cgroups, and the VMM memory rule each have their
//! own file below and are re-exported here, so `crate::harness::…` paths stay as they were.

mod host_facts;
mod process;
mod vmm_memory;

pub use host_facts::{
    cgroup_memory_usage, dir_usage, mem_available, parent_and_comm, proc_kb_field, rss_pss,
};
pub use process::{
    failed, json_lines, monotonic_ns, output, spawn_timed, wait_exit, Timed, TimedOutput,
};
pub use vmm_memory::{guest_ram, parse_smaps, vmm_memory, Mapping, VmmMemory, VMM_OVERHEAD_RULE};

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::error::{io_at, BenchError, Result};

/// PATH given to host-side probe runs: the image's PATH, and otherwise an empty environment,
/// so host and container processes start with the same environment size (stack alignment
/// effects from a large environment can move a tight loop by 20 % here).
pub const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything a suite needs to run measurements.
pub struct Harness {
    /// The `vcompare` binary to drive (normally `current_exe()`).
    pub exe: PathBuf,
    /// `--root` passed to every `vcompare` call (a private data dir keeps runs independent).
    pub root: PathBuf,
    /// Image reference run in container and VM mode.
    pub image: String,
    /// The image's unpacked root filesystem (peers' bundle root, host probe).
    pub rootfs: PathBuf,
    /// Runs per measurement for host and containers.
    pub runs: usize,
    /// Runs per measurement for VMs (boots are slow on a nested host).
    pub vm_runs: usize,
    /// Scratch directory for bundles, initramfs and host I/O files.
    pub scratch: PathBuf,
    /// Progress bar; its unit is estimated milliseconds, so the ETA is meaningful even though a
    /// VM boot costs 200× a container start.
    pub progress: ProgressBar,
    /// Set when a VM run failed: later suites skip VM mode instead of failing again.
    pub vm_broken: Option<String>,
    /// The guest kernel vcompare's VM mode boots (the QEMU peer boots the same one), or why
    /// there is none.
    pub kernel: Result<PathBuf, String>,
    /// The image's cached VM disk and the init on it (the QEMU peer boots copies), or why
    /// there is none.
    pub vm_disk: Result<(PathBuf, PathBuf), String>,
    /// The QEMU peer's once-per-run preparation, made on first use (startup and memory share
    /// it); `None` until then.
    pub qemu_setups: Option<Vec<crate::peers::qemu::QemuSetup>>,
    /// The Firecracker peer's once-per-run preparation: `None` until first use, then
    /// `Some(None)` when it is not measured (not found, no kernel; the skip says why).
    pub firecracker: Option<Option<crate::peers::firecracker::FirecrackerSetup>>,
    /// VM subjects that had their untimed warm-up boot in this run (one per subject).
    pub warmed: Vec<String>,
    /// Whether VM subjects get that warm-up boot (off only for smoke runs: `--no-vm-warm-up`).
    pub vm_warm_up: bool,
    counter: u64,
}

impl Harness {
    /// A harness for `exe --root root`, measuring `image` (whose rootfs is `rootfs`).
    pub fn new(
        exe: PathBuf,
        root: PathBuf,
        image: String,
        rootfs: PathBuf,
        runs: usize,
        vm_runs: usize,
    ) -> Result<Self> {
        let scratch = root
            .join("tmp")
            .join(format!("bench-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).map_err(io_at(&scratch))?;
        Ok(Harness {
            exe,
            root,
            image,
            rootfs,
            runs,
            vm_runs,
            scratch,
            progress: ProgressBar::hidden(),
            vm_broken: None,
            kernel: Err("not looked up".into()),
            vm_disk: Err("not looked up".into()),
            qemu_setups: None,
            firecracker: None,
            warmed: Vec::new(),
            vm_warm_up: true,
            counter: 0,
        })
    }

    /// Shows a progress bar over `total_ms` estimated milliseconds of work.
    pub fn start_progress(&mut self, total_ms: u64) {
        let pb = ProgressBar::new(total_ms.max(1));
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] [{bar:30}] {percent:>3}% ETA {whole_eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "whole_eta",
                |st: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    // Whole-run average rate: steady even though one VM boot is 100× a container start.
                    let f = st.fraction() as f64;
                    let _ = if f > 0.005 {
                        let secs = st.elapsed().as_secs_f64() * (1.0 - f) / f;
                        write!(w, "{}m{:02}s", (secs / 60.0) as u64, secs as u64 % 60)
                    } else {
                        write!(w, "…")
                    };
                },
            )
            .progress_chars("=> "),
        );
        pb.enable_steady_tick(Duration::from_millis(250));
        self.progress = pb;
    }

    /// Marks `est_ms` of estimated work as done, with a status message.
    pub fn advance(&self, est_ms: u64, msg: &str) {
        self.progress.set_message(msg.to_string());
        self.progress.inc(est_ms);
    }

    /// Prints a line above the progress bar.
    pub fn say(&self, line: &str) {
        self.progress.println(line);
    }

    /// A fresh instance name, unique within this run, so `inspect`/`rm` find exactly it.
    pub fn fresh_name(&mut self, tag: &str) -> String {
        self.counter += 1;
        format!("vcb-{}-{tag}-{}", std::process::id(), self.counter)
    }

    /// `vcompare --root R ARGS…` as a Command, stdin closed.
    pub fn vcompare(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs `vcompare ARGS…` to completion and returns its output; non-zero exit is an error.
    pub fn vcompare_ok(&self, args: &[&str]) -> Result<Output> {
        let out = output(self.vcompare(args), &format!("vcompare {}", args.join(" ")))?;
        Ok(out)
    }

    /// `vcompare inspect NAME --format json`.
    pub fn inspect(&self, name: &str) -> Result<Value> {
        let out = self.vcompare_ok(&["inspect", name, "--format", "json"])?;
        serde_json::from_slice(&out.stdout).map_err(|e| BenchError::Parse {
            what: format!("vcompare inspect {name}"),
            detail: e.to_string(),
        })
    }

    /// `vcompare rm -f NAMES…`, errors ignored (cleanup must not hide the measurement).
    pub fn remove(&self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(names.iter().map(String::as_str));
        let _ = self
            .vcompare(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Polls `vcompare logs NAME` until a line containing `needle` appears.
    pub fn wait_for_log(&self, name: &str, needle: &str, timeout: Duration) -> Result<()> {
        let t = Instant::now();
        loop {
            if let Ok(out) = self
                .vcompare(&["logs", name])
                .stderr(Stdio::null())
                .output()
            {
                if String::from_utf8_lossy(&out.stdout).contains(needle) {
                    return Ok(());
                }
            }
            if let Ok(v) = self.inspect(name) {
                if v.get("status").and_then(Value::as_str) == Some("exited") {
                    return Err(BenchError::Failed {
                        cmd: format!("instance {name}"),
                        status: "exited early".into(),
                        detail: v
                            .get("error")
                            .and_then(Value::as_str)
                            .unwrap_or("no output")
                            .to_string(),
                    });
                }
            }
            if t.elapsed() > timeout {
                return Err(BenchError::Timeout {
                    cmd: format!("instance {name}"),
                    secs: timeout.as_secs(),
                    detail: format!("waiting for {needle:?} in its logs"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
