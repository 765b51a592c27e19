//! The VM's root disk. Per image: an ext4 file system built from the image's unpacked rootfs
//! with `mkfs.ext4 -d`, cached under `<data_root>/disks/<digest>.ext4` (built through a temp
//! file + rename, so a crash never leaves a half-made cache entry). Per VM: its own copy in
//! the instance directory — a reflink when the host file system can share blocks, else a
//! sparse copy. That copy is the VM's exclusive disk; `rm` deletes it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// File name of the per-instance disk inside the instance directory.
pub const INSTANCE_DISK: &str = "disk.ext4";

/// Errors preparing disks.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Filesystem I/O on the host.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Path involved.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// mkfs.ext4 is missing or failed.
    #[error("mkfs.ext4 failed for {path}: {msg}")]
    Mkfs {
        /// Target image.
        path: String,
        /// stderr or spawn error.
        msg: String,
    },
    /// The disk file is not an ext4 file system.
    #[error("disk image {0} is corrupt (no ext4 superblock); remove the instance with `vcompare rm` and run it again")]
    Corrupt(String),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DiskError {
    let path = path.display().to_string();
    move |source| DiskError::Io { what, path, source }
}

/// True if `path` starts with an ext2/3/4 superblock (magic 0xEF53 at byte 1080).
pub fn looks_like_ext4(path: &Path) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let mut magic = [0u8; 2];
    f.seek(SeekFrom::Start(1080)).is_ok()
        && f.read_exact(&mut magic).is_ok()
        && magic == [0x53, 0xef]
}

/// Bytes and inodes used by a directory tree (not following symlinks).
fn tree_usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    let (mut bytes, mut inodes) = (0u64, 1u64);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let md = entry.path().symlink_metadata()?;
        inodes += 1;
        bytes += md.blocks() * 512;
        if md.is_dir() {
            let (b, i) = tree_usage(&entry.path())?;
            bytes += b;
            inodes += i;
        }
    }
    Ok((bytes, inodes))
}

/// Size for an image holding `bytes` of files: 25% + 64 MiB headroom for the VM's own writes
/// and the journal, in whole MiB.
pub fn image_size(bytes: u64) -> u64 {
    let want = bytes + bytes / 4 + (64 << 20);
    want.div_ceil(1 << 20) << 20
}

/// The cached ext4 image for an image digest, built from `rootfs` on first use.
pub fn image_disk(data_root: &Path, digest: &str, rootfs: &Path) -> Result<PathBuf, DiskError> {
    let dir = data_root.join("disks");
    let name = digest.replace(':', "-");
    let path = dir.join(format!("{name}.ext4"));
    if path.is_file() && looks_like_ext4(&path) {
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
    let (bytes, inodes) = tree_usage(rootfs).map_err(io("cannot read rootfs", rootfs))?;
    let tmp = dir.join(format!(".{name}.ext4.tmp-{}", std::process::id()));
    let f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    f.set_len(image_size(bytes))
        .map_err(io("cannot size", &tmp))?;
    drop(f);
    // No lazy init and no metadata checksums: both would cost guest-kernel CPU at every boot,
    // which on PVM hosts runs in KVM's instruction emulator.
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-L", "vcompare-root", "-N"])
        .arg((inodes * 2 + 1024).to_string())
        .args([
            "-O",
            "^metadata_csum,^64bit",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
            "-d",
        ])
        .arg(rootfs)
        .arg(&tmp)
        .output();
    let fail = |msg: String| {
        let _ = std::fs::remove_file(&tmp);
        DiskError::Mkfs {
            path: path.display().to_string(),
            msg,
        }
    };
    match out {
        Err(e) => {
            return Err(fail(format!(
                "cannot run mkfs.ext4 ({e}); install e2fsprogs"
            )))
        }
        Ok(o) if !o.status.success() => {
            return Err(fail(String::from_utf8_lossy(&o.stderr).trim().to_string()))
        }
        Ok(_) => {}
    }
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        DiskError::Io {
            what: "cannot rename into",
            path: path.display().to_string(),
            source: e,
        }
    })?;
    Ok(path)
}

/// Copies `src` to `dst`: reflink (FICLONE) if possible, else a sparse copy (only the data
/// ranges are copied, holes stay holes). Returns true if it was a reflink.
pub fn clone_or_copy(src: &Path, dst: &Path) -> Result<bool, DiskError> {
    let s = File::open(src).map_err(io("cannot open", src))?;
    let tmp = dst.with_extension("tmp");
    let d = File::create(&tmp).map_err(io("cannot create", &tmp))?;
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: FICLONE takes the source fd as its argument; both fds are open.
    let reflinked = unsafe { libc::ioctl(d.as_raw_fd(), FICLONE as _, s.as_raw_fd()) } == 0;
    if !reflinked {
        let len = s.metadata().map_err(io("cannot stat", src))?.len();
        sparse_copy(&s, &d, len).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            DiskError::Io {
                what: "cannot copy to",
                path: dst.display().to_string(),
                source: e,
            }
        })?;
    }
    std::fs::rename(&tmp, dst).map_err(io("cannot rename into", dst))?;
    Ok(reflinked)
}

fn sparse_copy(s: &File, d: &File, len: u64) -> std::io::Result<()> {
    d.set_len(len)?;
    let mut pos: i64 = 0;
    loop {
        // SAFETY: lseek on an open fd.
        let data = unsafe { libc::lseek(s.as_raw_fd(), pos, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no more data
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(s.as_raw_fd(), data, libc::SEEK_HOLE) };
        let end = if hole < 0 { len as i64 } else { hole };
        let (mut off_in, mut off_out) = (data, data);
        while off_in < end {
            // SAFETY: valid fds and offset pointers; the kernel copies between the files.
            let n = unsafe {
                libc::copy_file_range(
                    s.as_raw_fd(),
                    &mut off_in,
                    d.as_raw_fd(),
                    &mut off_out,
                    (end - off_in) as usize,
                    0,
                )
            };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
        }
        pos = end;
    }
    Ok(())
}

/// The VM's own disk in `instance_dir`: reused if it exists (`start` after `stop`), else
/// copied from the image's cached disk.
pub fn instance_disk(instance_dir: &Path, image_disk: &Path) -> Result<PathBuf, DiskError> {
    let path = instance_dir.join(INSTANCE_DISK);
    if path.exists() {
        if !looks_like_ext4(&path) {
            return Err(DiskError::Corrupt(path.display().to_string()));
        }
        return Ok(path);
    }
    std::fs::create_dir_all(instance_dir).map_err(io("cannot create", instance_dir))?;
    clone_or_copy(image_disk, &path)?;
    Ok(path)
}

/// Deletes the VM's disk (idempotent).
pub fn remove_instance_disk(instance_dir: &Path) -> Result<(), DiskError> {
    let path = instance_dir.join(INSTANCE_DISK);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DiskError::Io {
            what: "cannot remove",
            path: path.display().to_string(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_has_headroom() {
        assert_eq!(image_size(0), 64 << 20);
        assert_eq!(image_size(100 << 20), 189 << 20);
    }

    #[test]
    fn sparse_copy_keeps_content_and_holes() {
        let dir = std::env::temp_dir().join(format!("vcmp-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src");
        let f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"hello", 1080 - 2).unwrap();
        f.write_all_at(&[0x53, 0xef], 1080).unwrap();
        f.write_all_at(b"end", (64 << 20) - 3).unwrap();
        drop(f);
        let dst = dir.join("dst");
        clone_or_copy(&src, &dst).unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        assert!(looks_like_ext4(&dst));
        assert!(
            std::fs::metadata(&dst).unwrap().blocks() * 512 < 8 << 20,
            "holes stay holes"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_instance_disk_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("vcmp-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(INSTANCE_DISK), vec![0u8; 4096]).unwrap();
        let e = instance_disk(&dir, Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(e, DiskError::Corrupt(_)));
        assert!(e.to_string().contains("corrupt"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn builds_ext4_from_tree() {
        if Command::new("mkfs.ext4").arg("-V").output().is_err() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("vcmp-mkfs-{}", std::process::id()));
        let root = dir.join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "x\n").unwrap();
        let img = image_disk(&dir, "sha256:abc", &root).unwrap();
        assert!(looks_like_ext4(&img));
        assert_eq!(img, dir.join("disks/sha256-abc.ext4"));
        let inst = instance_disk(&dir.join("inst"), &img).unwrap();
        assert!(looks_like_ext4(&inst));
        remove_instance_disk(&dir.join("inst")).unwrap();
        remove_instance_disk(&dir.join("inst")).unwrap();
        assert!(!inst.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
