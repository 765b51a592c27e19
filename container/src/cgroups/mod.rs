//! Resource limits through cgroups: `--memory`, `--cpus`, `--pids-limit`, enforced by the
//! kernel, plus OOM-kill detection and current memory use for `inspect`.
//!
//! This is a small module of our own rather than the `cgroups-rs` crate: we need only three
//! controllers and four files each, `cgroups-rs` pulls in a different `nix` major version and
//! creates every controller directory on v1 (each `mkdir` in a v1 hierarchy costs startup time
//! we are measured on), and we must handle this host's *hybrid* layout (controllers on v1,
//! an empty cgroup2 at `/sys/fs/cgroup/unified`) explicitly.
//!
//! Placement: on v1 the container's cgroup is a child `vcompare-<id>` of the calling process's
//! own cgroup in each controller (so whoever limits vcompare also limits its containers); on v2
//! it is `/sys/fs/cgroup/vcompare/<id>` because a v2 cgroup that holds processes cannot delegate
//! controllers to children ("no internal processes").

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

mod v1;
mod v2;

pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// Which cgroup interface the host offers for the controllers we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    /// One hierarchy per controller (also the hybrid layout of this development host).
    V1,
    /// The unified hierarchy mounted at /sys/fs/cgroup.
    V2,
}

/// Detects the cgroup version: v2 only when /sys/fs/cgroup itself is cgroup2; a tmpfs there
/// (v1 or hybrid) means the controllers live on v1.
pub fn detect() -> Version {
    match nix::sys::statfs::statfs(CGROUP_ROOT) {
        Ok(s) if s.filesystem_type().0 == CGROUP2_SUPER_MAGIC => Version::V2,
        _ => Version::V1,
    }
}

/// The limits the user asked for; `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    /// `--memory` in bytes (swap is limited to the same total where the kernel allows).
    pub memory_bytes: Option<u64>,
    /// `--cpus`: fraction of CPUs, turned into a CFS quota per 100 ms period.
    pub cpus: Option<f64>,
    /// `--pids-limit`: maximum number of tasks.
    pub pids_limit: Option<i64>,
}

pub(crate) const CFS_PERIOD_US: u64 = 100_000;

/// The CFS quota (µs per [`CFS_PERIOD_US`]) for `--cpus`, at least 1 ms: the kernel rejects
/// smaller quotas. Shared by v1 (`cpu.cfs_quota_us`) and v2 (`cpu.max`).
pub(crate) fn cfs_quota_us(cpus: f64) -> u64 {
    ((cpus * CFS_PERIOD_US as f64).round() as u64).max(1000)
}

/// The `pids.max` value for `--pids-limit` (same file and syntax on v1 and v2): 0 or less means
/// unlimited, as with Docker.
pub(crate) fn pids_max_value(limit: i64) -> String {
    if limit <= 0 {
        "max".to_string()
    } else {
        limit.to_string()
    }
}

/// One container's cgroup: a directory per v1 controller, or one v2 directory.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// Interface version.
    pub version: Version,
    /// (controller, directory) pairs; for v2 a single ("unified", dir) entry.
    pub dirs: Vec<(&'static str, PathBuf)>,
    /// Whether this handle created the directories (and so must remove them).
    pub(crate) owned: bool,
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::Cgroup {
        path: path.to_path_buf(),
        msg: format!("writing {value:?} failed: {e}"),
    })
}

pub(crate) fn mkdir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Cgroup {
            path: path.to_path_buf(),
            msg: format!("cannot create the directory: {e}"),
        }),
    }
}

/// The `(controllers, path)` of each line of a `/proc/PID/cgroup` text: `"memory"` or
/// `"cpu,cpuacct"` for a v1 hierarchy, `""` for the v2 one, a named hierarchy as
/// `"name=systemd"`.
pub(super) fn proc_cgroup_entries(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().map(|line| {
        let mut parts = line.splitn(3, ':');
        let _hierarchy = parts.next();
        (parts.next().unwrap_or(""), parts.next().unwrap_or("/"))
    })
}

impl Cgroup {
    /// Creates the container's cgroup named after `id` and writes the limits. The memory
    /// controller is always used (usage, OOM detection, cleanup); cpu and pids only when limited.
    pub fn create(id: &str, res: &Resources) -> Result<Cgroup> {
        if let Some(c) = res.cpus {
            if c.is_nan() || c <= 0.0 {
                return Err(Error::InvalidConfig(format!("--cpus must be > 0, got {c}")));
            }
        }
        match detect() {
            Version::V1 => Self::create_v1(id, res),
            Version::V2 => Self::create_v2(Path::new(CGROUP_ROOT), id, res),
        }
    }

    /// The cgroup a running process is in (host view of `/proc/PID/cgroup`), for `exec` and
    /// `inspect`. Only the controllers vcompare uses; the handle does not own the directories.
    pub fn of_pid(pid: i32) -> Result<Cgroup> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|_| Error::NotRunning(pid))?;
        Ok(Self::from_proc_cgroup(
            &text,
            detect(),
            Path::new(CGROUP_ROOT),
        ))
    }

    /// [`Cgroup::of_pid`] for the text of a `/proc/PID/cgroup` file, with the hierarchy mounted
    /// at `root` (a fake tree in the unit tests).
    fn from_proc_cgroup(text: &str, version: Version, root: &Path) -> Cgroup {
        let mut dirs = Vec::new();
        for (ctrls, path) in proc_cgroup_entries(text) {
            let rel = path.trim_start_matches('/');
            match version {
                Version::V2 if ctrls.is_empty() => dirs.push(("unified", root.join(rel))),
                Version::V1 => {
                    for c in ["memory", "cpu", "pids"] {
                        if ctrls.split(',').any(|x| x == c) {
                            dirs.push((c, root.join(c).join(rel)));
                        }
                    }
                }
                _ => {}
            }
        }
        Cgroup {
            version,
            dirs,
            owned: false,
        }
    }

    /// Takes ownership of an existing cgroup directory (left by a crashed run) so that
    /// [`Cgroup::destroy`] kills what is in it and removes it.
    pub fn adopt(dir: PathBuf) -> Cgroup {
        Cgroup {
            version: detect(),
            dirs: vec![("adopted", dir)],
            owned: true,
        }
    }

    /// Moves `pid` (and so all its future children) into the cgroup.
    pub fn add_pid(&self, pid: i32) -> Result<()> {
        for (_, dir) in &self.dirs {
            write_file(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn memory_dir(&self) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|(c, _)| *c == "memory" || *c == "unified")
            .map(|(_, d)| d.as_path())
    }

    /// The memory cgroup directory (host path), for `inspect`.
    pub fn memory_path(&self) -> Option<PathBuf> {
        self.memory_dir().map(Path::to_path_buf)
    }

    /// How many times the kernel's OOM killer killed a process in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = self.memory_dir() else {
            return 0;
        };
        let file = match self.version {
            Version::V1 => dir.join("memory.oom_control"),
            Version::V2 => dir.join("memory.events"),
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let count = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("oom_kill ")
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        if count == 0 && self.version == Version::V1 {
            // Kernels without the oom_kill counter: a hit limit plus under_oom is the signal.
            if text.lines().any(|l| l == "under_oom 1") {
                return 1;
            }
        }
        count
    }

    /// Current memory use in bytes (`memory.usage_in_bytes` / `memory.current`).
    pub fn memory_current(&self) -> Option<u64> {
        let dir = self.memory_dir()?;
        let file = match self.version {
            Version::V1 => dir.join("memory.usage_in_bytes"),
            Version::V2 => dir.join("memory.current"),
        };
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// The memory limit in bytes, if one is set.
    pub fn memory_limit(&self) -> Option<u64> {
        let dir = self.memory_dir()?;
        let file = match self.version {
            Version::V1 => dir.join("memory.limit_in_bytes"),
            Version::V2 => dir.join("memory.max"),
        };
        let v: u64 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
        (v < (1u64 << 62)).then_some(v)
    }

    fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for (_, dir) in &self.dirs {
            if let Ok(t) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Kills whatever is still in the cgroup and removes its directories. Normally the cgroup is
    /// already empty (the PID namespace dies with its PID 1), so this is one `rmdir` per
    /// directory; the retry loop only runs when stragglers are still exiting.
    pub fn destroy(&self) -> Result<()> {
        if !self.owned {
            return Ok(());
        }
        let mut first_err = None;
        for (_, dir) in self.dirs.iter().rev() {
            let mut err = None;
            for attempt in 0..200 {
                match std::fs::remove_dir(dir) {
                    Ok(()) => {
                        err = None;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        err = None;
                        break;
                    }
                    Err(e) => {
                        err = Some(Error::Cgroup {
                            path: dir.clone(),
                            msg: format!("cannot remove it: {e}"),
                        });
                        for pid in self.pids() {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                        std::thread::sleep(std::time::Duration::from_millis(if attempt < 20 {
                            1
                        } else {
                            10
                        }));
                    }
                }
            }
            if let Some(e) = err {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
