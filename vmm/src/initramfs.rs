//! A tiny initramfs: our static init as `/init` and its instructions as `/vcompare.json`, in
//! the kernel's "newc" cpio format. Uncompressed on purpose: in the PVM emulator, gunzip in the
//! guest kernel costs far more than copying a few hundred KiB more.
//!
//! It comes in two archives, which the kernel unpacks one after the other (it skips the NUL
//! padding between them): the big one with `/init` is built once per init binary and cached
//! as a file that the VMM maps copy-on-write into guest RAM (no read, no copy per VM, shared
//! page cache), and a few hundred bytes with the per-run spec are written after it.

use std::path::{Path, PathBuf};

/// The page size the cached archive is padded to, so that it can be mapped into guest RAM.
pub const PAGE: usize = 4096;

/// The file name the guest init reads its spec from.
pub const SPEC_PATH: &str = "vcompare.json";

/// A cpio "newc" archive being written in memory.
#[derive(Default)]
pub struct CpioWriter {
    buf: Vec<u8>,
    ino: u32,
}

fn pad4(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(4) {
        buf.push(0);
    }
}

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [
            self.ino,
            mode,
            0, // uid
            0, // gid
            if mode & 0o170000 == 0o040000 { 2 } else { 1 },
            0, // mtime: fixed, the archive is reproducible
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        pad4(&mut self.buf);
        self.buf.extend_from_slice(data);
        pad4(&mut self.buf);
    }

    /// Adds a directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> &mut Self {
        self.entry(name, 0o040000 | perm, (0, 0), &[]);
        self
    }

    /// Adds a regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> &mut Self {
        self.entry(name, 0o100000 | perm, (0, 0), data);
        self
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> &mut Self {
        self.entry(name, 0o020000 | perm, (major, minor), &[]);
        self
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        // The kernel wants the archive to end on a 512-byte boundary only for concatenation.
        self.buf
    }
}

/// The per-init-binary archive: mount points, `/dev/console` and `/init`, NUL-padded to a
/// whole number of pages (the padding is skipped by the kernel).
pub fn build_base(init_binary: &[u8]) -> Vec<u8> {
    let mut w = CpioWriter::new();
    w.dir("dev", 0o755)
        .char_dev("dev/console", 0o600, 5, 1)
        .dir("proc", 0o555)
        .dir("sys", 0o555)
        .dir("newroot", 0o755)
        .file("init", 0o755, init_binary);
    let mut a = w.finish();
    a.resize(a.len().next_multiple_of(PAGE), 0);
    a
}

/// The per-run archive: only `/vcompare.json`.
pub fn build_spec(spec_json: &[u8]) -> Vec<u8> {
    let mut w = CpioWriter::new();
    w.file(SPEC_PATH, 0o644, spec_json);
    w.finish()
}

/// The whole initramfs in memory ([`build_base`] followed by [`build_spec`]), for callers that
/// do not keep a cache.
pub fn build(init_binary: &[u8], spec_json: &[u8]) -> Initramfs {
    let mut bytes = build_base(init_binary);
    bytes.extend_from_slice(&build_spec(spec_json));
    Initramfs {
        base: None,
        tail: bytes,
    }
}

/// An initramfs as the VMM loads it: an optional archive file mapped into guest RAM, then
/// bytes written right after it (at the next page).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Initramfs {
    /// A cached archive file (e.g. from [`cached_base`]); it must not be modified in place
    /// while a VM may map it (the cache only ever replaces files by rename).
    pub base: Option<PathBuf>,
    /// Bytes placed after it, e.g. [`build_spec`]'s archive.
    pub tail: Vec<u8>,
}

/// The cached [`build_base`] archive for `init` in `dir`, built on first use. The cache key is
/// the init binary's size, modification time and inode, so a rebuilt init gets a new archive
/// without hashing 1–2 MB on every run.
pub fn cached_base(dir: &Path, init: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(init)?;
    let key = format!(
        "init-{:x}-{:x}-{:x}-{:x}.cpio",
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ino()
    );
    let path = dir.join(key);
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir)?;
    let archive = build_base(&std::fs::read(init)?);
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, archive)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimal newc reader to check the writer.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let start = b.as_ptr() as usize;
        loop {
            assert_eq!(&b[..6], b"070701");
            let f = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, namesize) = (f(1), f(6) as usize, f(11) as usize);
            let name = String::from_utf8(b[110..110 + namesize - 1].to_vec()).unwrap();
            let mut off = 110 + namesize;
            off += (4 - (b.as_ptr() as usize + off - start) % 4) % 4;
            let data = b[off..off + size].to_vec();
            off += size;
            off += (4 - (b.as_ptr() as usize + off - start) % 4) % 4;
            b = &b[off..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push((name, mode, data));
        }
    }

    /// Splits concatenated archives at the NUL padding, as the kernel does, and parses each.
    fn parse_all(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            let end = b
                .windows(10)
                .position(|w| w == b"TRAILER!!!")
                .expect("trailer");
            let end = (end + 11).next_multiple_of(4);
            out.extend(parse(&b[..end]));
            b = &b[end..];
            while b.first() == Some(&0) {
                b = &b[1..];
            }
        }
        out
    }

    #[test]
    fn roundtrip() {
        let a = build(b"\x7fELFabc", b"{\"args\":[\"x\"]}").tail;
        assert_eq!(a.len() % 4, 0);
        let e = parse_all(&a);
        let names: Vec<_> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "proc",
                "sys",
                "newroot",
                "init",
                SPEC_PATH
            ]
        );
        assert_eq!(e[1].1, 0o020600);
        assert_eq!(e[5].1, 0o100755);
        assert_eq!(e[5].2, b"\x7fELFabc");
        assert_eq!(e[6].2, b"{\"args\":[\"x\"]}");
    }

    #[test]
    fn base_is_page_sized_and_cached() {
        assert_eq!(build_base(b"x").len() % PAGE, 0);
        let dir = std::env::temp_dir().join(format!("vcmp-initrd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let init = dir.join("init");
        std::fs::write(&init, b"\x7fELFinit").unwrap();
        let a = cached_base(&dir.join("cache"), &init).unwrap();
        assert_eq!(cached_base(&dir.join("cache"), &init).unwrap(), a);
        assert_eq!(std::fs::read(&a).unwrap(), build_base(b"\x7fELFinit"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
