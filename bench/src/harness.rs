//! Drives the real `vcompare` binary as a user would (spawn, wait, `inspect`, `rm`), times
//! it from outside, and reads host-side facts (/proc, cgroups) about running instances.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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

/// Runs `cmd` to completion; a non-zero exit becomes [`BenchError::Failed`] with stderr's last line.
pub fn output(mut cmd: Command, label: &str) -> Result<Output> {
    let out = cmd.output().map_err(|source| BenchError::Spawn {
        cmd: label.to_string(),
        source,
    })?;
    if !out.status.success() {
        return Err(failed(
            label,
            &out.status.to_string(),
            &out.stderr,
            &out.stdout,
        ));
    }
    Ok(out)
}

/// Builds a [`BenchError::Failed`] from captured output.
pub fn failed(label: &str, status: &str, stderr: &[u8], stdout: &[u8]) -> BenchError {
    // Prefer the line that says what went wrong ("…error: …"), else the last line.
    let pick = |b: &[u8]| {
        let text = String::from_utf8_lossy(b);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines
            .iter()
            .rev()
            .find(|l| l.to_lowercase().contains("error"))
            .or(lines.last())
            .map(|l| l.trim().to_string())
    };
    BenchError::Failed {
        cmd: label.to_string(),
        status: status.to_string(),
        detail: pick(stderr)
            .or_else(|| pick(stdout))
            .unwrap_or_else(|| "no output".into()),
    }
}

/// A spawned, timed process: `spawn_mono_ns` is CLOCK_MONOTONIC just before spawn.
pub struct Timed {
    /// The child.
    pub child: Child,
    /// CLOCK_MONOTONIC (ns) taken immediately before `spawn`.
    pub spawn_mono_ns: u64,
    /// The child's own start time on CLOCK_MONOTONIC, from /proc/PID/stat (tick resolution,
    /// computed the same way vcompare computes the base of its phase marks).
    pub child_base_mono_ns: Option<u64>,
    started: Instant,
}

/// Wall time and captured output of a [`Timed`] process.
pub struct TimedOutput {
    /// Spawn → exit observed by `wait`, ns.
    pub wall_ns: u64,
    /// Exit status.
    pub status: std::process::ExitStatus,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

/// CLOCK_MONOTONIC in ns (the clock vcompare's phase marks use).
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Process start of `pid` on CLOCK_MONOTONIC: starttime ticks (BOOTTIME) shifted by the
/// current MONOTONIC−BOOTTIME offset.
pub fn process_start_mono_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks: u64 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let mono = clock_ns(libc::CLOCK_MONOTONIC);
    let boot = clock_ns(libc::CLOCK_BOOTTIME);
    Some((ticks * 1_000_000_000 / hz + mono).saturating_sub(boot))
}

/// Spawns `cmd` with stdout/stderr piped and notes the spawn instant.
pub fn spawn_timed(mut cmd: Command, label: &str) -> Result<Timed> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let spawn_mono_ns = monotonic_ns();
    let started = Instant::now();
    let child = cmd.spawn().map_err(|source| BenchError::Spawn {
        cmd: label.to_string(),
        source,
    })?;
    let child_base_mono_ns = process_start_mono_ns(child.id());
    Ok(Timed {
        child,
        spawn_mono_ns,
        child_base_mono_ns,
        started,
    })
}

impl Timed {
    /// Waits for exit (reading output concurrently so a chatty child cannot block), with a
    /// timeout after which the child is killed.
    pub fn finish(mut self, label: &str, timeout: Duration) -> Result<TimedOutput> {
        let mut so = self.child.stdout.take();
        let mut se = self.child.stderr.take();
        let t_out = std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(s) = so.as_mut() {
                let _ = s.read_to_end(&mut b);
            }
            b
        });
        let t_err = std::thread::spawn(move || {
            let mut b = Vec::new();
            if let Some(s) = se.as_mut() {
                let _ = s.read_to_end(&mut b);
            }
            b
        });
        let status = loop {
            if let Some(st) = self.child.try_wait().map_err(|source| BenchError::Spawn {
                cmd: label.to_string(),
                source,
            })? {
                break st;
            }
            if self.started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(BenchError::Timeout {
                    cmd: label.to_string(),
                    secs: timeout.as_secs(),
                    detail: "no exit".into(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let wall_ns = self.started.elapsed().as_nanos() as u64;
        Ok(TimedOutput {
            wall_ns,
            status,
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
        })
    }
}

/// JSON objects printed one per line (probe output), skipping anything else.
pub fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(Value::is_object)
        .collect()
}

/// A `key:  N kB` field of a /proc file such as smaps_rollup or status, in bytes.
pub fn proc_kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// (RSS, PSS) of `pid` in bytes from /proc/PID/smaps_rollup.
pub fn rss_pss(pid: u32) -> Option<(u64, u64)> {
    let t = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some((proc_kb_field(&t, "Rss")?, proc_kb_field(&t, "Pss")?))
}

/// Parent pid and command name of `pid`.
pub fn parent_and_comm(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head[open + 1..].to_string();
    let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
    Some((ppid, comm))
}

/// MemAvailable from /proc/meminfo, bytes.
pub fn mem_available() -> Option<u64> {
    proc_kb_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable",
    )
}

/// Memory cgroup usage of `pid`: v1 `memory.usage_in_bytes` or v2 `memory.current`.
pub fn cgroup_memory_usage(pid: u32) -> Option<u64> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for l in cg.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        let path = path.trim_start_matches('/');
        let file = if ctrl.split(',').any(|c| c == "memory") {
            Path::new("/sys/fs/cgroup/memory")
                .join(path)
                .join("memory.usage_in_bytes")
        } else if ctrl.is_empty() {
            let unified = if Path::new("/sys/fs/cgroup/unified").is_dir() {
                "/sys/fs/cgroup/unified"
            } else {
                "/sys/fs/cgroup"
            };
            Path::new(unified).join(path).join("memory.current")
        } else {
            continue;
        };
        if let Some(v) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Some(v);
        }
    }
    None
}

/// (allocated, apparent) bytes of everything under `dir` (like `du` and `du -b`), not
/// following symlinks or crossing into other mounts' contents.
pub fn dir_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut alloc = 0;
    let mut apparent = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&d) else {
            continue;
        };
        alloc += md.blocks() * 512;
        apparent += md.size();
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&d) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    (alloc, apparent)
}

/// (Size, Rss) in bytes of the largest mapping of `pid` that is at least `min_size` bytes: a
/// VMM's guest RAM, so that "VMM overhead" = total RSS − this mapping's RSS.
pub fn largest_mapping(pid: u32, min_size: u64) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut best: Option<(u64, u64)> = None;
    let mut cur: Option<(u64, u64)> = None;
    let flush = |c: Option<(u64, u64)>, best: &mut Option<(u64, u64)>| {
        if let Some((size, rss)) = c {
            if size >= min_size && best.is_none_or(|b| size > b.0) {
                *best = Some((size, rss));
            }
        }
    };
    for l in text.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            flush(cur.take(), &mut best);
            cur = Some((0, 0));
        } else if let Some(c) = cur.as_mut() {
            if let Some(v) = proc_kb_field(l, "Size") {
                c.0 = v;
            } else if let Some(v) = proc_kb_field(l, "Rss") {
                c.1 = v;
            }
        }
    }
    flush(cur, &mut best);
    best
}

/// RSS in bytes of `pid`'s mappings that overlap the given (host address, length) ranges —
/// the guest RAM a VMM reports it mapped — so VMM overhead = total RSS − this.
pub fn rss_in_ranges(pid: u32, ranges: &[(u64, u64)]) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut total = 0;
    let mut inside = false;
    let mut found = false;
    for l in text.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
            else {
                inside = false;
                continue;
            };
            inside = ranges.iter().any(|&(s, len)| start < s + len && s < end);
            found |= inside;
        } else if inside {
            if let Some(v) = proc_kb_field(l, "Rss") {
                total += v;
            }
        }
    }
    found.then_some(total)
}
