//! Initramfs support: the kernel's "newc" cpio format and how the VMM loads an archive.
//! vcompare's own VMs boot without one (the init is on the root disk, see [`crate::disk`]);
//! the VMM still takes one, as any microVM monitor does, and the benchmark's QEMU peer boots
//! the conventional way with an archive written by [`CpioWriter`]. Uncompressed on purpose:
//! on PVM hosts gunzip in the guest kernel costs far more than copying more bytes.

use std::path::PathBuf;

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

/// An initramfs as the VMM loads it: an optional archive file mapped into guest RAM, then
/// bytes written right after it (at the next page).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Initramfs {
    /// An archive file the VMM maps copy-on-write into guest RAM (no read, no copy); it must
    /// not be modified in place while a VM may map it (replace such files by rename).
    pub base: Option<PathBuf>,
    /// Bytes placed after it (a second archive: the kernel unpacks them one after the
    /// other, skipping the NUL padding between them).
    pub tail: Vec<u8>,
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
        let mut w = CpioWriter::new();
        w.dir("dev", 0o755)
            .char_dev("dev/console", 0o600, 5, 1)
            .file("init", 0o755, b"\x7fELFabc");
        let mut a = w.finish();
        assert_eq!(a.len() % 4, 0);
        // A second archive after NUL padding, as the VMM lays out base + tail.
        a.resize(a.len().next_multiple_of(4096), 0);
        let mut w = CpioWriter::new();
        w.file("spec.json", 0o644, b"{}");
        a.extend(w.finish());
        let e = parse_all(&a);
        let names: Vec<_> = e.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, ["dev", "dev/console", "init", "spec.json"]);
        assert_eq!(e[0].1, 0o040755);
        assert_eq!(e[1].1, 0o020600);
        assert_eq!(e[2].1, 0o100755);
        assert_eq!(e[2].2, b"\x7fELFabc");
        assert_eq!(e[3].2, b"{}");
    }
}
