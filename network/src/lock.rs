//! Serialising concurrent vcompare runs over shared state files: an exclusive `flock` for the
//! read-modify-write, and atomic replacement so a crash never leaves a half-written file.

use std::path::Path;

use crate::{Error, Result};

/// An exclusive lock on a file, released when dropped (or when the process dies, so a crashed
/// run never leaves the state locked): the shared primitive with this crate's errors.
#[derive(Debug)]
pub struct FileLock {
    _lock: vcompare_spec::files::FileLock,
}

impl FileLock {
    /// Blocks until this process holds `path` exclusively, creating the file and its parent
    /// directories if missing.
    pub fn acquire(path: &Path) -> Result<FileLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("creating the directory of lock file", dir, e))?;
        }
        vcompare_spec::files::FileLock::exclusive(path)
            .map(|l| FileLock { _lock: l })
            .map_err(|e| Error::io("locking", path, e))
    }
}

/// Replaces `path` with `bytes` all at once: readers see the old or the new content, never a
/// mix. No fsync: these records are written several times on every run's start and stop, where
/// each fsync costs milliseconds, and after a power loss every instance they describe is gone
/// anyway (the next command's stale-entry cleanup removes what the records still name).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    vcompare_spec::files::replace(path, bytes, false).map_err(|e| Error::io("writing", path, e))
}
