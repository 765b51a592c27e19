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

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
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

const CFS_PERIOD_US: u64 = 100_000;

/// The CFS quota (µs per [`CFS_PERIOD_US`]) for `--cpus`, at least 1 ms: the kernel rejects
/// smaller quotas. Shared by v1 (`cpu.cfs_quota_us`) and v2 (`cpu.max`).
fn cfs_quota_us(cpus: f64) -> u64 {
    ((cpus * CFS_PERIOD_US as f64).round() as u64).max(1000)
}

/// The `pids.max` value for `--pids-limit` (same file and syntax on v1 and v2): 0 or less means
/// unlimited, as with Docker.
fn pids_max_value(limit: i64) -> String {
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
    owned: bool,
}

fn write_file(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::Cgroup {
        path: path.to_path_buf(),
        msg: format!("writing {value:?} failed: {e}"),
    })
}

fn mkdir(path: &Path) -> Result<()> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Cgroup {
            path: path.to_path_buf(),
            msg: format!("cannot create the directory: {e}"),
        }),
    }
}

/// The calling process's cgroup path for a v1 controller ("/" if not listed).
fn own_v1_path(controller: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("/"),
        );
        if ctrls.split(',').any(|c| c == controller) {
            return path.to_string();
        }
    }
    "/".to_string()
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

    fn create_v1(id: &str, res: &Resources) -> Result<Cgroup> {
        let mut cg = Cgroup {
            version: Version::V1,
            dirs: Vec::new(),
            owned: true,
        };
        let mut wanted: Vec<&'static str> = vec!["memory"];
        if res.cpus.is_some() {
            wanted.push("cpu");
        }
        if res.pids_limit.is_some() {
            wanted.push("pids");
        }
        for ctrl in wanted {
            let base = PathBuf::from(CGROUP_ROOT).join(ctrl);
            if !base.join("cgroup.procs").exists() {
                if ctrl == "memory" {
                    return Err(Error::Cgroup {
                        path: base,
                        msg: "the memory controller is not mounted".into(),
                    });
                }
                let _ = cg.destroy();
                return Err(Error::Cgroup {
                    path: base,
                    msg: format!(
                        "the {ctrl} controller is not mounted, so the limit cannot be enforced"
                    ),
                });
            }
            let own = own_v1_path(ctrl);
            let dir = base
                .join(own.trim_start_matches('/'))
                .join(format!("vcompare-{id}"));
            if let Err(e) = mkdir(&dir) {
                let _ = cg.destroy();
                return Err(e);
            }
            cg.dirs.push((ctrl, dir));
        }
        if let Err(e) = cg.apply_v1(res) {
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
    }

    fn apply_v1(&self, res: &Resources) -> Result<()> {
        for (ctrl, dir) in &self.dirs {
            match *ctrl {
                "memory" => {
                    if let Some(m) = res.memory_bytes {
                        write_file(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                        // memory+swap: same total, so the limit cannot be dodged by swapping.
                        // Absent when swap accounting is off, which is fine.
                        let sw = dir.join("memory.memsw.limit_in_bytes");
                        if sw.exists() {
                            let _ = std::fs::write(&sw, m.to_string());
                        }
                    }
                }
                "cpu" => {
                    if let Some(c) = res.cpus {
                        write_file(&dir.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
                        write_file(&dir.join("cpu.cfs_quota_us"), &cfs_quota_us(c).to_string())?;
                    }
                }
                "pids" => {
                    if let Some(p) = res.pids_limit {
                        write_file(&dir.join("pids.max"), &pids_max_value(p))?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `root` is the cgroup2 mount: [`CGROUP_ROOT`] in production, a fake tree in the unit tests
    /// (this hybrid development host has no v2 controllers to run this path for real).
    fn create_v2(root: &Path, id: &str, res: &Resources) -> Result<Cgroup> {
        let parent = root.join("vcompare");
        // Enabling is idempotent; one write per controller so a missing one does not block the
        // others. Failures are ignored here: the limit writes below report what matters.
        let enable = |dir: &Path| {
            for c in ["+memory", "+cpu", "+pids"] {
                let _ = std::fs::write(dir.join("cgroup.subtree_control"), c);
            }
        };
        enable(root);
        mkdir(&parent)?;
        enable(&parent);
        let dir = parent.join(id);
        mkdir(&dir)?;
        let cg = Cgroup {
            version: Version::V2,
            dirs: vec![("unified", dir.clone())],
            owned: true,
        };
        let apply = || -> Result<()> {
            if let Some(m) = res.memory_bytes {
                write_file(&dir.join("memory.max"), &m.to_string())?;
                let sw = dir.join("memory.swap.max");
                if sw.exists() {
                    let _ = std::fs::write(&sw, "0");
                }
            }
            if let Some(c) = res.cpus {
                write_file(
                    &dir.join("cpu.max"),
                    &format!("{} {CFS_PERIOD_US}", cfs_quota_us(c)),
                )?;
            }
            if let Some(p) = res.pids_limit {
                write_file(&dir.join("pids.max"), &pids_max_value(p))?;
            }
            Ok(())
        };
        if let Err(e) = apply() {
            let _ = cg.destroy();
            return Err(e);
        }
        Ok(cg)
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
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("/"),
            );
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

    /// v1 only: opens each controller's `tasks` file for the container's child to move *itself*
    /// by writing "0". A thread moving itself through `tasks` skips the global
    /// threadgroup lock whose write side waits for an RCU grace period (several ms on a busy
    /// host), which `cgroup.procs` writes always take. Opened by root in the parent, so the
    /// kernel's permission check (done against the opener's credentials) passes even though the
    /// child already runs in a user namespace. Empty on v2 (the parent writes `cgroup.procs`).
    pub fn open_self_attach_files(&self) -> Result<Vec<std::os::fd::OwnedFd>> {
        if self.version != Version::V1 {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (_, dir) in &self.dirs {
            let p = dir.join("tasks");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| Error::Cgroup {
                    path: p.clone(),
                    msg: format!("cannot open it: {e}"),
                })?;
            out.push(std::os::fd::OwnedFd::from(f));
        }
        Ok(out)
    }

    /// v2 only: an `O_PATH` fd of the cgroup directory for `clone3(CLONE_INTO_CGROUP)`.
    pub fn open_v2_dir(&self) -> Option<std::os::fd::OwnedFd> {
        if self.version != Version::V2 {
            return None;
        }
        let dir = &self.dirs.first()?.1;
        std::fs::File::open(dir)
            .ok()
            .map(std::os::fd::OwnedFd::from)
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

/// The v2 code run against a fake cgroup2 tree in a tempdir: this hybrid development host binds
/// every controller to v1, so `create_v2` cannot run for real here, while users' hosts are
/// v2-only. The fake stands in for the kernel's files; each test says where it differs.
#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    const MIB: u64 = 1 << 20;

    /// A cgroup2 root as the kernel presents it to a privileged process: the available
    /// controllers, and the parent `vcompare` cgroup left by an earlier container.
    fn fake_v2_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(
            root.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .unwrap();
        std::fs::create_dir(root.path().join("vcompare")).unwrap();
        root
    }

    /// Records every write to a `cgroup.subtree_control` file, one entry per write, in order.
    /// The kernel acts on each write separately; a regular file would keep only the last one,
    /// so the file is a FIFO drained by a thread.
    struct WriteLog {
        fifo: PathBuf,
        reader: std::thread::JoinHandle<String>,
    }

    /// Ends the recording: not a controller write (those start with '+' or '-').
    const END: &str = "#end";

    impl WriteLog {
        fn new(fifo: PathBuf) -> WriteLog {
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let path = fifo.clone();
            let reader = std::thread::spawn(move || {
                let mut all = String::new();
                while !all.ends_with(END) {
                    // Blocks until a writer opens; ends at EOF once every writer closed.
                    let mut f = std::fs::File::open(&path).unwrap();
                    f.read_to_string(&mut all).unwrap();
                }
                all.truncate(all.len() - END.len());
                all
            });
            WriteLog { fifo, reader }
        }

        /// The writes seen. Writes to a pipe are atomic, but two of them can be read in one go,
        /// so they are split again on the '+' each controller write starts with.
        fn finish(self) -> Vec<String> {
            std::fs::write(&self.fifo, END).unwrap();
            let all = self.reader.join().unwrap();
            all.split('+')
                .filter(|s| !s.is_empty())
                .map(|s| format!("+{s}"))
                .collect()
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn limits(memory: Option<u64>, cpus: Option<f64>, pids: Option<i64>) -> Resources {
        Resources {
            memory_bytes: memory,
            cpus,
            pids_limit: pids,
        }
    }

    #[test]
    fn v2_enables_controllers_creates_the_dir_and_writes_every_limit() {
        let root = fake_v2_root();
        let root_log = WriteLog::new(root.path().join("cgroup.subtree_control"));
        let parent = root.path().join("vcompare");
        let parent_log = WriteLog::new(parent.join("cgroup.subtree_control"));

        let res = limits(Some(64 * MIB), Some(1.5), Some(10));
        let cg = Cgroup::create_v2(root.path(), "abc123", &res).unwrap();

        let all = ["+memory", "+cpu", "+pids"];
        assert_eq!(root_log.finish(), all, "controllers enabled at the root");
        assert_eq!(parent_log.finish(), all, "controllers enabled in vcompare/");
        let dir = parent.join("abc123");
        assert!(dir.is_dir());
        assert_eq!(cg.version, Version::V2);
        assert_eq!(cg.dirs, [("unified", dir.clone())]);
        assert_eq!(read(&dir.join("memory.max")), "67108864");
        // 1.5 CPUs = 150 ms of CPU time per 100 ms period.
        assert_eq!(read(&dir.join("cpu.max")), "150000 100000");
        assert_eq!(read(&dir.join("pids.max")), "10");
        // No swap file (kernel without swap accounting): nothing is created for it.
        assert!(!dir.join("memory.swap.max").exists());
        assert_eq!(cg.memory_limit(), Some(64 * MIB));
        assert_eq!(cg.memory_path(), Some(dir.clone()));
        // v2 start path: clone3 into the directory, no v1 `tasks` self-attach.
        assert!(cg.open_self_attach_files().unwrap().is_empty());
        assert!(cg.open_v2_dir().is_some());
    }

    #[test]
    fn v2_disables_swap_where_the_kernel_offers_it() {
        let root = fake_v2_root();
        // The kernel populates a new cgroup's files on mkdir; stand in for it.
        let dir = root.path().join("vcompare/withswap");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("memory.swap.max"), "max\n").unwrap();
        Cgroup::create_v2(root.path(), "withswap", &limits(Some(32 * MIB), None, None)).unwrap();
        assert_eq!(read(&dir.join("memory.max")), "33554432");
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
    }

    #[test]
    fn v2_writes_no_limit_that_was_not_asked_for() {
        let root = fake_v2_root();
        let cg = Cgroup::create_v2(root.path(), "nolimits", &Resources::default()).unwrap();
        let dir = root.path().join("vcompare/nolimits");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.is_empty(), "files written: {names:?}");
        assert_eq!(cg.memory_limit(), None);
    }

    #[test]
    fn v2_cpu_quota_and_pids_edge_values() {
        let root = fake_v2_root();
        let cases = [
            // (cpus, cpu.max) : the quota never drops below the kernel's 1 ms minimum.
            ("tiny", 0.001, "1000 100000"),
            ("two", 2.0, "200000 100000"),
            ("third", 0.333, "33300 100000"),
        ];
        for (id, cpus, want) in cases {
            Cgroup::create_v2(root.path(), id, &limits(None, Some(cpus), None)).unwrap();
            let got = read(&root.path().join("vcompare").join(id).join("cpu.max"));
            assert_eq!(got, want, "--cpus {cpus}");
        }
        for (id, pids, want) in [("zero", 0, "max"), ("neg", -1, "max"), ("one", 1, "1")] {
            Cgroup::create_v2(root.path(), id, &limits(None, None, Some(pids))).unwrap();
            let got = read(&root.path().join("vcompare").join(id).join("pids.max"));
            assert_eq!(got, want, "--pids-limit {pids}");
        }
    }

    #[test]
    fn v2_oom_kill_is_read_from_memory_events() {
        let root = fake_v2_root();
        let cg =
            Cgroup::create_v2(root.path(), "oom", &limits(Some(16 * MIB), None, None)).unwrap();
        let events = root.path().join("vcompare/oom/memory.events");
        // Before the kernel has written anything (or with no file): no OOM kill.
        assert_eq!(cg.oom_kills(), 0);
        std::fs::write(
            &events,
            "low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(
            cg.oom_kills(),
            0,
            "hitting max without a kill is not an OOM kill"
        );
        std::fs::write(
            &events,
            "low 0\nhigh 0\nmax 40\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills(), 1);
        // The same handle as `exec`/`inspect` build it from /proc/PID/cgroup sees it too.
        let seen = Cgroup::from_proc_cgroup("0::/vcompare/oom\n", Version::V2, root.path());
        assert_eq!(seen.oom_kills(), 1);
        std::fs::write(root.path().join("vcompare/oom/memory.current"), "1048576\n").unwrap();
        assert_eq!(seen.memory_current(), Some(MIB));
        assert_eq!(seen.memory_limit(), Some(16 * MIB));
        std::fs::write(root.path().join("vcompare/oom/memory.max"), "max\n").unwrap();
        assert_eq!(seen.memory_limit(), None, "\"max\" is no limit");
    }

    #[test]
    fn v2_destroy_removes_the_container_dir_but_keeps_the_shared_parent() {
        let root = fake_v2_root();
        let res = limits(Some(16 * MIB), Some(1.0), Some(5));
        let cg = Cgroup::create_v2(root.path(), "gone", &res).unwrap();
        let dir = root.path().join("vcompare/gone");
        // A handle from /proc/PID/cgroup does not own the directory: destroy leaves it.
        Cgroup::from_proc_cgroup("0::/vcompare/gone\n", Version::V2, root.path())
            .destroy()
            .unwrap();
        assert!(dir.is_dir());
        // The kernel's interface files do not keep rmdir from succeeding; the fake's real files
        // would, so drop them first.
        for f in ["memory.max", "cpu.max", "pids.max"] {
            std::fs::remove_file(dir.join(f)).unwrap();
        }
        cg.destroy().unwrap();
        assert!(!dir.exists());
        assert!(root.path().join("vcompare").is_dir());
        // Idempotent: a second destroy (e.g. `rm` after a crashed run) finds nothing to do.
        cg.destroy().unwrap();
    }

    #[test]
    fn v2_limit_write_failure_names_the_file() {
        let root = fake_v2_root();
        let dir = root.path().join("vcompare/broken");
        std::fs::create_dir_all(dir.join("memory.max")).unwrap();
        match Cgroup::create_v2(root.path(), "broken", &limits(Some(16 * MIB), None, None)) {
            Err(Error::Cgroup { path, msg }) => {
                assert_eq!(path, dir.join("memory.max"));
                assert!(msg.starts_with("writing \"16777216\" failed: "), "{msg}");
            }
            other => panic!("expected a cgroup error for memory.max, got {other:?}"),
        }
    }

    #[test]
    fn proc_cgroup_lines_map_to_the_controller_dirs() {
        let root = Path::new("/fake");
        let v2 = Cgroup::from_proc_cgroup("0::/vcompare/abc\n", Version::V2, root);
        assert_eq!(v2.dirs, [("unified", PathBuf::from("/fake/vcompare/abc"))]);
        // v1 (and hybrid): one dir per controller vcompare uses, whatever shares its hierarchy.
        let text = "9:name=systemd:/\n8:pids:/a/vcompare-x\n4:memory:/a/vcompare-x\n\
                    2:cpu,cpuacct:/a/vcompare-x\n1:cpuset:/\n0::/\n";
        let v1 = Cgroup::from_proc_cgroup(text, Version::V1, root);
        assert_eq!(
            v1.dirs,
            [
                ("pids", PathBuf::from("/fake/pids/a/vcompare-x")),
                ("memory", PathBuf::from("/fake/memory/a/vcompare-x")),
                ("cpu", PathBuf::from("/fake/cpu/a/vcompare-x")),
            ]
        );
    }

    #[test]
    fn invalid_cpus_are_refused_before_any_cgroup_is_made() {
        for c in [0.0, -1.0, f64::NAN] {
            match Cgroup::create("never", &limits(None, Some(c), None)) {
                Err(Error::InvalidConfig(m)) => {
                    assert_eq!(m, format!("--cpus must be > 0, got {c}"))
                }
                other => panic!("--cpus {c}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}
