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
    /// The QEMU peer's once-per-run preparation, made on first use (startup and memory share
    /// it); `None` until then.
    pub qemu_setups: Option<Vec<crate::peers::qemu::QemuSetup>>,
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

/// CLOCK_MONOTONIC in ns: the VMM's function, the clock vcompare's phase marks use.
pub use vcompare_vmm::process::monotonic_ns;

/// Spawns `cmd` with stdout/stderr piped and notes the spawn instant.
pub fn spawn_timed(mut cmd: Command, label: &str) -> Result<Timed> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let spawn_mono_ns = monotonic_ns();
    let started = Instant::now();
    let child = cmd.spawn().map_err(|source| BenchError::Spawn {
        cmd: label.to_string(),
        source,
    })?;
    Ok(Timed {
        child,
        spawn_mono_ns,
        started,
    })
}

impl Timed {
    /// Waits for exit (reading output concurrently so a chatty child cannot block), with a
    /// timeout after which the child is killed. The end instant comes from [`wait_exit`], the
    /// one exit detector every subject shares.
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
        let left = timeout.saturating_sub(self.started.elapsed());
        let exited = wait_exit(&mut self.child, left).map_err(|source| BenchError::Spawn {
            cmd: label.to_string(),
            source,
        })?;
        let Some((status, ended)) = exited else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return Err(BenchError::Timeout {
                cmd: label.to_string(),
                secs: timeout.as_secs(),
                detail: "no exit".into(),
            });
        };
        let wall_ns = ended.duration_since(self.started).as_nanos() as u64;
        Ok(TimedOutput {
            wall_ns,
            status,
            stdout: t_out.join().unwrap_or_default(),
            stderr: t_err.join().unwrap_or_default(),
        })
    }
}

/// Waits up to `timeout` for `child` to exit and returns its status with the instant the exit
/// was seen, or `None` if it still runs. The end event of every timed subject: the child's
/// pidfd (`pidfd_open`) becomes readable when the process exits and `poll` wakes at once, so
/// the instant is exact instead of up to one polling interval late (a 200 µs `try_wait` loop
/// added up to 15 % to the ≈1.3 ms host floor). The child is reaped afterwards, so the clock
/// is read before `wait`'s own cost.
pub fn wait_exit(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<(std::process::ExitStatus, Instant)>> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    if let Some(st) = child.try_wait()? {
        return Ok(Some((st, Instant::now())));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; `child` is not yet
    // reaped (we hold it), so its pid cannot have been reused.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0u32) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        let now = Instant::now();
        if n > 0 {
            return Ok(Some((child.wait()?, now)));
        }
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        if now >= deadline {
            return Ok(child.try_wait()?.map(|st| (st, now)));
        }
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

/// One mapping of `/proc/PID/smaps`: what [`guest_ram`] needs to tell guest RAM apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First host address.
    pub start: u64,
    /// One past the last host address.
    pub end: u64,
    /// Permissions as smaps prints them, e.g. `rw-p`.
    pub perms: String,
    /// The mapped file, `[heap]`-style name, or empty for anonymous memory.
    pub path: String,
    /// Resident bytes.
    pub rss: u64,
    /// Proportional set size in bytes (shared pages divided among their sharers).
    pub pss: u64,
}

impl Mapping {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.end - self.start
    }
}

/// Parses the text of `/proc/PID/smaps` into mappings (pure, so it can be tested on a fixture).
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for l in text.lines() {
        let mut f = l.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = f.next().unwrap_or("").to_string();
                // offset, device, inode, then the (possibly space-containing) path.
                let path = f.skip(3).collect::<Vec<_>>().join(" ");
                out.push(Mapping {
                    start,
                    end,
                    perms,
                    path,
                    rss: 0,
                    pss: 0,
                });
                continue;
            }
        }
        if let Some(m) = out.last_mut() {
            if let Some(v) = proc_kb_field(l, "Rss") {
                m.rss = v;
            } else if let Some(v) = proc_kb_field(l, "Pss") {
                m.pss = v;
            }
        }
    }
    out
}

/// The mappings that hold a VMM's guest RAM of `ram_bytes`, as an index range into `maps`:
/// ONE rule for every VMM (ours, QEMU, Firecracker), so "VMM overhead" means the same thing
/// for all of them. Guest RAM is the run of address-contiguous private writable mappings
/// (`rw-p`: anonymous memory, or a private file mapping placed inside guest RAM — our VMM maps
/// the kernel's ELF segments copy-on-write there) whose sizes add up to exactly `ram_bytes`;
/// where several runs qualify, the one holding the largest single mapping. If none adds up
/// (the kernel merged guest RAM with a neighbouring mapping of the same flags), the smallest
/// private writable mapping at least `ram_bytes` large.
pub fn guest_ram(maps: &[Mapping], ram_bytes: u64) -> Option<std::ops::Range<usize>> {
    let rw = |m: &Mapping| m.perms == "rw-p";
    let mut best: Option<(u64, std::ops::Range<usize>)> = None;
    for i in 0..maps.len() {
        if !rw(&maps[i]) {
            continue;
        }
        let (mut sum, mut largest) = (0u64, 0u64);
        for j in i..maps.len() {
            if !rw(&maps[j]) || (j > i && maps[j].start != maps[j - 1].end) {
                break;
            }
            sum += maps[j].size();
            largest = largest.max(maps[j].size());
            if sum == ram_bytes {
                if best.as_ref().is_none_or(|b| largest > b.0) {
                    best = Some((largest, i..j + 1));
                }
                break;
            }
            if sum > ram_bytes {
                break;
            }
        }
    }
    best.map(|b| b.1).or_else(|| {
        maps.iter()
            .enumerate()
            .filter(|(_, m)| rw(m) && m.size() >= ram_bytes)
            .min_by_key(|(_, m)| m.size())
            .map(|(i, _)| i..i + 1)
    })
}

/// A VMM process's memory, split by [`guest_ram`]: the one VMM-overhead measurement every VM
/// subject gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmmMemory {
    /// Total RSS of the VMM process (smaps_rollup), bytes.
    pub rss: u64,
    /// Total PSS, bytes (shared libraries divided among the processes that map them).
    pub pss: u64,
    /// RSS of the guest-RAM mappings: guest pages touched so far, bytes.
    pub guest_rss: u64,
    /// PSS of the guest-RAM mappings, bytes.
    pub guest_pss: u64,
}

impl VmmMemory {
    /// VMM overhead by RSS: everything resident that is not guest RAM.
    pub fn overhead_rss(&self) -> u64 {
        self.rss.saturating_sub(self.guest_rss)
    }
    /// VMM overhead by PSS (shared libraries counted by share, not in full).
    pub fn overhead_pss(&self) -> u64 {
        self.pss.saturating_sub(self.guest_pss)
    }
}

/// Reads `pid`'s smaps_rollup and smaps and splits them with [`guest_ram`] for `ram_bytes` of
/// guest RAM; `None` if the process is gone or no guest-RAM mapping was found.
pub fn vmm_memory(pid: u32, ram_bytes: u64) -> Option<VmmMemory> {
    let (rss, pss) = rss_pss(pid)?;
    let maps = parse_smaps(&std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?);
    let r = guest_ram(&maps, ram_bytes)?;
    Some(VmmMemory {
        rss,
        pss,
        guest_rss: maps[r.clone()].iter().map(|m| m.rss).sum(),
        guest_pss: maps[r].iter().map(|m| m.pss).sum(),
    })
}

/// Prose of the rule in [`guest_ram`] and [`VmmMemory`], carried by every VMM-overhead
/// series so the report states it.
pub const VMM_OVERHEAD_RULE: &str = "guest RAM = the address-contiguous private writable mappings in /proc/PID/smaps whose sizes add up to exactly the guest RAM size (anonymous memory, or a private file mapping inside it: our VMM maps the kernel's ELF segments copy-on-write into guest RAM, QEMU copies the kernel into it), else the smallest private writable mapping at least that large; overhead = process total (smaps_rollup) − those mappings";

#[cfg(test)]
mod tests {
    use super::*;

    /// A mapping header line plus its Size/Rss/Pss lines, as smaps prints them.
    fn entry(
        start: u64,
        size_kb: u64,
        perms: &str,
        path: &str,
        rss_kb: u64,
        pss_kb: u64,
    ) -> String {
        format!(
            "{start:x}-{:x} {perms} 00000000 00:00 0    {path}\nSize:  {size_kb} kB\nRss:  {rss_kb} kB\nPss:  {pss_kb} kB\nVmFlags: rd wr mr mw me dc dd\n",
            start + size_kb * 1024
        )
    }

    const MIB_KB: u64 = 1024;

    #[test]
    fn guest_ram_includes_a_file_mapped_kernel_inside_it() {
        // Our VMM: 256 MiB of anonymous RAM with the kernel's segments mapped over part of it,
        // next to an unrelated anonymous mapping and a shared library.
        let base = 0x7f00_0000_0000u64;
        let mut t = entry(base - 4096 * 4, 16, "rw-p", "", 16, 16);
        t += &entry(base, 16 * MIB_KB, "rw-p", "", 100, 100);
        t += &entry(
            base + (16 << 20),
            20 * MIB_KB,
            "rw-p",
            "/k/vmlinux",
            8000,
            4000,
        );
        t += &entry(base + (36 << 20), 220 * MIB_KB, "rw-p", "", 900, 900);
        t += &entry(
            base + (256 << 20),
            2048,
            "r-xp",
            "/usr/lib/libc.so.6",
            1500,
            150,
        );
        let maps = parse_smaps(&t);
        assert_eq!(maps.len(), 5);
        assert_eq!(maps[2].path, "/k/vmlinux");
        let r = guest_ram(&maps, 256 << 20).unwrap();
        assert_eq!(r, 1..4);
        let rss: u64 = maps[r].iter().map(|m| m.rss).sum();
        assert_eq!(rss, 9000 * 1024);
    }

    #[test]
    fn guest_ram_is_one_anonymous_mapping_for_qemu_and_falls_back_when_merged() {
        let base = 0x7f00_0000_0000u64;
        let mut t = entry(base, 64 * MIB_KB, "rw-p", "", 10, 10);
        t += &entry(base + (80 << 20), 256 * MIB_KB, "rw-p", "", 300, 300);
        t += &entry(base + (336 << 20), 4, "---p", "", 0, 0);
        let maps = parse_smaps(&t);
        assert_eq!(guest_ram(&maps, 256 << 20), Some(1..2));
        // Merged with a neighbour: the smallest private writable mapping that is large enough.
        let t = entry(base, 300 * MIB_KB, "rw-p", "", 10, 10)
            + &entry(base + (400 << 20), 1024 * MIB_KB, "rw-p", "", 1, 1);
        assert_eq!(guest_ram(&parse_smaps(&t), 256 << 20), Some(0..1));
        assert_eq!(guest_ram(&parse_smaps(&t), 2048 << 20), None);
    }

    #[test]
    fn vmm_overhead_subtracts_guest_ram_from_both_rss_and_pss() {
        let m = VmmMemory {
            rss: 100,
            pss: 60,
            guest_rss: 30,
            guest_pss: 30,
        };
        assert_eq!((m.overhead_rss(), m.overhead_pss()), (70, 30));
    }

    #[test]
    fn wait_exit_sees_an_exit_and_honours_its_timeout() {
        let mut c = Command::new("true").spawn().unwrap();
        let (st, _) = wait_exit(&mut c, Duration::from_secs(10)).unwrap().unwrap();
        assert!(st.success());
        let mut c = Command::new("sleep").arg("5").spawn().unwrap();
        assert!(wait_exit(&mut c, Duration::from_millis(20))
            .unwrap()
            .is_none());
        c.kill().unwrap();
        let (st, _) = wait_exit(&mut c, Duration::from_secs(10)).unwrap().unwrap();
        assert!(!st.success());
    }
}
