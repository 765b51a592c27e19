//! The mounts a container sees besides its root: `/proc`, `/sys` (read-only), a `/dev` tmpfs
//! with the standard device nodes, devpts, `/dev/shm`, `/dev/mqueue`, the user's `-v` bind
//! mounts, then the OCI default masked and read-only paths.
//!
//! The parent turns the configuration into a [`MountPlan`] of pre-built C strings; the child only
//! executes it (no allocation after clone, see `sys`). Every target is resolved *inside* the new
//! root with `openat2(RESOLVE_IN_ROOT)`, so a `..` or a symlink in the image or in a `-v`/`-w`
//! target can never make a mount land on the host. Mounts are attached with the fd-based mount
//! API (`fsopen`/`open_tree` + `move_mount` onto an `O_PATH` fd of the resolved target).

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use crate::error::{Error, Result};
use crate::sys::{self, SysResult};

/// A path inside the container, split for safe component-by-component resolution.
#[derive(Debug)]
pub struct Target {
    /// (prefix up to and including component i, component i) for each component.
    parts: Vec<(CString, CString)>,
    /// Create the last component as a file (for bind-mounting a file), not a directory.
    is_file: bool,
    /// The normalised absolute path, for messages.
    pub display: String,
}

impl Target {
    /// Normalises `path` lexically (`.` dropped, `..` clamped at `/`), which is exactly how
    /// `RESOLVE_IN_ROOT` treats it, and rejects the root itself as a mount target.
    pub fn new(path: &str, is_file: bool) -> Result<Target> {
        let mut comps: Vec<&str> = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    comps.pop();
                }
                c => comps.push(c),
            }
        }
        if comps.is_empty() {
            return Err(Error::InvalidConfig(format!("{path:?} resolves to the container's root directory, which cannot be a mount target or be replaced")));
        }
        let mut parts = Vec::with_capacity(comps.len());
        let mut prefix = String::new();
        for c in &comps {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(c);
            let bad = || Error::InvalidConfig(format!("path {path:?} contains a NUL byte"));
            parts.push((
                CString::new(prefix.clone()).map_err(|_| bad())?,
                CString::new(*c).map_err(|_| bad())?,
            ));
        }
        Ok(Target {
            parts,
            is_file,
            display: format!("/{}", comps.join("/")),
        })
    }

    /// Child side: opens the target as an `O_PATH` fd, creating missing components (directories,
    /// or an empty file for the last one of a file target). Resolution never leaves `root`.
    pub fn resolve(&self, root: BorrowedFd<'_>) -> SysResult<OwnedFd> {
        let mut cur: Option<OwnedFd> = None;
        let n = self.parts.len();
        for (i, (prefix, name)) in self.parts.iter().enumerate() {
            let fd = match sys::openat_in_root(root, prefix, libc::O_PATH) {
                Err(libc::ENOENT) => {
                    let dir = cur.as_ref().map_or(root, |c| c.as_fd());
                    let made = if i == n - 1 && self.is_file {
                        sys::create_file_at(dir, name)
                    } else {
                        sys::mkdir_at(dir, name, 0o755)
                    };
                    match made {
                        Ok(()) | Err(libc::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                    sys::openat_in_root(root, prefix, libc::O_PATH)?
                }
                r => r?,
            };
            cur = Some(fd);
        }
        // `Target::new` refuses an empty path, so there is at least one component.
        cur.ok_or(libc::EINVAL)
    }
}

/// How one mount is produced.
#[derive(Debug)]
pub enum Source {
    /// A new filesystem instance (`fsopen`): type, options (key, value or flag), mount attrs.
    Fs {
        /// Filesystem type, e.g. `proc`.
        fstype: &'static CStr,
        /// `fsconfig` options; `None` value = flag option.
        options: Vec<(CString, Option<CString>)>,
        /// `MOUNT_ATTR_*` for the new mount.
        attrs: u64,
    },
    /// A bind of a host path, cloned by the child before `pivot_root` (device nodes, /sys).
    HostBind {
        /// Absolute host path.
        path: CString,
        /// Include submounts.
        recursive: bool,
        /// `MOUNT_ATTR_*` to set (e.g. read-only).
        attrs: u64,
    },
    /// A detached mount prepared by the parent (the `-v` volumes); the child inherits the fd,
    /// which the plan keeps open until it is dropped.
    Detached(OwnedFd),
}

/// One step of the plan.
#[derive(Debug)]
pub enum Op {
    /// Mount `source` on `target`.
    Mount {
        /// What to mount.
        source: Source,
        /// Where, inside the root.
        target: Target,
    },
    /// Create a symlink `dir/name -> link` (e.g. /dev/fd -> /proc/self/fd).
    Symlink {
        /// Directory holding the link.
        dir: Target,
        /// The link's name.
        name: CString,
        /// What it points to.
        link: CString,
    },
}

/// Everything the child mounts, prepared by the parent.
#[derive(Debug, Default)]
pub struct MountPlan {
    /// Ordered steps with a human description each (for error messages).
    pub ops: Vec<(String, Op)>,
    /// OCI default masked paths (absolute, applied after `pivot_root`).
    pub masked: Vec<CString>,
    /// OCI default read-only paths (absolute, applied after `pivot_root`).
    pub readonly: Vec<CString>,
}

pub use vcompare_spec::Volume;

const NOSUID_NODEV_NOEXEC: u64 =
    sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOEXEC;

fn opt(k: &str, v: Option<&str>) -> (CString, Option<CString>) {
    (
        CString::new(k).unwrap(),
        v.map(|v| CString::new(v).unwrap()),
    )
}

fn mount(
    desc: impl Into<String>,
    source: Source,
    target: &str,
    is_file: bool,
) -> Result<(String, Op)> {
    Ok((
        desc.into(),
        Op::Mount {
            source,
            target: Target::new(target, is_file)?,
        },
    ))
}

impl MountPlan {
    /// The standard plan: /proc, /sys, /dev (+ nodes, pts, shm, mqueue), volumes, masked and
    /// read-only paths. `own_netns` = the container has its own network namespace (then a fresh
    /// sysfs can be mounted; otherwise the host's /sys is bound read-only).
    pub fn standard(volumes: &[Volume], own_netns: bool, map_gid5: bool) -> Result<MountPlan> {
        let mut ops = Vec::new();
        ops.push(mount(
            "mount proc on /proc",
            Source::Fs {
                fstype: c"proc",
                options: vec![],
                attrs: NOSUID_NODEV_NOEXEC,
            },
            "/proc",
            false,
        )?);
        if own_netns {
            ops.push(mount(
                "mount sysfs read-only on /sys",
                Source::Fs {
                    fstype: c"sysfs",
                    options: vec![],
                    attrs: NOSUID_NODEV_NOEXEC | sys::MOUNT_ATTR_RDONLY,
                },
                "/sys",
                false,
            )?);
        } else {
            ops.push(mount(
                "bind the host /sys read-only on /sys",
                Source::HostBind {
                    path: c"/sys".into(),
                    recursive: true,
                    attrs: NOSUID_NODEV_NOEXEC | sys::MOUNT_ATTR_RDONLY,
                },
                "/sys",
                false,
            )?);
        }
        ops.push(mount(
            "mount a tmpfs on /dev",
            Source::Fs {
                fstype: c"tmpfs",
                options: vec![opt("mode", Some("755")), opt("size", Some("65536k"))],
                attrs: sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC,
            },
            "/dev",
            false,
        )?);
        for node in ["null", "zero", "full", "random", "urandom", "tty"] {
            let host = format!("/dev/{node}");
            ops.push(mount(
                format!("bind the host device {host} on {host}"),
                Source::HostBind {
                    path: CString::new(host.clone()).unwrap(),
                    recursive: false,
                    attrs: sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC,
                },
                &host,
                true,
            )?);
        }
        let mut pts_opts = vec![
            opt("newinstance", None),
            opt("ptmxmode", Some("0666")),
            opt("mode", Some("0620")),
        ];
        if map_gid5 {
            pts_opts.push(opt("gid", Some("5")));
        }
        ops.push(mount(
            "mount devpts on /dev/pts",
            Source::Fs {
                fstype: c"devpts",
                options: pts_opts,
                attrs: sys::MOUNT_ATTR_NOSUID | sys::MOUNT_ATTR_NOEXEC,
            },
            "/dev/pts",
            false,
        )?);
        ops.push(mount(
            "mount a tmpfs on /dev/shm",
            Source::Fs {
                fstype: c"tmpfs",
                options: vec![opt("mode", Some("1777")), opt("size", Some("65536k"))],
                attrs: NOSUID_NODEV_NOEXEC,
            },
            "/dev/shm",
            false,
        )?);
        ops.push(mount(
            "mount mqueue on /dev/mqueue",
            Source::Fs {
                fstype: c"mqueue",
                options: vec![],
                attrs: NOSUID_NODEV_NOEXEC,
            },
            "/dev/mqueue",
            false,
        )?);
        for (name, link) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("core", "/proc/kcore"),
        ] {
            ops.push((
                format!("create the symlink /dev/{name} -> {link}"),
                Op::Symlink {
                    dir: Target::new("/dev", false)?,
                    name: CString::new(name).unwrap(),
                    link: CString::new(link).unwrap(),
                },
            ));
        }

        for v in volumes {
            let meta = std::fs::metadata(&v.host)
                .map_err(|_| Error::VolumeSourceMissing(v.host.clone()))?;
            let chost = CString::new(v.host.as_os_str().as_bytes()).map_err(|_| {
                Error::InvalidConfig(format!(
                    "volume path {} contains a NUL byte",
                    v.host.display()
                ))
            })?;
            let fd = sys::open_tree(None, &chost, sys::OPEN_TREE_CLONE | sys::AT_RECURSIVE)
                .map_err(|e| {
                    Error::sys(
                        format!("cloning the volume source {}", v.host.display()),
                        nix::errno::Errno::from_raw(e),
                        "the -v host path must be a readable file or directory",
                    )
                })?;
            if v.readonly {
                sys::mount_setattr_fd(fd.as_fd(), true, sys::MOUNT_ATTR_RDONLY, 0, None).map_err(
                    |e| {
                        Error::sys(
                            format!("making the volume {} read-only", v.host.display()),
                            nix::errno::Errno::from_raw(e),
                            "the kernel needs mount_setattr (Linux 5.12+)",
                        )
                    },
                )?;
            }
            let target = Target::new(&v.guest, !meta.is_dir())?;
            ops.push((
                format!(
                    "bind the volume {} on {}{}",
                    v.host.display(),
                    target.display,
                    if v.readonly { " (read-only)" } else { "" }
                ),
                Op::Mount {
                    source: Source::Detached(fd),
                    target,
                },
            ));
        }

        // OCI runtime-spec defaults, taken from oci-spec so the lists stay the standard ones.
        let linux = oci_spec::runtime::Linux::default();
        let masked = linux
            .masked_paths()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| CString::new(p).unwrap())
            .collect();
        let readonly = linux
            .readonly_paths()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|p| CString::new(p).unwrap())
            .collect();
        Ok(MountPlan {
            ops,
            masked,
            readonly,
        })
    }

    /// Child side, before `pivot_root`: executes the ops under `root`. On failure returns the
    /// index of the failed op and errno.
    pub fn apply(&self, root: BorrowedFd<'_>) -> std::result::Result<(), (u32, sys::Errno)> {
        for (i, (_, op)) in self.ops.iter().enumerate() {
            apply_op(root, op).map_err(|e| (i as u32, e))?;
        }
        Ok(())
    }

    /// Child side, after `pivot_root`: masks and read-only paths. Missing paths are skipped.
    /// Returns (index, errno); indexes of read-only paths follow the masked ones.
    pub fn apply_masks(&self) -> std::result::Result<(), (u32, sys::Errno)> {
        for (i, p) in self.masked.iter().enumerate() {
            mask(p).map_err(|e| (i as u32, e))?;
        }
        for (i, p) in self.readonly.iter().enumerate() {
            make_readonly(p).map_err(|e| ((self.masked.len() + i) as u32, e))?;
        }
        Ok(())
    }

    /// Description of the mount op `i` (parent side, for error messages).
    pub fn op_desc(&self, i: usize) -> String {
        self.ops
            .get(i)
            .map(|(d, _)| d.clone())
            .unwrap_or_else(|| "mount".into())
    }

    /// Description of the mask/read-only step `i` (parent side, for error messages).
    pub fn mask_desc(&self, i: usize) -> String {
        if i < self.masked.len() {
            format!("mask {}", self.masked[i].to_string_lossy())
        } else {
            format!(
                "make {} read-only",
                self.readonly
                    .get(i - self.masked.len())
                    .map(|c| c.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        }
    }
}

fn apply_op(root: BorrowedFd<'_>, op: &Op) -> SysResult<()> {
    match op {
        Op::Mount { source, target } => {
            // A mount made here is closed on return; a detached volume stays the plan's.
            let made: OwnedFd;
            let mfd = match source {
                Source::Fs {
                    fstype,
                    options,
                    attrs,
                } => {
                    let fs = sys::fsopen(fstype)?;
                    for (k, v) in options {
                        sys::fsconfig(fs.as_fd(), k, v.as_deref())?;
                    }
                    made = sys::fsmount(fs.as_fd(), *attrs)?;
                    made.as_fd()
                }
                Source::HostBind {
                    path,
                    recursive,
                    attrs,
                } => {
                    let flags =
                        sys::OPEN_TREE_CLONE | if *recursive { sys::AT_RECURSIVE } else { 0 };
                    made = sys::open_tree(None, path, flags)?;
                    if *attrs != 0 {
                        sys::mount_setattr_fd(made.as_fd(), *recursive, *attrs, 0, None)?;
                    }
                    made.as_fd()
                }
                Source::Detached(fd) => fd.as_fd(),
            };
            let t = target.resolve(root)?;
            sys::move_mount_fd(mfd, t.as_fd())
        }
        Op::Symlink { dir, name, link } => {
            let d = dir.resolve(root)?;
            match sys::symlink_at(link, d.as_fd(), name) {
                Ok(()) | Err(libc::EEXIST) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

fn mask(p: &CStr) -> SysResult<()> {
    match sys::is_dir(p) {
        Ok(true) => sys::mount_empty_tmpfs_ro(p),
        Ok(false) => sys::bind_mount(c"/dev/null", p, false),
        Err(libc::ENOENT) | Err(libc::ENOTDIR) => Ok(()),
        Err(e) => Err(e),
    }
}

fn make_readonly(p: &CStr) -> SysResult<()> {
    match sys::bind_mount(p, p, true) {
        Ok(()) => {}
        Err(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    sys::mount_setattr_path(
        p,
        true,
        sys::MOUNT_ATTR_RDONLY
            | sys::MOUNT_ATTR_NOSUID
            | sys::MOUNT_ATTR_NODEV
            | sys::MOUNT_ATTR_NOEXEC,
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_normalised_like_resolve_in_root() {
        let t = Target::new("/a/./b/../../../c//d/", false).unwrap();
        assert_eq!(t.display, "/c/d");
        let prefixes: Vec<&str> = t.parts.iter().map(|(p, _)| p.to_str().unwrap()).collect();
        assert_eq!(prefixes, ["c", "c/d"]);
        let names: Vec<&str> = t.parts.iter().map(|(_, n)| n.to_str().unwrap()).collect();
        assert_eq!(names, ["c", "d"]);
        // `..` can never climb above the root, and the root itself is refused.
        assert_eq!(Target::new("../../etc", false).unwrap().display, "/etc");
        assert!(Target::new("/", false).is_err());
        assert!(Target::new("/x/..", false).is_err());
    }

    /// The child's resolution, run on a plain directory (no namespaces needed): missing
    /// components are created, and neither `..` nor an absolute symlink leaves the root.
    #[test]
    fn resolve_creates_targets_and_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root_path = std::ffi::CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let root = sys::open_dir_path(&root_path).unwrap();
        std::os::unix::fs::symlink("/../../etc", dir.path().join("escape")).unwrap();
        Target::new("/a/b/file", true)
            .unwrap()
            .resolve(root.as_fd())
            .unwrap();
        assert!(dir.path().join("a/b").is_dir());
        assert!(dir.path().join("a/b/file").is_file());
        // A symlink to a missing directory is not followed out of the root, nor replaced.
        let dangling = Target::new("/escape/x", false).unwrap();
        assert_eq!(dangling.resolve(root.as_fd()).err(), Some(libc::ENOENT));
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        dangling.resolve(root.as_fd()).unwrap();
        assert!(dir.path().join("etc/x").is_dir());
    }

    #[test]
    fn standard_plan_has_the_oci_defaults() {
        let plan = MountPlan::standard(&[], true, true).unwrap();
        let descs: Vec<&str> = plan.ops.iter().map(|(d, _)| d.as_str()).collect();
        assert!(descs.iter().any(|d| d.contains("/proc")));
        assert!(descs.iter().any(|d| d.contains("sysfs read-only")));
        assert!(descs.iter().any(|d| d.contains("/dev/urandom")));
        assert!(plan.masked.iter().any(|p| p.to_str() == Ok("/proc/kcore")));
        assert!(plan.readonly.iter().any(|p| p.to_str() == Ok("/proc/sys")));
        let host_sys = MountPlan::standard(&[], false, true).unwrap();
        assert!(host_sys
            .ops
            .iter()
            .any(|(d, _)| d.contains("host /sys read-only")));
    }

    #[test]
    fn missing_volume_source_is_reported() {
        let v = Volume {
            host: "/nonexistent/vcompare-test".into(),
            guest: "/data".into(),
            readonly: false,
        };
        assert!(matches!(
            MountPlan::standard(&[v], true, true),
            Err(Error::VolumeSourceMissing(_))
        ));
    }
}
