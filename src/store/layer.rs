//! Applies one OCI layer (a tar stream) onto a root filesystem directory with the OCI rules:
//! `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` empties a directory of what lower
//! layers put there, hard links, symlinks, permissions, ownership (when root) and mtimes.
//!
//! Safety: entry names with `..` or a leading `/` are refused, and parent paths are resolved
//! component by component inside the root, refusing any symlink that would lead outside it
//! (absolute targets, or `..` above the root). The tree being written is a private temporary
//! directory, so nothing else changes it between the check and the write.

use std::collections::{HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::digest::HashingReader;
use super::error::{IoContext, Result, StoreError};
use crate::fsutil::remove_any;

/// Whiteout prefix from the OCI image spec.
const WHITEOUT: &str = ".wh.";
/// Opaque-directory marker from the OCI image spec.
const OPAQUE: &str = ".wh..wh..opq";
/// Symlink hops allowed while resolving one path (the kernel's own limit).
const MAX_HOPS: usize = 40;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (`+gzip`, and Docker's `.tar.gzip` layers).
    Gzip,
    /// zstd (`+zstd`).
    Zstd,
}

impl Compression {
    /// Guesses the compression from the first bytes (for `docker save` layers, which carry no
    /// media type).
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// A decompressing reader over `r`.
    pub fn reader<'a, R: Read + 'a>(self, r: R) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(r)?),
        })
    }
}

/// The state of applying one layer.
struct Applier<'a> {
    root: &'a Path,
    layer: &'a str,
    privileged: bool,
    /// Paths (relative to root) this layer created: whiteouts and opaque markers only hide
    /// what lower layers contributed, never this layer's own entries.
    created: HashSet<PathBuf>,
    /// Directory metadata is applied after all entries, since adding children changes mtimes.
    dirs: Vec<(PathBuf, u32, u64)>,
}

/// Applies the layer in `blob` (compressed as `compression`) onto `root`. Returns the
/// digest of the uncompressed tar stream (the image config's `diff_id`).
pub fn apply(root: &Path, blob: &Path, compression: Compression, layer: &str) -> Result<String> {
    let file = File::open(blob).ctx(|| format!("opening layer {}", blob.display()))?;
    let bad = |source| StoreError::BadLayer {
        layer: layer.to_string(),
        source,
    };
    let plain = compression.reader(io::BufReader::new(file)).map_err(bad)?;
    let mut hashing = HashingReader::new(plain);
    let mut applier = Applier {
        root,
        layer,
        privileged: nix::unistd::geteuid().is_root(),
        created: HashSet::new(),
        dirs: Vec::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            applier.entry(entry)?;
        }
    }
    // The tar end-of-archive padding belongs to the diff_id too.
    io::copy(&mut hashing, &mut io::sink()).map_err(bad)?;
    applier.finish_dirs()?;
    Ok(hashing.finish().1)
}

/// Splits a tar entry name into safe components, refusing absolute names and `..`.
fn components(raw: &[u8], layer: &str) -> Result<Vec<OsString>> {
    let unsafe_entry = || StoreError::UnsafeEntry {
        layer: layer.into(),
        entry: String::from_utf8_lossy(raw).into(),
    };
    if raw.starts_with(b"/") {
        return Err(unsafe_entry());
    }
    let mut out = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry()),
            p => out.push(OsStr::from_bytes(p).to_os_string()),
        }
    }
    Ok(out)
}

impl Applier<'_> {
    fn escape(&self, entry: &[OsString]) -> StoreError {
        StoreError::SymlinkEscape {
            layer: self.layer.into(),
            entry: join(entry).display().to_string(),
        }
    }

    /// Resolves `dirs` (relative, may traverse symlinks) to a real directory inside the root,
    /// creating missing directories. Returns the path relative to root.
    fn resolve_dir(&mut self, dirs: &[OsString], entry: &[OsString]) -> Result<PathBuf> {
        let mut cur: Vec<OsString> = Vec::new();
        let mut queue: VecDeque<OsString> = dirs.iter().cloned().collect();
        let mut hops = 0;
        while let Some(c) = queue.pop_front() {
            if c == ".." {
                if cur.pop().is_none() {
                    return Err(self.escape(entry));
                }
                continue;
            }
            if c.is_empty() || c == "." {
                continue;
            }
            let rel = join(&cur).join(&c);
            let abs = self.root.join(&rel);
            match fs::symlink_metadata(&abs) {
                Ok(md) if md.file_type().is_symlink() => {
                    hops += 1;
                    let target =
                        fs::read_link(&abs).ctx(|| format!("reading link {}", abs.display()))?;
                    let bytes = target.as_os_str().as_bytes();
                    if hops > MAX_HOPS || bytes.starts_with(b"/") {
                        return Err(self.escape(entry));
                    }
                    let parts: Vec<OsString> = bytes
                        .split(|b| *b == b'/')
                        .map(|p| OsStr::from_bytes(p).to_os_string())
                        .collect();
                    for p in parts.into_iter().rev() {
                        queue.push_front(p);
                    }
                }
                Ok(md) if md.is_dir() => cur.push(c),
                Ok(_) | Err(_) => {
                    // Missing (or a non-directory in the way): a directory is implied here.
                    remove_any(&abs).ctx(|| format!("replacing {}", abs.display()))?;
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&abs)
                        .ctx(|| format!("creating {}", abs.display()))?;
                    self.created.insert(rel);
                    cur.push(c);
                }
            }
        }
        Ok(join(&cur))
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let comps = components(&raw, self.layer)?;
        let Some((name, parents)) = comps.split_last() else {
            return Ok(()); // the root directory itself: keep ours
        };
        let parent = self.resolve_dir(parents, &comps)?;
        let name_str = name.to_string_lossy();
        if name_str == OPAQUE {
            return self.make_opaque(&parent);
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT) {
            let rel = parent.join(hidden);
            if !self.created.contains(&rel) {
                let abs = self.root.join(&rel);
                remove_any(&abs).ctx(|| format!("applying whiteout for {}", abs.display()))?;
            }
            return Ok(());
        }
        let rel = parent.join(name);
        let abs = self.root.join(&rel);
        let header = entry.header().clone();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let existing = fs::symlink_metadata(&abs).ok();
        let kind = header.entry_type();
        if kind == EntryType::Directory {
            if !existing.as_ref().is_some_and(|m| m.is_dir()) {
                remove_any(&abs).ctx(|| format!("replacing {}", abs.display()))?;
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&abs)
                    .ctx(|| format!("creating {}", abs.display()))?;
            }
            self.chown(&abs, &header)?;
            self.dirs.push((abs, mode, mtime));
            self.created.insert(rel);
            return Ok(());
        }
        if existing.is_some() {
            remove_any(&abs).ctx(|| format!("replacing {}", abs.display()))?;
        }
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&abs)
                    .ctx(|| format!("creating {}", abs.display()))?;
                io::copy(&mut entry, &mut out).map_err(|source| StoreError::BadLayer {
                    layer: self.layer.into(),
                    source,
                })?;
                drop(out);
                self.chown(&abs, &header)?;
                fs::set_permissions(&abs, fs::Permissions::from_mode(mode))
                    .ctx(|| format!("chmod {}", abs.display()))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| PathBuf::from(OsStr::from_bytes(&b)))
                    .unwrap_or_default();
                std::os::unix::fs::symlink(&target, &abs)
                    .ctx(|| format!("creating symlink {}", abs.display()))?;
                self.chown(&abs, &header)?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let tcomps = components(&target_raw, self.layer)?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(StoreError::UnsafeEntry {
                        layer: self.layer.into(),
                        entry: name_str.into(),
                    });
                };
                let tparent = self.resolve_dir(tparents, &tcomps)?;
                let tabs = self.root.join(tparent).join(tname);
                fs::hard_link(&tabs, &abs)
                    .ctx(|| format!("linking {} to {}", abs.display(), tabs.display()))?;
                // A hard link shares the target's inode, metadata included.
                self.created.insert(rel);
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let dev = nix::sys::stat::makedev(
                    header.device_major().ok().flatten().unwrap_or(0) as u64,
                    header.device_minor().ok().flatten().unwrap_or(0) as u64,
                );
                if self.privileged || kind == EntryType::Fifo {
                    nix::sys::stat::mknod(&abs, sflag, Mode::from_bits_truncate(mode), dev)
                        .map_err(io::Error::from)
                        .ctx(|| format!("creating device {}", abs.display()))?;
                    self.chown(&abs, &header)?;
                } else {
                    return Ok(()); // device nodes need root; an unprivileged store skips them
                }
            }
            _ => return Ok(()), // pax/GNU metadata entries are consumed by the tar reader
        }
        set_mtime(&abs, mtime)?;
        self.created.insert(rel);
        Ok(())
    }

    /// `.wh..wh..opq`: hides everything lower layers put in the directory.
    fn make_opaque(&mut self, dir: &Path) -> Result<()> {
        let abs = self.root.join(dir);
        let rd = fs::read_dir(&abs).ctx(|| format!("reading {}", abs.display()))?;
        for child in rd.flatten() {
            let rel = dir.join(child.file_name());
            if !self.created.contains(&rel) {
                remove_any(&child.path())
                    .ctx(|| format!("applying opaque dir {}", abs.display()))?;
            }
        }
        Ok(())
    }

    fn chown(&self, path: &Path, header: &tar::Header) -> Result<()> {
        if !self.privileged {
            return Ok(());
        }
        let uid = header.uid().unwrap_or(0) as u32;
        let gid = header.gid().unwrap_or(0) as u32;
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .ctx(|| format!("chown {}", path.display()))
    }

    /// Directory modes and mtimes last, deepest first.
    fn finish_dirs(&mut self) -> Result<()> {
        for (path, mode, mtime) in self.dirs.drain(..).rev() {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .ctx(|| format!("chmod {}", path.display()))?;
            set_mtime(&path, mtime)?;
        }
        Ok(())
    }
}

fn join(parts: &[OsString]) -> PathBuf {
    parts.iter().collect()
}

fn set_mtime(path: &Path, mtime: u64) -> Result<()> {
    let t = TimeSpec::new(mtime as i64, 0);
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink)
        .map_err(io::Error::from)
        .ctx(|| format!("setting mtime of {}", path.display()))
}
