//! Shared-directory I/O (issue #6): sequential write and read throughput and small-file
//! metadata cost in every place a workload can keep files — a host directory (probe run on
//! the host), the same directory bind-mounted into a container, a managed volume in a
//! container, the same host directory shared into a VM over virtio-9p, and the VM's own ext4
//! root disk — reported as ratios to the host, in one run.
//!
//! Each place runs one `probe io PATH MIB --small-files N`: write + fsync, O_DIRECT read-back
//! and create + stat + delete of N files, all timed inside by the probe and printed on one
//! JSON line. A runtime's places share one instance (`sh -c "cat /proc/mounts && probe io …
//! && probe io …"`), so a VM pays one boot per iteration for both of its places, and the
//! mount table tells which file system each path really is. VM sizes are smaller by default:
//! on a nested PVM host every guest kernel instruction is emulated (a 4 MiB write through the
//! guest page cache takes ~25 s), while MiB/s and time per file stay comparable across sizes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{alternating_rounds, cost, host_command, run_instance, vm_failed, vm_usable, Plan};
use crate::error::{io_at, BenchError, Result};
use crate::harness::{json_lines, output, Harness};
use crate::results::{Results, ShareSeries};

/// Workload sizes, from `vcompare bench --share-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// MiB written and read per run on the host and in containers (the issue's 256).
    pub mib: u64,
    /// Small files per run on the host and in containers (the issue's 2,000).
    pub files: u64,
    /// MiB per run in a VM (each MiB costs seconds in a nested guest).
    pub vm_mib: u64,
    /// Small files per run in a VM (each costs ~1 s over 9p in a nested guest).
    pub vm_files: u64,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            mib: 256,
            files: 2000,
            vm_mib: 4,
            vm_files: 100,
        }
    }
}

impl Sizes {
    /// (MiB, files) for a place run by `subject`.
    pub fn of(&self, subject: &str) -> (u64, u64) {
        if subject == "vm" {
            (self.vm_mib, self.vm_files)
        } else {
            (self.mib, self.files)
        }
    }
}

/// One place a workload writes to.
#[derive(Debug)]
pub struct Place {
    /// Row name in the report and results.
    pub name: &'static str,
    /// host, container or vm: the runtime that executes the probe.
    pub subject: &'static str,
    /// The path the probe writes under, as the workload sees it ("" on the host: the scratch
    /// directory that is also shared into the instances).
    pub path: &'static str,
    /// How the path reaches the workload, stated next to the figures.
    pub how: &'static str,
}

/// Where the shared host directory appears in containers and VMs.
const SHARE_PATH: &str = "/share";
/// Where the managed volume appears in containers.
const VOLUME_PATH: &str = "/vol";

/// Every place, in report order; the host is the reference of every ratio.
pub const PLACES: &[Place] = &[
    Place {
        name: "host",
        subject: "host",
        path: "",
        how: "a directory under the data root, probe run directly on the host",
    },
    Place {
        name: "container bind",
        subject: "container",
        path: SHARE_PATH,
        how: "the host directory bind-mounted (`-v HOSTDIR:/share`)",
    },
    Place {
        name: "container volume",
        subject: "container",
        path: VOLUME_PATH,
        how: "a managed volume (`vcompare volume create`, `-v NAME:/vol`)",
    },
    Place {
        name: "vm 9p",
        subject: "vm",
        path: SHARE_PATH,
        how: "the host directory over virtio-9p (`-v HOSTDIR:/share`; msize 512000, cache=mmap: file data through the guest page cache, metadata never cached)",
    },
    Place {
        name: "vm root disk",
        subject: "vm",
        path: "/tmp",
        how: "/tmp on the VM's own root disk (ext4 on virtio-blk, the instance's disk copy)",
    },
];

/// The places executed by `subject`.
fn places_of(subject: &str) -> Vec<&'static Place> {
    PLACES.iter().filter(|p| p.subject == subject).collect()
}

/// `probe io PATH MIB --small-files N` arguments after the program name.
pub fn probe_args(path: &str, mib: u64, files: u64) -> Vec<String> {
    vec![
        "io".into(),
        path.into(),
        mib.to_string(),
        "--small-files".into(),
        files.to_string(),
    ]
}

/// The shell script an instance runs: its mount table, then one probe run per path, stopping
/// at the first failure so a broken place is reported instead of silently missing.
pub fn script(paths: &[&str], mib: u64, files: u64) -> String {
    let mut parts = vec!["cat /proc/mounts".to_string()];
    parts.extend(
        paths
            .iter()
            .map(|p| format!("/bin/probe {}", probe_args(p, mib, files).join(" "))),
    );
    parts.join(" && ")
}

/// File system type of `path` in a /proc/mounts text: the entry with the longest mount point
/// containing it (the last such entry, as later mounts hide earlier ones).
pub fn fstype_of(mounts: &str, path: &str) -> Option<String> {
    let inside = |mnt: &str| {
        mnt == "/"
            || path == mnt
            || path
                .strip_prefix(mnt)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[1].starts_with('/') && inside(f[1])).then(|| (f[1].len(), f[2]))
        })
        .fold(None, |best: Option<(usize, &str)>, cur| match best {
            Some(b) if b.0 > cur.0 => Some(b),
            _ => Some(cur),
        })
        .map(|(_, t)| t.to_string())
}

/// (write MiB/s, read MiB/s, metadata ns) from one `probe io … --small-files N` line.
pub fn sample(line: &Value) -> Option<(f64, f64, u64)> {
    let f = |k: &str| line.get(k).and_then(Value::as_f64);
    let meta = line.get("small_files")?.get("elapsed_ns")?.as_u64()?;
    Some((f("write_mib_s")?, f("read_mib_s")?, meta))
}

/// Probe JSON lines of one runtime's run, keyed by the path the probe reported.
struct Run {
    /// The workload's /proc/mounts (or the host's).
    mounts: String,
    /// The probe's `io` lines.
    lines: Vec<Value>,
}

impl Run {
    fn from_stdout(stdout: &[u8]) -> Run {
        Run {
            mounts: String::from_utf8_lossy(stdout).into_owned(),
            lines: json_lines(stdout),
        }
    }

    fn line_for(&self, path: &str) -> Option<&Value> {
        self.lines
            .iter()
            .find(|l| l.get("path").and_then(Value::as_str) == Some(path))
    }
}

/// The host directory shared into instances and the managed volume, made for this run.
struct Setup {
    /// Host directory: the host place, and the bind mount / 9p share source.
    dir: PathBuf,
    /// Managed volume name.
    volume: String,
}

impl Setup {
    /// Creates the directory world-writable (a container's root maps to an unprivileged
    /// host uid) and the volume.
    fn create(h: &mut Harness) -> Result<Setup> {
        use std::os::unix::fs::PermissionsExt;
        let dir = h.scratch.join("share");
        std::fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777))
            .map_err(io_at(&dir))?;
        let volume = h.fresh_name("vol");
        h.vcompare_ok(&["volume", "create", &volume])?;
        Ok(Setup { dir, volume })
    }

    /// `-v` flags giving `subject` its places.
    fn volume_args(&self, subject: &str) -> Vec<String> {
        let share = format!("{}:{SHARE_PATH}", self.dir.display());
        match subject {
            "container" => vec![
                "-v".into(),
                share,
                "-v".into(),
                format!("{}:{VOLUME_PATH}", self.volume),
            ],
            _ => vec!["-v".into(), share],
        }
    }

    /// Removes the volume (the directory goes with the harness's scratch directory).
    fn remove(&self, h: &Harness) {
        let _ = h.vcompare_ok(&["volume", "rm", &self.volume]);
    }
}

/// Host path of a place: the shared directory for the host itself.
fn host_path(setup: &Setup) -> String {
    setup.dir.to_string_lossy().into_owned()
}

/// One probe run on the host, with the image's probe binary and environment.
fn host_once(h: &Harness, setup: &Setup, sizes: &Sizes) -> Result<Run> {
    let probe = h.rootfs.join("bin/probe");
    let mut c = host_command(&probe);
    c.args(probe_args(&host_path(setup), sizes.mib, sizes.files));
    let out = output(c, "host probe io")?;
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").map_err(io_at("/proc/self/mounts"))?;
    Ok(Run {
        mounts,
        lines: json_lines(&out.stdout),
    })
}

/// Generous limit for one instance's script: the VM estimate doubled, 60 s at least.
fn timeout(subject: &str, sizes: &Sizes) -> Duration {
    Duration::from_millis((2 * run_cost_ms(subject, sizes)).max(60_000))
}

/// One instance of `subject` running the probe in `paths`, in that order.
fn instance_once(
    h: &mut Harness,
    setup: &Setup,
    subject: &str,
    paths: &[&str],
    sizes: &Sizes,
) -> Result<Run> {
    let (mib, files) = sizes.of(subject);
    let s = script(paths, mib, files);
    let vols = setup.volume_args(subject);
    let extra: Vec<&str> = vols.iter().map(String::as_str).collect();
    let cmd = ["/bin/sh", "-c", &s];
    let out = run_instance(
        h,
        subject,
        &extra,
        &cmd,
        "probe io",
        timeout(subject, sizes),
    )?;
    Ok(Run::from_stdout(&out))
}

/// The series of `place`, created on first use.
fn series<'a>(results: &'a mut Results, place: &Place, sizes: &Sizes) -> &'a mut ShareSeries {
    let i = match results.share.iter().position(|s| s.place == place.name) {
        Some(i) => i,
        None => {
            let (mib, files) = sizes.of(place.subject);
            let path = if place.path.is_empty() {
                "HOSTDIR"
            } else {
                place.path
            };
            results.share.push(ShareSeries {
                place: place.name.into(),
                subject: place.subject.into(),
                definition: place.how.into(),
                fstype: String::new(),
                args: probe_args(path, mib, files),
                mib,
                files,
                write_mib_s: Vec::new(),
                read_mib_s: Vec::new(),
                metadata_ns: Vec::new(),
                raw: Vec::new(),
            });
            results.share.len() - 1
        }
    };
    &mut results.share[i]
}

/// Records the samples of `run` for `places` (`path` = how the probe saw each one).
fn record(
    results: &mut Results,
    run: &Run,
    places: &[(&Place, String)],
    sizes: &Sizes,
) -> Result<()> {
    for (place, path) in places {
        let line = run.line_for(path).ok_or_else(|| BenchError::Parse {
            what: format!("probe io in {}", place.name),
            detail: format!("no JSON line for {path}"),
        })?;
        let (w, r, m) = sample(line).ok_or_else(|| BenchError::Parse {
            what: format!("probe io in {}", place.name),
            detail: format!("missing throughput or small_files fields: {line}"),
        })?;
        let s = series(results, place, sizes);
        s.fstype = fstype_of(&run.mounts, path).unwrap_or_else(|| "unknown".into());
        s.write_mib_s.push(w);
        s.read_mib_s.push(r);
        s.metadata_ns.push(m);
        s.raw.push(line.clone());
    }
    Ok(())
}

/// One round of `subject`: its places in `round`-rotated order, recorded.
fn round_of(
    h: &mut Harness,
    setup: &Setup,
    subject: &str,
    round: usize,
    sizes: &Sizes,
    results: &mut Results,
) -> Result<()> {
    let mut places = places_of(subject);
    let n = places.len().max(1);
    places.rotate_left(round % n);
    let run = match subject {
        "host" => host_once(h, setup, sizes)?,
        _ => {
            let paths: Vec<&str> = places.iter().map(|p| p.path).collect();
            instance_once(h, setup, subject, &paths, sizes)?
        }
    };
    let keyed: Vec<(&Place, String)> = places
        .into_iter()
        .map(|p| {
            let path = if p.path.is_empty() {
                host_path(setup)
            } else {
                p.path.to_string()
            };
            (p, path)
        })
        .collect();
    record(results, &run, &keyed, sizes)
}

/// Estimated ms of one run of `subject` (its places together), for the progress bar and the
/// instance timeout: host ≈ 8 ms/MiB + 0.1 ms/file here; nested VM ≈ 10 s/MiB and 1.5 s per
/// file per place, plus the boot.
fn run_cost_ms(subject: &str, sizes: &Sizes) -> u64 {
    let (mib, files) = sizes.of(subject);
    let per_place =
        |ms_per_mib: u64, us_per_file: u64| mib * ms_per_mib + files * us_per_file / 1000;
    match subject {
        "host" => cost::HOST + per_place(8, 100),
        "container" => cost::CONTAINER + 2 * per_place(8, 100),
        _ => cost::VM + 2 * per_place(10_000, 1_500_000),
    }
}

/// VM boots of the suite: as the CPU suite, ⌈vm_runs / 3⌉.
fn vm_boots(h: &Harness) -> usize {
    super::cpu::vm_boots(h.vm_runs)
}

/// Estimated ms of the whole suite for `plan`.
pub fn estimate_ms(h: &Harness, plan: &Plan) -> u64 {
    let s = &plan.share;
    let local: u64 = ["host", "container"]
        .iter()
        .filter(|m| plan.mode(m))
        .map(|m| run_cost_ms(m, s))
        .sum();
    let vm = plan.mode("vm") as u64 * vm_boots(h) as u64 * run_cost_ms("vm", s);
    h.runs as u64 * local + vm
}

/// VM boots, each measuring the 9p share and the root disk, the order rotating per boot as in
/// every suite (with one boot — the default ⌈vm_runs / 3⌉ — there is only the first order,
/// said so in the notes).
fn vm_rounds(h: &mut Harness, plan: &Plan, setup: &Setup, results: &mut Results) {
    let boots = vm_boots(h);
    let est = run_cost_ms("vm", &plan.share);
    if !vm_usable(h, plan, results, "share", boots as u64 * est) {
        return;
    }
    super::vm_warm_up(h, results, "vm");
    if boots % 2 == 1 {
        results.notes.push(format!("share vm: {boots} boot(s); the place order rotates per boot (boot 1: 9p share first, boot 2: root disk first, …), so with an odd count the 9p-first order ran once more"));
    }
    for round in 0..boots {
        let r = round_of(h, setup, "vm", round, &plan.share, results);
        h.advance(est, &format!("share vm {}/{boots}", round + 1));
        if let Err(e) = r {
            vm_failed(h, results, "share", &e);
            return;
        }
    }
}

/// Runs the share suite: host/container rounds, then VM boots, then removes the volume.
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    let setup = match Setup::create(h) {
        Ok(s) => s,
        Err(e) => {
            results.skip("share", e.to_string());
            return;
        }
    };
    let sizes = plan.share;
    alternating_rounds(
        h,
        plan,
        results,
        "share",
        |subject| run_cost_ms(subject, &sizes),
        |h, subject, round, results| round_of(h, &setup, subject, round, &sizes, results),
    );
    vm_rounds(h, plan, &setup, results);
    setup.remove(h);
    let _ = std::fs::remove_dir_all(Path::new(&setup.dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstype_picks_longest_mount() {
        let m = "/dev/vda / ext4 rw 0 0\nvcshare0 /share 9p rw 0 0\nshm /dev/shm tmpfs rw 0 0\n{\"workload\":\"io\"}\n";
        assert_eq!(fstype_of(m, "/share").as_deref(), Some("9p"));
        assert_eq!(fstype_of(m, "/tmp").as_deref(), Some("ext4"));
        assert_eq!(fstype_of(m, "/sharex").as_deref(), Some("ext4"));
        assert_eq!(fstype_of(m, "/dev/shm/x").as_deref(), Some("tmpfs"));
    }

    #[test]
    fn script_stops_at_first_failure() {
        assert_eq!(
            script(&["/share", "/tmp"], 4, 10),
            "cat /proc/mounts && /bin/probe io /share 4 --small-files 10 && /bin/probe io /tmp 4 --small-files 10"
        );
    }

    #[test]
    fn sample_reads_probe_line() {
        let v: Value = serde_json::from_str(r#"{"workload":"io","path":"/tmp","mib":4,"write_mib_s":0.5,"read_mib_s":3.0,"small_files":{"elapsed_ns":1000}}"#).unwrap();
        assert_eq!(sample(&v), Some((0.5, 3.0, 1000)));
    }

    #[test]
    fn vm_uses_its_own_sizes() {
        let s = Sizes::default();
        assert_eq!(s.of("vm"), (4, 100));
        assert_eq!(s.of("container"), (256, 2000));
    }
}
