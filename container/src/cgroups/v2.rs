//! cgroup v2: one directory under `/sys/fs/cgroup/vcompare/`, controllers enabled on the way
//! down, and the directory fd `clone3(CLONE_INTO_CGROUP)` starts the child in.

use std::path::Path;

use super::CFS_PERIOD_US;
use super::{cfs_quota_us, mkdir, pids_max_value, write_file, Cgroup, Resources, Version};
use crate::error::Result;

impl Cgroup {
    /// `root` is the cgroup2 mount: [`CGROUP_ROOT`] in production, a fake tree in the unit tests
    /// (this hybrid development host has no v2 controllers to run this path for real).
    pub(super) fn create_v2(root: &Path, id: &str, res: &Resources) -> Result<Cgroup> {
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
}
