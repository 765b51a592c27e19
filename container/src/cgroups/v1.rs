//! cgroup v1: one directory per controller, each a child of the calling process's own cgroup
//! in that controller, and the self-attach through `tasks` that keeps the child off the global
//! threadgroup lock.

use std::path::PathBuf;

use super::{cfs_quota_us, mkdir, pids_max_value, proc_cgroup_entries, write_file};
use super::{Cgroup, Resources, Version};
use super::{CFS_PERIOD_US, CGROUP_ROOT};
use crate::error::{Error, Result};

/// The calling process's cgroup path for a v1 controller ("/" if not listed).
fn own_v1_path(controller: &str) -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = proc_cgroup_entries(&text)
        .find(|(ctrls, _)| ctrls.split(',').any(|c| c == controller))
        .map_or("/", |(_, path)| path);
    path.to_string()
}

impl Cgroup {
    pub(super) fn create_v1(id: &str, res: &Resources) -> Result<Cgroup> {
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
}
