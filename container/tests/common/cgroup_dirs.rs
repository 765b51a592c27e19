//! The container cgroup directories present on this host, in both namings the runtime uses
//! (`container/src/cgroups.rs`): v1 `<controller>/<caller's cgroup>/vcompare-<id>`, v2
//! `vcompare/<id>`. One walker for the leak checks of both crates (included by `#[path]`), so a
//! leak is counted the same way whichever cgroup version the host has.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Where every cgroup hierarchy (v1 controllers, the hybrid `unified`, or a pure v2) is mounted.
const CGROUP_MOUNTS: &str = "/sys/fs/cgroup";

/// One container cgroup directory and the container id its name carries.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CgroupDir {
    /// The container id (`vcompare-<id>` on v1, `vcompare/<id>` on v2).
    pub id: String,
    /// The directory.
    pub path: PathBuf,
}

/// Every container cgroup directory under /sys/fs/cgroup, sorted. The shared v2 parent
/// `vcompare/` itself is not one: the runtime keeps it for all containers.
pub fn container_cgroup_dirs() -> Vec<CgroupDir> {
    fn walk(dir: &Path, out: &mut Vec<CgroupDir>) {
        let in_v2_parent = dir.file_name().is_some_and(|n| n == "vcompare");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            // Not following symlinks (`cpu` -> `cpu,cpuacct`): each hierarchy is walked once.
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let id = match name.strip_prefix("vcompare-") {
                Some(id) => Some(id.to_string()),
                None if in_v2_parent => Some(name),
                None => None,
            };
            if let Some(id) = id {
                out.push(CgroupDir { id, path: e.path() });
            }
            walk(&e.path(), out);
        }
    }
    let mut out = Vec::new();
    walk(Path::new(CGROUP_MOUNTS), &mut out);
    out.sort();
    out
}
