//! The 9P2000.L wire format: decoding the guest's T-messages and encoding our R-messages.
//! Decoding is a pure function of the bytes, so it is what the fuzz target drives first:
//! every length is checked against the buffer, nothing is trusted, no allocation is larger
//! than the message itself.

/// Bytes in a message header: size[4] type[1] tag[2].
pub const HEADER: usize = 7;
/// Largest number of names in one Twalk (the protocol's MAXWELEM).
pub const MAX_WALK: usize = 16;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message ends before a field it announces.
    #[error("message truncated")]
    Truncated,
    /// The size field disagrees with the bytes received.
    #[error("bad message size {0}")]
    BadSize(u32),
    /// A message type this server does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// Twalk with more than [`MAX_WALK`] names.
    #[error("too many walk names ({0})")]
    TooManyNames(u16),
}

/// A 13-byte qid: what a file is, as the client caches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Qid {
    /// QTDIR, QTSYMLINK or QTFILE.
    pub kind: u8,
    /// Changes when the file changes (we use 0: no client-side caching by version).
    pub version: u32,
    /// Unique per file: the host inode number.
    pub path: u64,
}

/// Qid type of a directory.
pub const QTDIR: u8 = 0x80;
/// Qid type of a symbolic link.
pub const QTSYMLINK: u8 = 0x02;
/// Qid type of anything else.
pub const QTFILE: u8 = 0x00;

/// A decoded T-message (9P2000.L subset the Linux client uses, plus the legacy ones it may
/// fall back to, which get an error reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    /// Tversion: msize, version string.
    Version { msize: u32, version: &'a [u8] },
    /// Tauth: refused (no authentication).
    Auth,
    /// Tattach: fid, n_uname (numeric uid of the user attaching).
    Attach { fid: u32, n_uname: u32 },
    /// Tflush: nothing is ever pending.
    Flush,
    /// Twalk: from fid to newfid through names.
    Walk {
        fid: u32,
        newfid: u32,
        names: Vec<&'a [u8]>,
    },
    /// Tlopen.
    Lopen { fid: u32, flags: u32 },
    /// Tlcreate.
    Lcreate {
        fid: u32,
        name: &'a [u8],
        flags: u32,
        mode: u32,
        gid: u32,
    },
    /// Tsymlink.
    Symlink {
        fid: u32,
        name: &'a [u8],
        target: &'a [u8],
        gid: u32,
    },
    /// Tmknod.
    Mknod {
        dfid: u32,
        name: &'a [u8],
        mode: u32,
        gid: u32,
    },
    /// Trename (by fid): the Linux client falls back to it only if Trenameat fails.
    Rename,
    /// Treadlink.
    Readlink { fid: u32 },
    /// Tgetattr.
    Getattr { fid: u32 },
    /// Tsetattr.
    Setattr { fid: u32, attr: SetAttr },
    /// Txattrwalk / Txattrcreate: extended attributes are not served.
    Xattr,
    /// Treaddir.
    Readdir { fid: u32, offset: u64, count: u32 },
    /// Tfsync.
    Fsync { fid: u32 },
    /// Tlock.
    Lock,
    /// Tgetlock: the reply echoes the request with "unlocked".
    Getlock {
        start: u64,
        length: u64,
        proc_id: u32,
        client_id: &'a [u8],
    },
    /// Tlink.
    Link { dfid: u32, fid: u32, name: &'a [u8] },
    /// Tmkdir.
    Mkdir {
        dfid: u32,
        name: &'a [u8],
        mode: u32,
        gid: u32,
    },
    /// Trenameat.
    Renameat {
        olddir: u32,
        oldname: &'a [u8],
        newdir: u32,
        newname: &'a [u8],
    },
    /// Tunlinkat.
    Unlinkat {
        dfid: u32,
        name: &'a [u8],
        flags: u32,
    },
    /// Tstatfs.
    Statfs { fid: u32 },
    /// Tread.
    Read { fid: u32, offset: u64, count: u32 },
    /// Twrite.
    Write {
        fid: u32,
        offset: u64,
        data: &'a [u8],
    },
    /// Tclunk.
    Clunk { fid: u32 },
    /// Tremove: the Linux client prefers Tunlinkat.
    Remove { fid: u32 },
}

/// Tsetattr's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// Which fields are valid (P9_SETATTR_*).
    pub valid: u32,
    /// New mode.
    pub mode: u32,
    /// New owner.
    pub uid: u32,
    /// New group.
    pub gid: u32,
    /// New size.
    pub size: u64,
    /// New access time (seconds, nanoseconds).
    pub atime: (u64, u64),
    /// New modification time.
    pub mtime: (u64, u64),
}

/// A bounds-checked little-endian reader over one message body.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<&'a [u8], WireError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

/// Message type numbers (9P2000.L).
pub mod op {
    #![allow(missing_docs)]
    pub const RLERROR: u8 = 7;
    pub const TSTATFS: u8 = 8;
    pub const TLOPEN: u8 = 12;
    pub const TLCREATE: u8 = 14;
    pub const TSYMLINK: u8 = 16;
    pub const TMKNOD: u8 = 18;
    pub const TRENAME: u8 = 20;
    pub const TREADLINK: u8 = 22;
    pub const TGETATTR: u8 = 24;
    pub const TSETATTR: u8 = 26;
    pub const TXATTRWALK: u8 = 30;
    pub const TXATTRCREATE: u8 = 32;
    pub const TREADDIR: u8 = 40;
    pub const TFSYNC: u8 = 50;
    pub const TLOCK: u8 = 52;
    pub const TGETLOCK: u8 = 54;
    pub const TLINK: u8 = 70;
    pub const TMKDIR: u8 = 72;
    pub const TRENAMEAT: u8 = 74;
    pub const TUNLINKAT: u8 = 76;
    pub const TVERSION: u8 = 100;
    pub const TAUTH: u8 = 102;
    pub const TATTACH: u8 = 104;
    pub const TFLUSH: u8 = 108;
    pub const TWALK: u8 = 110;
    pub const TREAD: u8 = 116;
    pub const TWRITE: u8 = 118;
    pub const TCLUNK: u8 = 120;
    pub const TREMOVE: u8 = 122;
}

/// The header of a message: its type and tag, and the body it announces. `msg` may be longer
/// than the size field says (trailing bytes of the guest's buffer are ignored), never shorter.
pub fn split_header(msg: &[u8]) -> Result<(u8, u16, &[u8]), WireError> {
    let mut c = Cursor { buf: msg };
    let size = c.u32()?;
    let kind = c.u8()?;
    let tag = c.u16()?;
    let size_us = size as usize;
    if size_us < HEADER || size_us > msg.len() {
        return Err(WireError::BadSize(size));
    }
    Ok((kind, tag, &msg[HEADER..size_us]))
}

/// Decodes the body of a message of type `kind`.
pub fn decode(kind: u8, body: &[u8]) -> Result<Request<'_>, WireError> {
    use op::*;
    let mut c = Cursor { buf: body };
    let r = match kind {
        TVERSION => Request::Version {
            msize: c.u32()?,
            version: c.string()?,
        },
        TAUTH => Request::Auth,
        TATTACH => {
            let fid = c.u32()?;
            let _afid = c.u32()?;
            let _uname = c.string()?;
            let _aname = c.string()?;
            Request::Attach {
                fid,
                n_uname: c.u32()?,
            }
        }
        TFLUSH => {
            c.u16()?;
            Request::Flush
        }
        TWALK => {
            let fid = c.u32()?;
            let newfid = c.u32()?;
            let n = c.u16()?;
            if n as usize > MAX_WALK {
                return Err(WireError::TooManyNames(n));
            }
            let names = (0..n).map(|_| c.string()).collect::<Result<_, _>>()?;
            Request::Walk { fid, newfid, names }
        }
        TLOPEN => Request::Lopen {
            fid: c.u32()?,
            flags: c.u32()?,
        },
        TLCREATE => Request::Lcreate {
            fid: c.u32()?,
            name: c.string()?,
            flags: c.u32()?,
            mode: c.u32()?,
            gid: c.u32()?,
        },
        TSYMLINK => Request::Symlink {
            fid: c.u32()?,
            name: c.string()?,
            target: c.string()?,
            gid: c.u32()?,
        },
        TMKNOD => {
            let dfid = c.u32()?;
            let name = c.string()?;
            let mode = c.u32()?;
            let _major = c.u32()?;
            let _minor = c.u32()?;
            Request::Mknod {
                dfid,
                name,
                mode,
                gid: c.u32()?,
            }
        }
        TRENAME => Request::Rename,
        TREADLINK => Request::Readlink { fid: c.u32()? },
        TGETATTR => {
            let fid = c.u32()?;
            c.u64()?;
            Request::Getattr { fid }
        }
        TSETATTR => Request::Setattr {
            fid: c.u32()?,
            attr: SetAttr {
                valid: c.u32()?,
                mode: c.u32()?,
                uid: c.u32()?,
                gid: c.u32()?,
                size: c.u64()?,
                atime: (c.u64()?, c.u64()?),
                mtime: (c.u64()?, c.u64()?),
            },
        },
        TXATTRWALK | TXATTRCREATE => Request::Xattr,
        TREADDIR => Request::Readdir {
            fid: c.u32()?,
            offset: c.u64()?,
            count: c.u32()?,
        },
        TFSYNC => Request::Fsync { fid: c.u32()? },
        TLOCK => Request::Lock,
        TGETLOCK => {
            let _fid = c.u32()?;
            let _type = c.u8()?;
            Request::Getlock {
                start: c.u64()?,
                length: c.u64()?,
                proc_id: c.u32()?,
                client_id: c.string()?,
            }
        }
        TLINK => Request::Link {
            dfid: c.u32()?,
            fid: c.u32()?,
            name: c.string()?,
        },
        TMKDIR => Request::Mkdir {
            dfid: c.u32()?,
            name: c.string()?,
            mode: c.u32()?,
            gid: c.u32()?,
        },
        TRENAMEAT => Request::Renameat {
            olddir: c.u32()?,
            oldname: c.string()?,
            newdir: c.u32()?,
            newname: c.string()?,
        },
        TUNLINKAT => Request::Unlinkat {
            dfid: c.u32()?,
            name: c.string()?,
            flags: c.u32()?,
        },
        TSTATFS => Request::Statfs { fid: c.u32()? },
        TREAD => Request::Read {
            fid: c.u32()?,
            offset: c.u64()?,
            count: c.u32()?,
        },
        TWRITE => {
            let fid = c.u32()?;
            let offset = c.u64()?;
            let n = c.u32()? as usize;
            Request::Write {
                fid,
                offset,
                data: c.take(n)?,
            }
        }
        TCLUNK => Request::Clunk { fid: c.u32()? },
        TREMOVE => Request::Remove { fid: c.u32()? },
        other => return Err(WireError::UnknownType(other)),
    };
    Ok(r)
}

/// Builds one R-message in a reusable buffer: [`Reply::start`], fields, [`Reply::finish`].
#[derive(Debug, Default)]
pub struct Reply {
    /// The encoded message.
    pub buf: Vec<u8>,
}

impl Reply {
    /// Starts a reply of type `kind` for `tag`, discarding any previous content.
    pub fn start(&mut self, kind: u8, tag: u16) {
        self.buf.clear();
        self.buf.extend_from_slice(&[0, 0, 0, 0, kind]);
        self.buf.extend_from_slice(&tag.to_le_bytes());
    }
    /// Appends a byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    /// Appends a u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a string (truncated at 65535 bytes, the protocol's limit).
    pub fn string(&mut self, s: &[u8]) -> &mut Self {
        let s = &s[..s.len().min(u16::MAX as usize)];
        self.u16(s.len() as u16);
        self.buf.extend_from_slice(s);
        self
    }
    /// Appends a qid.
    pub fn qid(&mut self, q: Qid) -> &mut Self {
        self.u8(q.kind).u32(q.version).u64(q.path)
    }
    /// Writes the size field; the reply is complete.
    pub fn finish(&mut self) {
        let n = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&n.to_le_bytes());
    }
    /// Replaces the reply with Rlerror(errno).
    pub fn error(&mut self, tag: u16, errno: i32) {
        self.start(op::RLERROR, tag);
        self.u32(errno as u32);
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = ((HEADER + body.len()) as u32).to_le_bytes().to_vec();
        m.push(kind);
        m.extend_from_slice(&1u16.to_le_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn walk_decodes_names() {
        let mut body = vec![];
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&2u32.to_le_bytes());
        body.extend_from_slice(&2u16.to_le_bytes());
        for n in [&b"a"[..], b"bc"] {
            body.extend_from_slice(&(n.len() as u16).to_le_bytes());
            body.extend_from_slice(n);
        }
        let m = msg(op::TWALK, &body);
        let (k, tag, b) = split_header(&m).unwrap();
        assert_eq!((k, tag), (op::TWALK, 1));
        assert_eq!(
            decode(k, b).unwrap(),
            Request::Walk {
                fid: 1,
                newfid: 2,
                names: vec![b"a", b"bc"]
            }
        );
    }

    #[test]
    fn lies_about_lengths_are_errors() {
        // Size field larger than the buffer.
        let mut m = msg(op::TCLUNK, &[1, 0, 0, 0]);
        m[0] = 200;
        assert_eq!(split_header(&m), Err(WireError::BadSize(200)));
        // Size smaller than a header.
        assert!(split_header(&[3, 0, 0, 0, 120, 0, 0]).is_err());
        // String length beyond the body.
        let body = [0, 0, 0, 0, 0xff, 0xff, b'a'];
        assert_eq!(decode(op::TVERSION, &body), Err(WireError::Truncated));
        // Write count beyond the body.
        let mut w = vec![0u8; 12];
        w.extend_from_slice(&1000u32.to_le_bytes());
        w.extend_from_slice(b"abc");
        assert_eq!(decode(op::TWRITE, &w), Err(WireError::Truncated));
        // Too many walk names.
        let mut b = vec![0u8; 8];
        b.extend_from_slice(&17u16.to_le_bytes());
        assert_eq!(decode(op::TWALK, &b), Err(WireError::TooManyNames(17)));
        assert_eq!(decode(99, &[]), Err(WireError::UnknownType(99)));
    }

    #[test]
    fn reply_sets_size() {
        let mut r = Reply::default();
        r.start(101, 0xffff);
        r.u32(8192).string(b"9P2000.L");
        r.finish();
        assert_eq!(r.buf.len(), 7 + 4 + 2 + 8);
        assert_eq!(u32::from_le_bytes(r.buf[0..4].try_into().unwrap()), 21);
        r.error(5, libc::ENOENT);
        assert_eq!(r.buf, [11, 0, 0, 0, 7, 5, 0, 2, 0, 0, 0]);
    }
}
