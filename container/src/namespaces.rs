//! Which kernel namespaces a container gets, created with **one** `clone` call (the lean start
//! path), and how to name and join them later (`inspect`, `exec`).
//!
//! The cgroup namespace is the exception: it is unshared by the child *after* the parent has
//! moved it into its cgroup, so that the container sees its own cgroup as `/`.

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, Result};

/// The namespace kinds, in the order `exec` joins them (user first: it grants the capabilities
/// needed to join the others, which the container's user namespace owns).
pub const KINDS: [(&str, libc::c_int); 7] = [
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("pid", libc::CLONE_NEWPID),
    ("uts", libc::CLONE_NEWUTS),
    ("ipc", libc::CLONE_NEWIPC),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
];

/// The `clone` flags for a new container: PID, mount, UTS, IPC always; user unless `--userns
/// host`; network unless `--network host`. (The cgroup namespace is unshared later.)
pub fn clone_flags(userns: bool, network_host: bool) -> libc::c_int {
    let mut flags =
        libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if userns {
        flags |= libc::CLONE_NEWUSER;
    }
    if !network_host {
        flags |= libc::CLONE_NEWNET;
    }
    flags
}

/// The inode number identifying `pid`'s namespace of `kind` (what `ls -l /proc/PID/ns` shows):
/// two processes share a namespace exactly when these are equal.
pub fn ns_inode(pid: i32, kind: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .ok()
        .map(|m| m.ino())
}

/// Open handles on every namespace of a running container that differs from ours, in join order.
pub struct NsHandles {
    /// (kind, flag, fd) for each namespace to join.
    pub fds: Vec<(&'static str, libc::c_int, OwnedFd)>,
}

impl NsHandles {
    /// Opens `/proc/PID/ns/*` for the namespaces `pid` does not share with the calling process.
    pub fn open(pid: i32) -> Result<NsHandles> {
        let me = std::process::id() as i32;
        let mut fds = Vec::new();
        for (kind, flag) in KINDS {
            let theirs = ns_inode(pid, kind).ok_or(Error::NotRunning(pid))?;
            if ns_inode(me, kind) == Some(theirs) {
                continue;
            }
            let path = format!("/proc/{pid}/ns/{kind}");
            let f = std::fs::File::open(&path)
                .map_err(|e| Error::io("opening the namespace", path, e))?;
            fds.push((kind, flag, OwnedFd::from(f)));
        }
        Ok(NsHandles { fds })
    }

    /// Joins them all with `setns`; only valid in a single-threaded process (a fresh fork).
    /// Returns the kind that failed and its errno.
    pub fn join(&self) -> std::result::Result<(), (&'static str, i32)> {
        for (kind, flag, fd) in &self.fds {
            crate::sys::setns(fd.as_fd(), *flag).map_err(|e| (*kind, e))?;
        }
        Ok(())
    }
}
