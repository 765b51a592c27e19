//! Small filesystem primitives shared by the image store and the instance records: atomic
//! replacement of files and advisory locks (the primitives themselves live in
//! `vcompare_spec::files`, shared with the network crate), so an
//! interrupted command never leaves a half-written record behind.

use std::fs;
use std::io;
use std::path::Path;

/// Random lowercase hex of `bytes` random bytes (from the kernel's CSPRNG); used for
/// instance ids and temporary names.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut filled = 0;
    while filled < bytes {
        // SAFETY: the pointer and length describe the unfilled tail of `buf`.
        let n = unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), bytes - filled, 0) };
        if n > 0 {
            filled += n as usize;
        }
    }
    hex::encode(buf)
}

/// Replaces `path` with `data` atomically and durably (fsync before the rename): readers see
/// the old or the new content, never a mix, even after a power loss. For the image store.
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    vcompare_spec::files::replace(path, data, true)
}

/// Replaces `path` atomically without fsync: concurrent readers still never see a mix (the
/// rename is atomic), but a power loss may lose the latest update. Instance state is written
/// on the startup path several times per run, where an fsync costs milliseconds, and it is
/// re-derived from live processes after a crash anyway.
pub fn atomic_write_fast(path: &Path, data: &[u8]) -> io::Result<()> {
    vcompare_spec::files::replace(path, data, false)
}

pub use vcompare_spec::files::FileLock;

/// Total bytes of regular files below `path` (not following symlinks; hard links counted once).
pub fn tree_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
            total += md.len();
        }
    }
    total
}

/// Removes a path of any type if it exists (directories recursively, never following symlinks).
pub fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
