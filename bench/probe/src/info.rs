//! `probe info`: what the process can see of its environment, as one JSON object.
//!
//! This is the witness that lets vcompare compare isolation between host, container and
//! microVM. Every field that needs /proc or /sys degrades to `null` when they are missing,
//! because minimal guests and containers may not mount them.

use crate::json::{self, Object};
use std::ffi::CStr;
use std::fs;

/// Collects everything and renders the JSON object; `argv` is the full command line.
pub fn collect(argv: &[String]) -> String {
    let mut o = Object::new();
    // SAFETY: these identity getters cannot fail and take no pointers.
    unsafe {
        o.u64("pid", libc::getpid() as u64)
            .u64("ppid", libc::getppid() as u64)
            .u64("uid", libc::getuid() as u64)
            .u64("gid", libc::getgid() as u64)
            .u64("euid", libc::geteuid() as u64)
            .u64("egid", libc::getegid() as u64);
    }
    let un = uname();
    o.opt_str("hostname", un.as_ref().map(|u| u.nodename.as_str()))
        .opt_str("kernel_release", un.as_ref().map(|u| u.release.as_str()))
        .opt_str("kernel_version", un.as_ref().map(|u| u.version.as_str()))
        .opt_str("machine", un.as_ref().map(|u| u.machine.as_str()));

    let online = read_trim("/sys/devices/system/cpu/online");
    o.opt_u64("cpus_affinity", affinity_cpus())
        .opt_str("cpus_online", online.as_deref())
        .opt_u64(
            "cpus_online_count",
            online.as_deref().and_then(count_cpu_list),
        );

    let meminfo = fs::read_to_string("/proc/meminfo").ok();
    o.opt_u64(
        "mem_total_bytes",
        meminfo.as_deref().and_then(mem_total_bytes),
    );
    o.opt_raw(
        "uptime_s",
        read_trim("/proc/uptime")
            .as_deref()
            .and_then(uptime)
            .as_deref(),
    );

    let cgroup = read_lines("/proc/self/cgroup");
    o.opt_raw("cgroup", cgroup.as_deref().map(json::str_array).as_deref());
    o.opt_u64(
        "mount_count",
        read_lines("/proc/self/mountinfo").map(|l| l.len() as u64),
    );
    o.opt_raw(
        "pids",
        visible_pids().as_deref().map(json::u64_array).as_deref(),
    );
    o.opt_raw("namespaces", namespaces().as_deref());
    o.opt_str(
        "uid_map",
        fs::read_to_string("/proc/self/uid_map").ok().as_deref(),
    )
    .opt_str(
        "gid_map",
        fs::read_to_string("/proc/self/gid_map").ok().as_deref(),
    );
    let cwd = std::env::current_dir().ok();
    o.opt_str("cwd", cwd.as_ref().map(|p| p.to_string_lossy()).as_deref());
    o.raw("argv", &json::str_array(argv));
    o.finish()
}

/// The `uname(2)` fields we report.
struct Uname {
    nodename: String,
    release: String,
    version: String,
    machine: String,
}

/// `uname(2)` works without /proc, so hostname and kernel are always available.
fn uname() -> Option<Uname> {
    // SAFETY: utsname is plain bytes; uname fills it and NUL-terminates every field.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return None;
        }
        let field = |f: &[libc::c_char]| CStr::from_ptr(f.as_ptr()).to_string_lossy().into_owned();
        Some(Uname {
            nodename: field(&u.nodename),
            release: field(&u.release),
            version: field(&u.version),
            machine: field(&u.machine),
        })
    }
}

/// CPUs this process may run on (sched_getaffinity), which cgroup cpusets and VMs restrict.
fn affinity_cpus() -> Option<u64> {
    // SAFETY: cpu_set_t is a plain bitmask; the size passed matches the buffer.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(libc::CPU_COUNT(&set) as u64)
    }
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_lines(path: &str) -> Option<Vec<String>> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.lines().map(str::to_string).collect())
}

/// Counts CPUs in a kernel cpu list such as `0-3,8,10-11`; `None` if malformed.
pub fn count_cpu_list(list: &str) -> Option<u64> {
    let list = list.trim();
    if list.is_empty() {
        return Some(0);
    }
    let mut total = 0u64;
    for part in list.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<u64>().ok()?, b.parse::<u64>().ok()?),
            None => {
                let n = part.parse::<u64>().ok()?;
                (n, n)
            }
        };
        total += hi.checked_sub(lo)? + 1;
    }
    Some(total)
}

/// Extracts `MemTotal` from /proc/meminfo text, converted from kB to bytes.
pub fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// First number of /proc/uptime as JSON text: a VM boots fresh, a container shares the host's.
fn uptime(text: &str) -> Option<String> {
    let v: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(json::float(v))
}

/// Numeric entries of /proc, sorted: the PID namespace as this process sees it.
fn visible_pids() -> Option<Vec<u64>> {
    let mut pids: Vec<u64> = fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Some(pids)
}

/// `{"net": inode, ...}` from the /proc/self/ns symlinks; equal inodes mean a shared namespace.
fn namespaces() -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/proc/self/ns")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut o = Object::new();
    for name in &names {
        let target = fs::read_link(format!("/proc/self/ns/{name}")).ok();
        let target = target.as_ref().map(|t| t.to_string_lossy().into_owned());
        match target.as_deref().map(|t| (t, ns_inode(t))) {
            Some((_, Some(ino))) => o.u64(name, ino),
            Some((t, None)) => o.str(name, t),
            None => o.raw(name, "null"),
        };
    }
    Some(o.finish())
}

/// Parses the inode out of a namespace link target such as `net:[4026531840]`.
pub fn ns_inode(target: &str) -> Option<u64> {
    let (_, rest) = target.split_once(":[")?;
    rest.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list(""), Some(0));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:        8048576 kB\nMemFree:  1 kB\n";
        assert_eq!(mem_total_bytes(text), Some(8048576 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total_bytes("MemTotal: lots\n"), None);
    }

    #[test]
    fn ns_links() {
        assert_eq!(ns_inode("net:[4026531840]"), Some(4026531840));
        assert_eq!(ns_inode("pid_for_children:[4026531836]"), Some(4026531836));
        assert_eq!(ns_inode("net:4026531840"), None);
    }

    #[test]
    fn collect_is_valid_json_with_our_identity() {
        let argv = vec!["probe".to_string(), "info \"quoted\"".to_string()];
        let v: serde_json::Value = serde_json::from_str(&collect(&argv)).unwrap();
        assert_eq!(v["pid"].as_u64(), Some(std::process::id() as u64));
        assert_eq!(v["argv"][1], "info \"quoted\"");
        assert!(v["cpus_affinity"].as_u64().unwrap() >= 1);
        assert!(v["kernel_release"].is_string());
    }
}
