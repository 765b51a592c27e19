//! Host-side pieces shared by the verbs `run` and `exec`: the guards that clean up on every
//! early return after `clone`, and the /dev/null stdin.

use std::os::fd::OwnedFd;

use crate::cgroups::Cgroup;
use crate::error::{Error, Result};
use crate::sys;

/// Kills and reaps the child unless disarmed (every early-return path after clone).
pub(crate) struct ChildGuard {
    pid: i32,
    armed: bool,
}

impl ChildGuard {
    /// Guards our child `pid`.
    pub(crate) fn new(pid: i32) -> ChildGuard {
        ChildGuard { pid, armed: true }
    }

    /// The child has been reaped: nothing left to do.
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.armed && self.pid > 0 {
            sys::kill(self.pid, libc::SIGKILL);
            sys::reap(self.pid);
        }
    }
}

/// Removes the container's cgroup and its record file on every path out of `run`.
pub(crate) struct CgroupGuard<'a> {
    /// The cgroup `run` created.
    pub(crate) cg: &'a Cgroup,
    /// The record file naming its directories (see [`CGROUP_RECORD`]).
    pub(crate) record: std::path::PathBuf,
}

impl Drop for CgroupGuard<'_> {
    fn drop(&mut self) {
        let _ = self.cg.destroy();
        let _ = std::fs::remove_file(&self.record);
    }
}

/// File in the instance directory naming the cgroup dirs of a running container, so
/// [`crate::remove`] can clean up after a crashed vcompare (v1 placement depends on the
/// caller's own cgroup).
pub(crate) const CGROUP_RECORD: &str = "cgroup.paths";

/// /dev/null for the stdin of a container or exec'd command that is not interactive.
pub(crate) fn open_dev_null() -> Result<OwnedFd> {
    std::fs::File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| Error::io("opening", "/dev/null", e))
}
