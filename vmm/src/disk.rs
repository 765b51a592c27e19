//! The VM's root disk. Per image: an ext4 file system built from the image's unpacked rootfs
//! with `mkfs.ext4 -d`, plus vcompare's guest init at [`INIT_PATH`], followed by a
//! [`SPEC_AREA_BYTES`] area for the per-boot spec; cached under
//! `<data_root>/disks/<digest>-init<init id>.ext4` (built through a temp file + rename, so a
//! crash never leaves a half-made cache entry). Per VM: its own copy in the instance
//! directory — a reflink when the host file system can share blocks, else a sparse copy. That
//! copy is the VM's exclusive disk; `rm` deletes it. Before each boot [`write_spec`] puts the
//! run's spec into the area after the file system.
//!
//! Why the init is on the disk and not in an initramfs: the guest kernel copies every byte
//! of an initramfs into its page cache and frees the archive afterwards, with kernel code
//! that PVM hosts emulate instruction by instruction; for our 1.7 MB init that was ~2 s of
//! each boot. From the disk, the kernel mounts the root itself and the VMM's virtio-blk
//! device writes only the pages the init touches straight into guest memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::guest_spec::{spec_area, INIT_PATH, SPEC_AREA_BYTES};

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
    /// The run's spec (command, environment, shares) is larger than the disk's spec area.
    #[error("the command, environment and volumes take {0} bytes, more than the 64 KiB a VM's boot spec can hold; pass fewer or shorter arguments or variables")]
    SpecTooBig(usize),
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

/// The cached disk for an image digest and init binary, built from `rootfs` on first use.
pub fn image_disk(
    data_root: &Path,
    digest: &str,
    rootfs: &Path,
    init: &Path,
) -> Result<PathBuf, DiskError> {
    let dir = data_root.join("disks");
    // Keyed by the init's size, modification time and inode, as a rebuilt init changes them:
    // no 1–2 MB read and hash on every VM start.
    let m = std::fs::metadata(init).map_err(io("cannot read", init))?;
    let init_id = format!(
        "{:x}-{:x}-{:x}-{:x}",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    );
    // The store removes `<hex>*` with the image, so the digest's hex comes first.
    let name = format!("{}-init{init_id}", digest.trim_start_matches("sha256:"));
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
    if let Err(msg) = add_init(&tmp, init, m.len()) {
        return Err(fail(msg));
    }
    // The spec area after the file system (the guest sees it as the device's last bytes).
    let grow = std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp)
        .and_then(|f| f.set_len(image_size(bytes) + SPEC_AREA_BYTES));
    if let Err(e) = grow {
        return Err(fail(format!("cannot add the spec area: {e}")));
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

/// Kernel arguments that boot from such a disk as `/dev/vda`: the kernel mounts it
/// read-write as `/` and runs the init stored on it (which reads the spec from `/dev/vda`).
pub fn root_cmdline() -> Vec<String> {
    vec![
        "root=/dev/vda".into(),
        "rootfstype=ext4".into(),
        "rw".into(),
        format!("init={INIT_PATH}"),
    ]
}

/// Copies the init into the new file system with `debugfs` (e2fsprogs, like mkfs.ext4), as
/// root-owned mode 0755 at [`INIT_PATH`], and checks it arrived whole: debugfs reports
/// failed commands on stderr but exits 0.
fn add_init(image: &Path, init: &Path, size: u64) -> Result<(), String> {
    let (dir, name) = INIT_PATH.rsplit_once('/').expect("INIT_PATH is absolute");
    let script = format!(
        "mkdir {dir}\ncd {dir}\nrm {name}\nwrite {} {name}\nsif {name} mode 0100755\nsif {name} uid 0\nsif {name} gid 0\n",
        init.display()
    );
    let run = |args: &[&str], input: Option<&str>| -> Result<String, String> {
        let mut cmd = Command::new("debugfs");
        cmd.args(args).arg(image);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run debugfs ({e}); install e2fsprogs"))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    run(&["-w", "-f", "-"], Some(&script))?;
    let stat = run(&["-R", &format!("stat {INIT_PATH}")], None)?;
    let ok = stat
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .any(|w| w[0] == "Size:" && w[1] == size.to_string());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "debugfs did not write {INIT_PATH} ({} bytes): {}",
            size,
            stat.lines().next().unwrap_or("no output")
        ))
    }
}

/// Writes the run's spec into the disk's last [`SPEC_AREA_BYTES`]: magic, little-endian
/// u32 length, JSON. The guest init reads it from the raw device before it runs anything.
pub fn write_spec(disk: &Path, json: &[u8]) -> Result<(), DiskError> {
    use std::os::unix::fs::FileExt;
    let area = spec_area::encode(json).ok_or(DiskError::SpecTooBig(json.len()))?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(io("cannot open", disk))?;
    let len = f.metadata().map_err(io("cannot stat", disk))?.len();
    let at = len
        .checked_sub(SPEC_AREA_BYTES)
        .ok_or_else(|| DiskError::Corrupt(disk.display().to_string()))?;
    f.write_all_at(&area, at)
        .map_err(io("cannot write the spec to", disk))
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
    fn builds_ext4_from_tree_with_init_and_spec_area() {
        // mkfs.ext4 and debugfs (e2fsprogs) are installed by scripts/install-deps.sh.
        let dir = std::env::temp_dir().join(format!("vcmp-mkfs-{}", std::process::id()));
        let root = dir.join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), "x\n").unwrap();
        let init = dir.join("init");
        let init_bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&init, &init_bytes).unwrap();
        let img = image_disk(&dir, "sha256:abc", &root, &init).unwrap();
        assert!(looks_like_ext4(&img));
        let name = img.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with("abc-init") && name.ends_with(".ext4"),
            "{name}"
        );
        // The init is in the file system, whole, root-owned, mode 0755.
        let dump = dir.join("dumped");
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump {INIT_PATH} {}", dump.display()))
            .arg(&img)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(std::fs::read(&dump).unwrap(), init_bytes);
        let stat = Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat {INIT_PATH}"))
            .arg(&img)
            .output()
            .unwrap();
        let stat = String::from_utf8_lossy(&stat.stdout);
        assert!(
            stat.contains("Mode:  0755") && stat.contains("User:     0"),
            "{stat}"
        );
        // The spec area follows the file system: the spec lands in the file's last 64 KiB.
        let inst = instance_disk(&dir.join("inst"), &img).unwrap();
        assert!(looks_like_ext4(&inst));
        write_spec(&inst, b"{\"args\":[\"true\"]}").unwrap();
        let bytes = std::fs::read(&inst).unwrap();
        let area = &bytes[bytes.len() - SPEC_AREA_BYTES as usize..];
        assert_eq!(&area[..8], crate::guest_spec::SPEC_MAGIC);
        assert_eq!(u32::from_le_bytes(area[8..12].try_into().unwrap()), 17);
        assert_eq!(&area[12..29], b"{\"args\":[\"true\"]}");
        assert_eq!(spec_area::decode(area), Ok(&b"{\"args\":[\"true\"]}"[..]));
        assert!(spec_area::decode(&[0u8; 64]).is_err(), "no magic, no spec");
        assert!(matches!(
            write_spec(&inst, &vec![b' '; SPEC_AREA_BYTES as usize]),
            Err(DiskError::SpecTooBig(_))
        ));
        assert_eq!(std::fs::read(&img).unwrap().len(), bytes.len());
        remove_instance_disk(&dir.join("inst")).unwrap();
        remove_instance_disk(&dir.join("inst")).unwrap();
        assert!(!inst.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
