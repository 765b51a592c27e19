//! A tiny initramfs built per run: our static init as `/init` and its instructions as
//! `/vcompare.json`, in the kernel's "newc" cpio format. Uncompressed on purpose: in the
//! PVM emulator, gunzip in the guest kernel costs far more than copying a few hundred KiB more.

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

/// The per-run initramfs: `/init`, `/vcompare.json`, mount points, `/dev/console`.
pub fn build(init_binary: &[u8], spec_json: &[u8]) -> Vec<u8> {
    let mut w = CpioWriter::new();
    w.dir("dev", 0o755)
        .char_dev("dev/console", 0o600, 5, 1)
        .dir("proc", 0o555)
        .dir("sys", 0o555)
        .dir("newroot", 0o755)
        .file("init", 0o755, init_binary)
        .file(SPEC_PATH, 0o644, spec_json);
    w.finish()
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

    #[test]
    fn roundtrip() {
        let a = build(b"\x7fELFabc", b"{\"args\":[\"x\"]}");
        assert_eq!(a.len() % 4, 0);
        let e = parse(&a);
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
}
