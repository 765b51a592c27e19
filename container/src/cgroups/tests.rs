//! The v2 code run against a fake cgroup2 tree in a tempdir: this hybrid development host binds
//! every controller to v1, so `create_v2` cannot run for real here, while users' hosts are
//! v2-only. The fake stands in for the kernel's files; each test says where it differs.

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
    let cg = Cgroup::create_v2(root.path(), "oom", &limits(Some(16 * MIB), None, None)).unwrap();
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
