//! The two file primitives every part of vcompare that keeps state needs (image store,
//! instance records, network records): an exclusive advisory lock, and replacing a file so
//! that readers see the old or the new content, never a mix. Declared once, here, because
//! this crate is the one every other crate depends on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// An exclusive `flock` held until dropped (also released when the process dies, so a crashed
/// command never leaves state locked); serialises writers between `vcompare` processes.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until the lock on `path` is held; creates the lock file if needed.
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        loop {
            // SAFETY: flock on a valid open fd.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FileLock { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// A path next to `target` (same directory, so a rename onto `target` is atomic) that no
/// other process or call uses at the same time.
pub fn temp_sibling(target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Replaces `path` with `data` through a temp sibling and a rename. `durable` adds an fsync
/// before the rename (the image store: survives a power loss); without it a power loss may
/// lose the latest update, which suits records written on every run's start path and
/// re-derived from live processes after a crash.
pub fn replace(path: &Path, data: &[u8], durable: bool) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
