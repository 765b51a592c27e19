//! `inspect`: the host's view and the container's view of the same process side by side —
//! the point of the lesson is that they differ (pid, uid, namespaces) except for the kernel.

use serde_json::{json, Value};

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::namespaces::{ns_inode, KINDS};
use crate::sys;

fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

fn uname_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Hostname and kernel release as seen from inside `pid`'s UTS namespace, read by a short-lived
/// helper that joins only that namespace.
fn uts_view(pid: i32) -> Option<(String, String)> {
    use std::os::fd::AsFd;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/uts")).ok()?;
    let (r, w) = sys::pipe_cloexec().ok()?;
    match sys::clone_fork(0) {
        Ok(0) => {
            // Helper: setns + uname into a stack value, then write and _exit; no allocation.
            if sys::setns(ns.as_fd(), libc::CLONE_NEWUTS).is_err() {
                sys::exit_now(1);
            }
            let _ = sys::write_all(w.as_fd(), sys::Utsname::current().as_bytes());
            sys::exit_now(0)
        }
        Ok(child) => {
            drop(w);
            let mut buf = [0u8; sys::Utsname::SIZE];
            let ok = std::io::Read::read_exact(&mut std::fs::File::from(r), &mut buf).is_ok();
            sys::reap(child);
            if !ok {
                return None;
            }
            let u = sys::Utsname::from_bytes(&buf);
            Some((u.nodename(), u.release()))
        }
        Err(_) => None,
    }
}

/// Host view vs container view of the running container whose PID 1 has host pid `pid`. The
/// "host" namespace inodes are those of the calling process (vcompare runs in the host's).
pub fn inspect(pid: i32) -> Result<Value> {
    if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
        return Err(Error::NotRunning(pid));
    }
    // NSpid lists the pid in every namespace from the host's outward-in: last = innermost.
    let nspid = status_field(pid, "NSpid:").unwrap_or_default();
    let inner_pid: Option<i64> = nspid.split_whitespace().last().and_then(|v| v.parse().ok());
    let host_uid: Option<u32> = status_field(pid, "Uid:")
        .and_then(|v| v.split_whitespace().nth(1).and_then(|x| x.parse().ok()));
    let map = crate::user_ns::read_uid_map(pid);
    let inner_uid = match (host_uid, map) {
        (Some(h), Some((inside, outside, count))) if h >= outside && h < outside + count => {
            Some(h - outside + inside)
        }
        _ => None,
    };
    let mut ns = serde_json::Map::new();
    for (kind, _) in KINDS {
        let c = ns_inode(pid, kind);
        let h = ns_inode(std::process::id() as i32, kind);
        ns.insert(
            kind.to_string(),
            json!({ "container": c, "host": h, "separate": c != h }),
        );
    }
    let cg = Cgroup::of_pid(pid).ok();
    let (hostname, release) = uts_view(pid).unwrap_or_default();
    let host_name = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let visible = std::fs::read_dir(format!("/proc/{pid}/root/proc"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .count()
        })
        .ok();
    let host_visible = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .count()
        })
        .ok();
    Ok(json!({
        "running": true,
        "pid": { "host": pid, "container": inner_pid },
        "uid": { "host": host_uid, "container": inner_uid, "uid_map": map.map(|(i, o, c)| format!("{i} {o} {c}")) },
        "namespaces": ns,
        "cgroup": {
            "version": cg.as_ref().map(|c| c.version),
            "path": cg.as_ref().and_then(|c| c.memory_path()).map(|p| p.display().to_string()),
            "memory_bytes": cg.as_ref().and_then(|c| c.memory_current()),
            "memory_limit_bytes": cg.as_ref().and_then(|c| c.memory_limit()),
        },
        "hostname": { "host": host_name, "container": hostname },
        "kernel_release": { "host": uname_release(), "container": release },
        "visible_processes": { "host": host_visible, "container": visible },
    }))
}
