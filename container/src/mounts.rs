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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
    pub fn resolve(&self, root: RawFd) -> SysResult<RawFd> {
        let mut cur: RawFd = -1;
        let n = self.parts.len();
        for (i, (prefix, name)) in self.parts.iter().enumerate() {
            let fd = match sys::openat_in_root(root, prefix, libc::O_PATH) {
                Ok(fd) => fd,
                Err(libc::ENOENT) => {
                    let dir = if cur < 0 { root } else { cur };
                    // SAFETY: valid C strings and fds.
                    let rc = unsafe {
                        if i == n - 1 && self.is_file {
                            let f = libc::openat(
                                dir,
                                name.as_ptr(),
                                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                                0o644,
                            );
                            if f >= 0 {
                                libc::close(f);
                                0
                            } else {
                                -1
                            }
                        } else {
                            libc::mkdirat(dir, name.as_ptr(), 0o755)
                        }
                    };
                    if rc != 0 && sys::last_errno() != libc::EEXIST {
                        let e = sys::last_errno();
                        sys::close(cur);
                        return Err(e);
                    }
                    match sys::openat_in_root(root, prefix, libc::O_PATH) {
                        Ok(fd) => fd,
                        Err(e) => {
                            sys::close(cur);
                            return Err(e);
                        }
                    }
                }
                Err(e) => {
                    sys::close(cur);
                    return Err(e);
                }
            };
            sys::close(cur);
            cur = fd;
        }
        Ok(cur)
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
    /// A detached mount prepared by the parent (the `-v` volumes); the fd is inherited.
    Detached(RawFd),
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
    /// Detached volume mounts, kept open until the child has been cloned.
    pub volume_fds: Vec<OwnedFd>,
}

/// A `-v HOST:GUEST[:ro]` request as this crate sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Host path (must exist).
    pub host: std::path::PathBuf,
    /// Path inside the container (resolved inside the root).
    pub guest: String,
    /// Mount read-only (recursively, enforced by the kernel).
    pub readonly: bool,
}

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

        let mut volume_fds = Vec::new();
        for v in volumes {
            let meta = std::fs::metadata(&v.host)
                .map_err(|_| Error::VolumeSourceMissing(v.host.clone()))?;
            let chost = CString::new(v.host.as_os_str().as_bytes()).map_err(|_| {
                Error::InvalidConfig(format!(
                    "volume path {} contains a NUL byte",
                    v.host.display()
                ))
            })?;
            let fd = sys::open_tree(
                libc::AT_FDCWD,
                &chost,
                sys::OPEN_TREE_CLONE | sys::AT_RECURSIVE,
            )
            .map_err(|e| {
                Error::sys(
                    format!("cloning the volume source {}", v.host.display()),
                    nix::errno::Errno::from_raw(e),
                    "the -v host path must be a readable file or directory",
                )
            })?;
            // SAFETY: fresh fd owned here.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if v.readonly {
                sys::mount_setattr_fd(fd.as_raw_fd(), true, sys::MOUNT_ATTR_RDONLY, 0, -1)
                    .map_err(|e| {
                        Error::sys(
                            format!("making the volume {} read-only", v.host.display()),
                            nix::errno::Errno::from_raw(e),
                            "the kernel needs mount_setattr (Linux 5.12+)",
                        )
                    })?;
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
                    source: Source::Detached(fd.as_raw_fd()),
                    target,
                },
            ));
            volume_fds.push(fd);
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
            volume_fds,
        })
    }

    /// Child side, before `pivot_root`: executes the ops under `root`. On failure returns the
    /// index of the failed op and errno.
    pub fn apply(&self, root: RawFd) -> std::result::Result<(), (u32, sys::Errno)> {
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

fn apply_op(root: RawFd, op: &Op) -> SysResult<()> {
    match op {
        Op::Mount { source, target } => {
            let mfd = match source {
                Source::Fs {
                    fstype,
                    options,
                    attrs,
                } => {
                    let fs = sys::fsopen(fstype)?;
                    for (k, v) in options {
                        if let Err(e) = sys::fsconfig(fs, k, v.as_deref()) {
                            sys::close(fs);
                            return Err(e);
                        }
                    }
                    let m = sys::fsmount(fs, *attrs);
                    sys::close(fs);
                    m?
                }
                Source::HostBind {
                    path,
                    recursive,
                    attrs,
                } => {
                    let flags =
                        sys::OPEN_TREE_CLONE | if *recursive { sys::AT_RECURSIVE } else { 0 };
                    let m = sys::open_tree(libc::AT_FDCWD, path, flags)?;
                    if *attrs != 0 {
                        if let Err(e) = sys::mount_setattr_fd(m, *recursive, *attrs, 0, -1) {
                            sys::close(m);
                            return Err(e);
                        }
                    }
                    m
                }
                Source::Detached(fd) => *fd,
            };
            let t = match target.resolve(root) {
                Ok(t) => t,
                Err(e) => {
                    if !matches!(source, Source::Detached(_)) {
                        sys::close(mfd);
                    }
                    return Err(e);
                }
            };
            let r = sys::move_mount_fd(mfd, t);
            sys::close(t);
            if !matches!(source, Source::Detached(_)) {
                sys::close(mfd);
            }
            r
        }
        Op::Symlink { dir, name, link } => {
            let d = dir.resolve(root)?;
            // An O_PATH fd of a directory is a valid dirfd for symlinkat.
            // SAFETY: valid C strings and fd.
            let rc = unsafe { libc::symlinkat(link.as_ptr(), d, name.as_ptr()) };
            let e = sys::last_errno();
            sys::close(d);
            if rc != 0 && e != libc::EEXIST {
                return Err(e);
            }
            Ok(())
        }
    }
}

fn is_dir(p: &CStr) -> SysResult<bool> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::stat(p.as_ptr(), &mut st) } != 0 {
        return Err(sys::last_errno());
    }
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

fn mask(p: &CStr) -> SysResult<()> {
    let dir = match is_dir(p) {
        Ok(d) => d,
        Err(libc::ENOENT) | Err(libc::ENOTDIR) => return Ok(()),
        Err(e) => return Err(e),
    };
    // SAFETY: valid C strings.
    let rc = unsafe {
        if dir {
            libc::mount(
                c"tmpfs".as_ptr(),
                p.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"size=0".as_ptr().cast(),
            )
        } else {
            libc::mount(
                c"/dev/null".as_ptr(),
                p.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        }
    };
    if rc != 0 {
        return Err(sys::last_errno());
    }
    Ok(())
}

fn make_readonly(p: &CStr) -> SysResult<()> {
    // SAFETY: valid C strings.
    let rc = unsafe {
        libc::mount(
            p.as_ptr(),
            p.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = sys::last_errno();
        return if e == libc::ENOENT { Ok(()) } else { Err(e) };
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
