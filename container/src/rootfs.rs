//! The container's root filesystem: an overlayfs whose lower layer is the image's read-only
//! rootfs cache (shared by every instance of the image) and whose upper/work directories live
//! in the instance directory — the container's copy-on-write layer, kept across `start`s and
//! deleted by `remove`.
//!
//! How user namespaces are handled: the image cache is owned by host root, which is *unmapped*
//! inside a user namespace (files would show up as `nobody` and root could not modify them). So
//! the parent, still root on the host, makes an **idmapped** detached copy of the lower layer
//! (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)` with the container's user namespace): through
//! it host uid 0 appears as the container's root. The overlay itself is then built as a
//! *detached* mount (`fsopen`/`fsmount`) by the parent in the initial user namespace — so no
//! `userxattr` option is needed (that is only for overlays mounted inside a user namespace) —
//! and handed to the child, which attaches it in its private mount namespace. Nothing is ever
//! mounted in the host's mount table, so no mount can leak on any failure path.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;

/// The per-instance directories of the copy-on-write layer.
#[derive(Debug, Clone)]
pub struct Layout {
    /// overlay upperdir: every file the container created or changed.
    pub upper: PathBuf,
    /// overlay workdir (scratch space the kernel needs on the same filesystem as upper).
    pub work: PathBuf,
    /// Empty directory the merged root is attached on, inside the container's mount namespace.
    pub mountpoint: PathBuf,
}

impl Layout {
    /// The layout under an instance directory.
    pub fn new(instance_dir: &Path) -> Layout {
        Layout {
            upper: instance_dir.join("upper"),
            work: instance_dir.join("work"),
            mountpoint: instance_dir.join("rootfs"),
        }
    }

    /// Creates the directories; `root_owner` is the host uid/gid that owns the container's `/`
    /// (the mapped container root, or 0 without a user namespace).
    pub fn create(&self, root_owner: u32) -> Result<()> {
        for d in [&self.upper, &self.work, &self.mountpoint] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io("creating the instance directory", d, e))?;
        }
        let owner = Some(nix::unistd::Uid::from_raw(root_owner));
        let group = Some(nix::unistd::Gid::from_raw(root_owner));
        nix::unistd::chown(&self.upper, owner, group)
            .map_err(|e| Error::io("setting the owner of the upper dir", &self.upper, e.into()))?;
        Ok(())
    }
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidConfig(format!("path {} contains a NUL byte", p.display())))
}

/// Builds the overlay as a detached mount and returns its fd (close-on-exec). With
/// `userns_fd`, the lower layer is idmapped through that user namespace first.
pub fn build_overlay(
    lower: &Path,
    layout: &Layout,
    userns_fd: Option<BorrowedFd<'_>>,
) -> Result<OwnedFd> {
    if !lower.is_dir() {
        return Err(Error::RootfsMissing(lower.to_path_buf()));
    }
    let clower = cpath(lower)?;
    // Keep the idmapped lower alive until fsmount has taken its reference.
    let mut idmapped: Option<OwnedFd> = None;
    let lowerdir = match userns_fd {
        Some(ns) => {
            let fd = sys::open_tree(None, &clower, sys::OPEN_TREE_CLONE).map_err(|e| {
                Error::sys(
                    format!("cloning the image rootfs mount {}", lower.display()),
                    nix::errno::Errno::from_raw(e),
                    "the kernel needs open_tree (Linux 5.2+)",
                )
            })?;
            sys::mount_setattr_fd(fd.as_fd(), false, sys::MOUNT_ATTR_IDMAP, 0, Some(ns)).map_err(|e| {
                Error::sys(
                    format!("idmapping the image rootfs {}", lower.display()),
                    nix::errno::Errno::from_raw(e),
                    "the filesystem holding the image cache must support idmapped mounts (ext4, xfs, btrfs, tmpfs on Linux 6.3+), or run with --userns host",
                )
            })?;
            let s = format!("/proc/self/fd/{}", fd.as_raw_fd());
            idmapped = Some(fd);
            CString::new(s).unwrap()
        }
        None => clower,
    };
    let ovl = |e: sys::Errno, what: &str| {
        Error::sys(format!("creating the overlay root filesystem ({what})"), nix::errno::Errno::from_raw(e), "check that overlayfs is available and the instance dir is on a filesystem overlay accepts as upper (not overlay or tmpfs without xattrs)")
    };
    let fsfd = sys::fsopen(c"overlay").map_err(|e| ovl(e, "fsopen"))?;
    let raw = fsfd.as_fd();
    sys::fsconfig(raw, c"lowerdir", Some(&lowerdir)).map_err(|e| ovl(e, "lowerdir"))?;
    sys::fsconfig(raw, c"upperdir", Some(&cpath(&layout.upper)?))
        .map_err(|e| ovl(e, "upperdir"))?;
    sys::fsconfig(raw, c"workdir", Some(&cpath(&layout.work)?)).map_err(|e| ovl(e, "workdir"))?;
    let mfd = sys::fsmount(raw, 0).map_err(|e| ovl(e, "fsmount"))?;
    drop(idmapped);
    Ok(mfd)
}

/// Child side: switches the root to the current directory (the attached overlay) with
/// `pivot_root(".", ".")` and detaches the old root, so the host's file tree is gone from the
/// container's mount namespace. Mounts must already be private (no propagation to the host).
pub fn pivot_to_cwd() -> sys::SysResult<()> {
    sys::pivot_root_to_cwd()
}

/// Deletes the copy-on-write layer of an instance (upper, work and mountpoint dirs). Idempotent.
pub fn remove_layer(instance_dir: &Path) -> Result<()> {
    let l = Layout::new(instance_dir);
    for d in [&l.upper, &l.work, &l.mountpoint] {
        match std::fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing the container layer", d, e)),
        }
    }
    Ok(())
}
