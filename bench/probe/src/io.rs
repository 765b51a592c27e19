//! Filesystem workloads: sequential throughput (`probe io`) and small-file metadata
//! operations (`probe metadata`), which differ most between a virtio block device or
//! virtiofs in a microVM and overlayfs/bind mounts in a container.

use crate::cli::{emit, sys_err, Args, Failure, Outcome};
use crate::json::Object;
use crate::workloads::elapsed_ns;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Transfer unit for sequential I/O.
const CHUNK: usize = 1 << 20;
/// Alignment that satisfies O_DIRECT on every common block size.
const ALIGN: usize = 4096;

/// `probe io PATH MIB [--small-files N]`: writes MIB MiB to a file under PATH in 1 MiB
/// chunks and fsyncs, then reads it back (O_DIRECT if supported, else possibly cached),
/// and optionally runs the metadata workload with N files, all reported on one line.
pub fn io(args: &[String]) -> Outcome {
    let a = Args::new("io PATH MIB [--small-files N]", args);
    a.count(2, 4)?;
    let dir = Path::new(a.get(0));
    let bytes = a.mib(1, "MIB")?;
    let small = match a.rest(2) {
        [] => None,
        [flag, _] if flag == "--small-files" => Some(a.u64(3, "N")?),
        [flag, ..] => return Err(a.error(format!("unexpected argument {flag:?}"))),
    };

    let file = Removed(dir.join(format!(".probe-io-{}.dat", std::process::id())));
    let mut buf = AlignedBuf::new(CHUNK)?;
    for (i, b) in buf.as_mut().iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    let write_ns = write_file(&file.0, bytes, &mut buf)?;
    let (read_ns, direct) = read_file(&file.0, bytes, &mut buf)?;
    drop(file);

    let mib = (bytes >> 20) as u64;
    let mut o = Object::new();
    o.str("workload", "io")
        .str("path", &dir.to_string_lossy())
        .u64("mib", mib)
        .u64("elapsed_ns", write_ns + read_ns)
        .u64("write_ns", write_ns)
        .f64("write_mib_s", rate(mib, write_ns))
        .u64("read_ns", read_ns)
        .f64("read_mib_s", rate(mib, read_ns))
        .str("read_mode", if direct { "o_direct" } else { "buffered" })
        .bool("cached", !direct);
    if let Some(n) = small {
        o.raw("small_files", &metadata_run(dir, n)?);
    }
    emit(&o.finish())
}

/// `probe metadata PATH N`: creates, stats and deletes N small files in a fresh directory
/// under PATH, timing each phase.
pub fn metadata(args: &[String]) -> Outcome {
    let a = Args::new("metadata PATH N", args);
    a.count(2, 2)?;
    let n = a.u64(1, "N")?;
    emit(&metadata_run(Path::new(a.get(0)), n)?)
}

/// Runs the metadata workload and renders its JSON object.
fn metadata_run(parent: &Path, n: u64) -> Result<String, Failure> {
    let dir = RemovedDir(parent.join(format!(".probe-meta-{}", std::process::id())));
    fs::create_dir(&dir.0).map_err(|e| sys_err(&format!("mkdir {}", dir.0.display()), e))?;
    let name = |i: u64| dir.0.join(format!("f{i}"));
    let payload = [b'x'; 64];
    let err = |what: &str, i: u64, e: std::io::Error| {
        sys_err(&format!("{what} {}", name(i).display()), e)
    };

    let t = Instant::now();
    for i in 0..n {
        File::create(name(i))
            .and_then(|mut f| f.write_all(&payload))
            .map_err(|e| err("create", i, e))?;
    }
    let create_ns = elapsed_ns(t);
    let t = Instant::now();
    for i in 0..n {
        fs::metadata(name(i)).map_err(|e| err("stat", i, e))?;
    }
    let stat_ns = elapsed_ns(t);
    let t = Instant::now();
    for i in 0..n {
        fs::remove_file(name(i)).map_err(|e| err("unlink", i, e))?;
    }
    let delete_ns = elapsed_ns(t);
    drop(dir);

    Ok(Object::new()
        .str("workload", "metadata")
        .str("path", &parent.to_string_lossy())
        .u64("n", n)
        .u64("elapsed_ns", create_ns + stat_ns + delete_ns)
        .u64("create_ns", create_ns)
        .u64("stat_ns", stat_ns)
        .u64("delete_ns", delete_ns)
        .finish())
}

/// Writes `bytes` in CHUNK pieces plus a final fsync; returns the time taken.
fn write_file(path: &Path, bytes: usize, buf: &mut AlignedBuf) -> Result<u64, Failure> {
    let fail = |e| sys_err(&format!("writing {}", path.display()), e);
    let t = Instant::now();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(fail)?;
    for _ in 0..bytes / CHUNK {
        f.write_all(buf.as_mut()).map_err(fail)?;
    }
    f.sync_all().map_err(fail)?;
    Ok(elapsed_ns(t))
}

/// Reads the file back, preferring O_DIRECT so the page cache (which an unprivileged
/// process cannot drop) does not hide the device; returns (time, used O_DIRECT). On a 9p
/// share the read is buffered after dropping the file's pages instead: Linux's 9p client
/// turns O_DIRECT into one request per 4 KiB page, which would measure that quirk, not the
/// share (buffered reads go out in msize-sized requests).
fn read_file(path: &Path, bytes: usize, buf: &mut AlignedBuf) -> Result<(u64, bool), Failure> {
    let fail = |e| sys_err(&format!("reading {}", path.display()), e);
    if is_9p(path) {
        return read_all(path, bytes, buf, false)
            .map(|ns| (ns, false))
            .map_err(fail);
    }
    match read_all(path, bytes, buf, true) {
        Ok(ns) => return Ok((ns, true)),
        // EINVAL: the filesystem (tmpfs, some overlays) does not support O_DIRECT.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(fail(e)),
    }
    read_all(path, bytes, buf, false)
        .map(|ns| (ns, false))
        .map_err(fail)
}

/// Whether `path` is on a 9p mount, by the longest matching mount point in /proc/self/mounts
/// (`statfs` cannot tell: a 9p server reports the host file system's type).
fn is_9p(path: &Path) -> bool {
    let Ok(path) = fs::canonicalize(path) else {
        return false;
    };
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, fstype) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at).then_some((at.len(), fstype == "9p"))
        })
        .max_by_key(|&(len, _)| len)
        .is_some_and(|(_, p9)| p9)
}

fn read_all(path: &Path, bytes: usize, buf: &mut AlignedBuf, direct: bool) -> std::io::Result<u64> {
    let flags = if direct { libc::O_DIRECT } else { 0 };
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)?;
    if !direct {
        // Best effort: ask the kernel to drop this file's clean pages; may be ignored.
        // SAFETY: plain fadvise on a valid fd.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let t = Instant::now();
    let mut total = 0usize;
    loop {
        match f.read(buf.as_mut())? {
            0 => break,
            n => total += n,
        }
    }
    let ns = elapsed_ns(t);
    if total != bytes {
        return Err(std::io::Error::other(format!(
            "read {total} bytes, expected {bytes}"
        )));
    }
    Ok(ns)
}

/// MiB per second, 0 if no time elapsed.
fn rate(mib: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        mib as f64 * 1e9 / ns as f64
    }
}

/// A zeroed heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> Result<Self, Failure> {
        let layout = std::alloc::Layout::from_size_align(len, ALIGN)
            .map_err(|e| sys_err("buffer layout", e))?;
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(Failure::Runtime(format!(
                "cannot allocate {len} byte I/O buffer"
            )));
        }
        Ok(Self { ptr, layout })
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is a live allocation of layout.size() initialised bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this exact layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}

/// A scratch file deleted on drop, so failed runs do not litter the target filesystem.
struct Removed(PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// A scratch directory removed (recursively) on drop.
struct RemovedDir(PathBuf);

impl Drop for RemovedDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rejects_bad_flags() {
        let e = io(&strings(&["/tmp", "1", "--bogus", "3"])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = io(&strings(&["/tmp", "1", "--small-files", "x"])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn metadata_cleans_up() {
        let parent = std::env::temp_dir().join(format!("probe-unit-meta-{}", std::process::id()));
        fs::create_dir_all(&parent).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&metadata_run(&parent, 5).unwrap()).unwrap();
        assert_eq!(v["n"], 5);
        assert_eq!(fs::read_dir(&parent).unwrap().count(), 0);
        fs::remove_dir(&parent).unwrap();
    }

    #[test]
    fn rates() {
        assert_eq!(rate(100, 1_000_000_000), 100.0);
        assert_eq!(rate(1, 0), 0.0);
    }
}
