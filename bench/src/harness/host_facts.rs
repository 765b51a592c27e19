//! Host-side facts about running instances and their files, read from /proc, cgroups and the
//! file system (memory, process tree, disk usage). Separate because they are plain readers of
//! kernel interfaces, independent of how the instances were started.

use std::path::Path;

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
