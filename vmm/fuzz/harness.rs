//! Shared by the 9P fuzz targets (`vmm/fuzz/fuzz_targets/*.rs`) and the stable-Rust tests
//! that replay their corpora (`vmm/tests/p9_corpus.rs`, `vmm/tests/p9_server.rs`), which
//! include this file with `#[path]`: a T-message builder, a share sandbox with a canary
//! directory outside it, the two fuzz bodies with their invariants, and the seed inputs.
//!
//! A p9_server input is a sequence of 9P messages, each framed by its own size prefix. Every
//! input runs against a freshly laid share, after an automatic Tversion and a Tattach of fid
//! [`ROOT_FID`], so fids exist from the first message on.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use vcompare_vmm::devices::virtio::p9::server::{Server, MAX_MSIZE};
use vcompare_vmm::devices::virtio::p9::wire::{self, op, Reply, HEADER};

/// The tag every message built by [`t`] carries.
pub const TAG: u16 = 1;
/// No fid (Tattach's afid).
pub const NOFID: u32 = u32::MAX;
/// The fid the automatic Tattach binds to the share's root.
pub const ROOT_FID: u32 = 0;
/// The msize the automatic Tversion asks for.
pub const MSIZE: u32 = 64 * 1024;
/// Largest message the server fuzz body cuts from an input.
pub const MAX_FRAME: usize = 2 * MSIZE as usize;
/// Content of the canary file outside the share.
pub const CANARY: &[u8] = b"canary: the guest must never read, change or remove this\n";
/// Content of the share's `hello.txt`.
pub const HELLO: &[u8] = b"hello world\n";

/// Builds one T-message: [`Msg::new`], fields in wire order, [`Msg::build`].
pub struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    /// Starts a message of type `kind` with tag [`TAG`].
    pub fn new(kind: u8) -> Msg {
        let mut buf = vec![0; 4];
        buf.push(kind);
        buf.extend_from_slice(&TAG.to_le_bytes());
        Msg { buf }
    }
    /// Appends a byte.
    pub fn u8(mut self, v: u8) -> Msg {
        self.buf.push(v);
        self
    }
    /// Appends a u16.
    pub fn u16(mut self, v: u16) -> Msg {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a u32.
    pub fn u32(mut self, v: u32) -> Msg {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a u64.
    pub fn u64(mut self, v: u64) -> Msg {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// Appends a 9P string (u16 length, bytes).
    pub fn str(self, s: &str) -> Msg {
        self.u16(s.len() as u16).raw(s.as_bytes())
    }
    /// Appends bytes as they are.
    pub fn raw(mut self, b: &[u8]) -> Msg {
        self.buf.extend_from_slice(b);
        self
    }
    /// Writes the size field and returns the message.
    pub fn build(mut self) -> Vec<u8> {
        let n = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&n.to_le_bytes());
        self.buf
    }
}

/// Well-formed T-messages as the Linux client sends them (all with tag [`TAG`]).
pub mod t {
    use super::{op, Msg, NOFID};

    /// Tversion.
    pub fn version(msize: u32, version: &str) -> Vec<u8> {
        Msg::new(op::TVERSION).u32(msize).str(version).build()
    }
    /// Tattach of `fid` to the share's root as numeric user `n_uname`.
    pub fn attach(fid: u32, n_uname: u32) -> Vec<u8> {
        let m = Msg::new(op::TATTACH).u32(fid).u32(NOFID);
        m.str("").str("").u32(n_uname).build()
    }
    /// Twalk from `fid` to `newfid` through `names`.
    pub fn walk(fid: u32, newfid: u32, names: &[&str]) -> Vec<u8> {
        let m = Msg::new(op::TWALK).u32(fid).u32(newfid);
        names
            .iter()
            .fold(m.u16(names.len() as u16), |m, n| m.str(n))
            .build()
    }
    /// Tlopen.
    pub fn lopen(fid: u32, flags: u32) -> Vec<u8> {
        Msg::new(op::TLOPEN).u32(fid).u32(flags).build()
    }
    /// Tlcreate of `name` in directory fid `fid` (which becomes the new file).
    pub fn lcreate(fid: u32, name: &str, flags: u32, mode: u32) -> Vec<u8> {
        let m = Msg::new(op::TLCREATE).u32(fid).str(name);
        m.u32(flags).u32(mode).u32(0).build()
    }
    /// Tsymlink `name` -> `target` in directory fid `fid`.
    pub fn symlink(fid: u32, name: &str, target: &str) -> Vec<u8> {
        let m = Msg::new(op::TSYMLINK).u32(fid).str(name);
        m.str(target).u32(0).build()
    }
    /// Tmknod.
    pub fn mknod(dfid: u32, name: &str, mode: u32, major: u32, minor: u32) -> Vec<u8> {
        let m = Msg::new(op::TMKNOD).u32(dfid).str(name).u32(mode);
        m.u32(major).u32(minor).u32(0).build()
    }
    /// Treadlink.
    pub fn readlink(fid: u32) -> Vec<u8> {
        Msg::new(op::TREADLINK).u32(fid).build()
    }
    /// Tgetattr of the basic fields.
    pub fn getattr(fid: u32) -> Vec<u8> {
        Msg::new(op::TGETATTR).u32(fid).u64(0x7ff).build()
    }
    /// Tsetattr with `valid` (P9_SETATTR_*) and zero times.
    pub fn setattr(fid: u32, valid: u32, mode: u32, uid: u32, gid: u32, size: u64) -> Vec<u8> {
        let m = Msg::new(op::TSETATTR).u32(fid).u32(valid).u32(mode);
        m.u32(uid).u32(gid).u64(size).raw(&[0; 32]).build()
    }
    /// Treaddir.
    pub fn readdir(fid: u32, offset: u64, count: u32) -> Vec<u8> {
        Msg::new(op::TREADDIR)
            .u32(fid)
            .u64(offset)
            .u32(count)
            .build()
    }
    /// Tfsync.
    pub fn fsync(fid: u32) -> Vec<u8> {
        Msg::new(op::TFSYNC).u32(fid).build()
    }
    /// Tlink: a new name `name` in directory `dfid` for the file `fid`.
    pub fn link(dfid: u32, fid: u32, name: &str) -> Vec<u8> {
        Msg::new(op::TLINK).u32(dfid).u32(fid).str(name).build()
    }
    /// Tmkdir.
    pub fn mkdir(dfid: u32, name: &str, mode: u32) -> Vec<u8> {
        Msg::new(op::TMKDIR)
            .u32(dfid)
            .str(name)
            .u32(mode)
            .u32(0)
            .build()
    }
    /// Trenameat.
    pub fn renameat(olddir: u32, oldname: &str, newdir: u32, newname: &str) -> Vec<u8> {
        let m = Msg::new(op::TRENAMEAT).u32(olddir).str(oldname);
        m.u32(newdir).str(newname).build()
    }
    /// Tunlinkat (`flags` 0x200 removes a directory).
    pub fn unlinkat(dfid: u32, name: &str, flags: u32) -> Vec<u8> {
        Msg::new(op::TUNLINKAT)
            .u32(dfid)
            .str(name)
            .u32(flags)
            .build()
    }
    /// Tstatfs.
    pub fn statfs(fid: u32) -> Vec<u8> {
        Msg::new(op::TSTATFS).u32(fid).build()
    }
    /// Tread.
    pub fn read(fid: u32, offset: u64, count: u32) -> Vec<u8> {
        Msg::new(op::TREAD).u32(fid).u64(offset).u32(count).build()
    }
    /// Twrite.
    pub fn write(fid: u32, offset: u64, data: &[u8]) -> Vec<u8> {
        let m = Msg::new(op::TWRITE).u32(fid).u64(offset);
        m.u32(data.len() as u32).raw(data).build()
    }
    /// Tclunk.
    pub fn clunk(fid: u32) -> Vec<u8> {
        Msg::new(op::TCLUNK).u32(fid).build()
    }
}

/// A test directory: `share/` (the 9P root, laid anew by [`Sandbox::reset`]) next to
/// `outside/`, a canary the guest must never touch, reachable only through the share's
/// symlinks `up -> ../outside` and `sub/up2 -> ../../outside`.
pub struct Sandbox {
    base: PathBuf,
    canary: Snapshot,
}

/// What [`Sandbox::check`] compares: the base directory's names, every entry below
/// `outside/` with its metadata and content, and `/etc`'s owner and mode.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    base_names: Vec<String>,
    outside: BTreeMap<PathBuf, (u32, u32, u32, i64, Vec<u8>)>,
    etc: (u32, u32, u32),
}

impl Sandbox {
    /// Creates the directories under `/dev/shm` (or the temp directory) and lays the share.
    pub fn new() -> Sandbox {
        static N: AtomicUsize = AtomicUsize::new(0);
        let tmp = Path::new("/dev/shm");
        let tmp = if tmp.is_dir() {
            tmp.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let n = N.fetch_add(1, Ordering::Relaxed);
        let base = tmp.join(format!("vcompare-p9-{}-{n}", std::process::id()));
        let _ = remove_all(&base);
        let outside = base.join("outside");
        fs::create_dir_all(outside.join("deep")).expect("create the canary directory");
        fs::write(outside.join("secret.txt"), CANARY).expect("write the canary");
        fs::set_permissions(
            outside.join("secret.txt"),
            fs::Permissions::from_mode(0o640),
        )
        .expect("chmod the canary");
        fs::write(outside.join("deep/inner.txt"), CANARY).expect("write the canary");
        let mut sb = Sandbox {
            canary: Snapshot {
                base_names: vec![],
                outside: BTreeMap::new(),
                etc: (0, 0, 0),
            },
            base,
        };
        sb.reset();
        sb.canary = sb.snapshot();
        sb
    }

    /// The share's root.
    pub fn root(&self) -> PathBuf {
        self.base.join("share")
    }

    /// The canary directory next to the share.
    pub fn outside(&self) -> PathBuf {
        self.base.join("outside")
    }

    /// Lays the share anew: `hello.txt`, `empty`, `sub/nested.txt`, `sub/deeper/`, and the
    /// symlinks `etc -> /etc`, `up -> ../outside`, `abs -> <outside's absolute path>`,
    /// `sub/up2 -> ../../outside`.
    pub fn reset(&mut self) {
        let root = self.root();
        remove_all(&root).expect("remove the old share");
        fs::create_dir_all(root.join("sub/deeper")).expect("create the share");
        fs::write(root.join("hello.txt"), HELLO).expect("lay the share");
        fs::write(root.join("empty"), b"").expect("lay the share");
        fs::write(root.join("sub/nested.txt"), b"nested\n").expect("lay the share");
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).expect("lay the share")
        };
        link(Path::new("/etc"), "etc");
        link(Path::new("../outside"), "up");
        link(&self.outside(), "abs");
        link(Path::new("../../outside"), "sub/up2");
    }

    fn snapshot(&self) -> Snapshot {
        let mut base_names: Vec<String> = fs::read_dir(&self.base)
            .expect("list the sandbox")
            .map(|e| {
                e.expect("list the sandbox")
                    .file_name()
                    .into_string()
                    .unwrap()
            })
            .collect();
        base_names.sort();
        let mut outside = BTreeMap::new();
        let mut todo = vec![self.outside()];
        while let Some(p) = todo.pop() {
            let md = fs::symlink_metadata(&p).expect("stat the canary");
            let content = if md.is_file() {
                fs::read(&p).expect("read the canary")
            } else {
                vec![]
            };
            if md.is_dir() {
                for e in fs::read_dir(&p).expect("list the canary") {
                    todo.push(e.expect("list the canary").path());
                }
            }
            let key = (md.mode(), md.uid(), md.gid(), md.mtime(), content);
            outside.insert(p, key);
        }
        let etc = fs::metadata("/etc").expect("stat /etc");
        Snapshot {
            base_names,
            outside,
            etc: (etc.mode(), etc.uid(), etc.gid()),
        }
    }

    /// Panics if anything outside the share changed: a new entry next to it, an entry of
    /// `outside/` created, removed, rewritten, chmod-ed or chown-ed, or `/etc` chmod-ed.
    pub fn check(&self) {
        assert_eq!(
            self.snapshot(),
            self.canary,
            "the guest reached outside the share"
        );
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = remove_all(&self.base);
    }
}

/// `rm -rf`, making directories searchable and writable first if needed.
fn remove_all(p: &Path) -> std::io::Result<()> {
    match fs::remove_dir_all(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            let mut todo = vec![p.to_path_buf()];
            while let Some(d) = todo.pop() {
                if fs::symlink_metadata(&d).is_ok_and(|m| m.is_dir()) {
                    fs::set_permissions(&d, fs::Permissions::from_mode(0o700))?;
                    for e in fs::read_dir(&d)? {
                        todo.push(e?.path());
                    }
                }
            }
            fs::remove_dir_all(p)
        }
        ok => ok,
    }
}

/// A server on a share and its reply buffer, with checked round trips.
pub struct Conn {
    /// The server under test.
    pub server: Server,
    /// The last reply.
    pub reply: Reply,
}

impl Conn {
    /// A server on `root`, without any message sent yet.
    pub fn new(root: &Path, read_only: bool) -> Conn {
        Conn {
            server: Server::new(root, read_only).expect("serve the share"),
            reply: Reply::default(),
        }
    }

    /// A server on `root` after Tversion and Tattach of [`ROOT_FID`] as uid 0.
    pub fn attached(root: &Path, read_only: bool) -> Conn {
        let mut c = Conn::new(root, read_only);
        c.ok(&t::version(MSIZE, "9P2000.L"));
        c.ok(&t::attach(ROOT_FID, 0));
        c
    }

    /// Sends `msg`, checks that the reply is well formed (see [`check_reply`]) and
    /// returns it.
    pub fn call(&mut self, msg: &[u8]) -> &[u8] {
        self.server.handle(msg, &mut self.reply);
        check_reply(msg, &self.reply.buf);
        &self.reply.buf
    }

    /// Sends `msg` and returns its reply, which must not be an Rlerror.
    pub fn ok(&mut self, msg: &[u8]) -> &[u8] {
        let r = self.call(msg);
        assert_ne!(r[4], op::RLERROR, "{msg:?} failed: errno {:?}", errno(r));
        r
    }

    /// Sends `msg` and returns the errno of its reply, which must be an Rlerror.
    pub fn err(&mut self, msg: &[u8]) -> u32 {
        let r = self.call(msg);
        errno(r).unwrap_or_else(|| panic!("{msg:?} should have failed, got {r:?}"))
    }
}

/// The errno of an Rlerror, `None` for any other reply.
pub fn errno(reply: &[u8]) -> Option<u32> {
    (reply[4] == op::RLERROR).then(|| u32::from_le_bytes(reply[7..11].try_into().unwrap()))
}

/// Panics unless `reply` is a well-formed answer to `msg`: size field equal to its length,
/// at most one maximal message plus a page, the R-type of the message or Rlerror with a
/// plausible errno, and the message's tag (or NOTAG when its header was unusable).
pub fn check_reply(msg: &[u8], reply: &[u8]) {
    assert!(reply.len() >= HEADER, "short reply {reply:?}");
    let size = u32::from_le_bytes(reply[0..4].try_into().unwrap()) as usize;
    assert_eq!(size, reply.len(), "reply size field");
    assert!(reply.len() <= MAX_MSIZE as usize + 4096, "reply too large");
    let tag = u16::from_le_bytes([reply[5], reply[6]]);
    match wire::split_header(msg) {
        Ok((kind, mtag, _)) => {
            assert_eq!(tag, mtag, "reply tag");
            assert!(
                reply[4] == kind.wrapping_add(1) || reply[4] == op::RLERROR,
                "reply type {} to type {kind}",
                reply[4]
            );
        }
        Err(_) => assert_eq!(
            (reply[4], tag),
            (op::RLERROR, u16::MAX),
            "reply to a bad header"
        ),
    }
    if let Some(e) = errno(reply) {
        assert!((1..4096).contains(&e), "errno {e}");
    }
}

/// Cuts an input into messages by their own size prefixes: a size below 4 takes 4 bytes, a
/// size past the end takes the rest, and no message is longer than [`MAX_FRAME`].
pub fn frames(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let size = u32::from_le_bytes(data[0..4].try_into().unwrap()) as usize;
        let n = size.clamp(4, data.len().min(MAX_FRAME));
        let (msg, rest) = data.split_at(n);
        data = rest;
        Some(msg)
    })
}

/// The p9_wire fuzz body: the header splitter and the decoder on arbitrary bytes, both as a
/// whole message and as a bare type byte plus body. Must never panic.
pub fn fuzz_wire(data: &[u8]) {
    if let Ok((kind, _, body)) = wire::split_header(data) {
        assert!(body.len() + HEADER <= data.len());
        let _ = wire::decode(kind, body);
    }
    if let Some((&kind, body)) = data.split_first() {
        if let Ok(wire::Request::Walk { names, .. }) = wire::decode(kind, body) {
            assert!(names.len() <= wire::MAX_WALK);
        }
    }
}

/// The p9_server fuzz body: lays the share anew, attaches, feeds every message of `data` to
/// one server checking each reply, then checks the canary. Panics on any violation.
pub fn fuzz_server(sandbox: &mut Sandbox, data: &[u8]) {
    sandbox.reset();
    {
        let mut conn = Conn::attached(&sandbox.root(), false);
        for msg in frames(data) {
            conn.call(msg);
        }
    }
    sandbox.check();
}

/// Runs `f` with this process's sandbox (made on first use, removed at exit).
pub fn with_process_sandbox(f: impl FnOnce(&mut Sandbox)) {
    use std::sync::{Mutex, OnceLock};
    static SANDBOX: OnceLock<Mutex<Option<Sandbox>>> = OnceLock::new();
    extern "C" fn cleanup() {
        if let Some(m) = SANDBOX.get() {
            if let Ok(mut s) = m.lock() {
                s.take();
            }
        }
    }
    let m = SANDBOX.get_or_init(|| {
        // SAFETY: registers a plain extern "C" function with no arguments.
        unsafe { atexit(cleanup) };
        Mutex::new(Some(Sandbox::new()))
    });
    let mut guard = m.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.as_mut().expect("sandbox alive until exit"));
}

extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

/// Linux open flags as 9P2000.L sends them.
pub mod flags {
    /// O_RDONLY.
    pub const RDONLY: u32 = 0;
    /// O_WRONLY.
    pub const WRONLY: u32 = 1;
    /// O_RDWR.
    pub const RDWR: u32 = 2;
    /// O_CREAT.
    pub const CREAT: u32 = 0o100;
    /// O_EXCL.
    pub const EXCL: u32 = 0o200;
    /// O_TRUNC.
    pub const TRUNC: u32 = 0o1000;
    /// O_APPEND.
    pub const APPEND: u32 = 0o2000;
    /// O_DIRECTORY.
    pub const DIRECTORY: u32 = 0o200000;
    /// Tunlinkat's AT_REMOVEDIR.
    pub const REMOVEDIR: u32 = 0x200;
    /// S_IFIFO.
    pub const S_IFIFO: u32 = 0o010000;
    /// S_IFCHR.
    pub const S_IFCHR: u32 = 0o020000;
    /// S_IFREG.
    pub const S_IFREG: u32 = 0o100000;
    /// Tsetattr: mode valid.
    pub const SET_MODE: u32 = 0x1;
    /// Tsetattr: uid valid.
    pub const SET_UID: u32 = 0x2;
    /// Tsetattr: size valid.
    pub const SET_SIZE: u32 = 0x8;
    /// Tsetattr: atime and mtime to now.
    pub const SET_TIMES: u32 = 0x30;
}

/// Seed inputs for p9_server: named message sequences (after the automatic attach of
/// [`ROOT_FID`]) as the Linux client sends them, then hostile ones.
pub fn server_seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    use flags::*;
    let big = "x".repeat(300);
    vec![
        (
            "ls",
            vec![
                t::getattr(0),
                t::walk(0, 1, &[]),
                t::lopen(1, RDONLY | DIRECTORY),
                t::readdir(1, 0, 8168),
                t::readdir(1, 3, 8168),
                t::clunk(1),
                t::statfs(0),
            ],
        ),
        (
            "cat",
            vec![
                t::walk(0, 1, &["hello.txt"]),
                t::getattr(1),
                t::lopen(1, RDONLY),
                t::read(1, 0, 8192),
                t::read(1, 12, 8192),
                t::clunk(1),
                t::walk(0, 2, &["sub", "nested.txt"]),
                t::lopen(2, RDONLY),
                t::read(2, 0, 100),
            ],
        ),
        (
            "create_write",
            vec![
                t::walk(0, 1, &[]),
                t::lcreate(1, "new.txt", WRONLY | CREAT | TRUNC, 0o644),
                t::write(1, 0, b"some data"),
                t::write(1, 4, b"DATA"),
                t::fsync(1),
                t::clunk(1),
                t::walk(0, 2, &["new.txt"]),
                t::lopen(2, RDWR | APPEND),
                t::write(2, 0, b"appended"),
                t::read(2, 0, 64),
                t::getattr(2),
                t::setattr(2, SET_SIZE | SET_MODE, 0o600, 0, 0, 3),
                t::setattr(2, SET_TIMES, 0, 0, 0, 0),
                t::clunk(2),
            ],
        ),
        (
            "mkdir_tree",
            vec![
                t::mkdir(0, "d", 0o755),
                t::walk(0, 1, &["d"]),
                t::mkdir(1, "e", 0o700),
                t::walk(1, 2, &["e"]),
                t::lcreate(2, "f", RDWR | CREAT | EXCL, 0o644),
                t::write(2, 0, b"f"),
                t::walk(0, 3, &["d", "e", "f"]),
                t::getattr(3),
                t::unlinkat(1, "e", REMOVEDIR),
                t::walk(1, 4, &["e"]),
                t::lopen(4, RDONLY | DIRECTORY),
                t::readdir(4, 0, 4096),
            ],
        ),
        (
            "rename_unlink",
            vec![
                t::renameat(0, "hello.txt", 0, "renamed"),
                t::walk(0, 1, &["sub"]),
                t::renameat(0, "renamed", 1, "moved"),
                t::renameat(1, "deeper", 0, "deeper"),
                t::unlinkat(1, "moved", 0),
                t::unlinkat(0, "sub", REMOVEDIR),
                t::unlinkat(0, "deeper", REMOVEDIR),
                t::unlinkat(0, "empty", 0),
            ],
        ),
        (
            "links",
            vec![
                t::symlink(0, "ln", "hello.txt"),
                t::walk(0, 1, &["ln"]),
                t::readlink(1),
                t::getattr(1),
                t::walk(0, 2, &["hello.txt"]),
                t::link(0, 2, "hard"),
                t::getattr(2),
                t::walk(0, 3, &["up"]),
                t::readlink(3),
                t::walk(0, 4, &["sub", "up2"]),
                t::readlink(4),
            ],
        ),
        (
            "mknod",
            vec![
                t::mknod(0, "fifo", S_IFIFO | 0o644, 0, 0),
                t::mknod(0, "reg", S_IFREG | 0o644, 0, 0),
                t::mknod(0, "null", S_IFCHR | 0o666, 1, 3),
                t::walk(0, 1, &["fifo"]),
                t::lopen(1, RDONLY),
                t::getattr(1),
            ],
        ),
        (
            // Regression: Tlcreate over an existing FIFO used to block in open(2) forever.
            "lcreate_fifo",
            vec![
                t::mknod(0, "fifo", S_IFIFO | 0o644, 0, 0),
                t::walk(0, 1, &[]),
                t::lcreate(1, "fifo", RDONLY | CREAT, 0o644),
                t::walk(0, 2, &[]),
                t::lcreate(2, "fifo", RDWR | CREAT, 0o644),
                t::read(2, 0, 10),
            ],
        ),
        (
            "misc_ops",
            vec![
                Msg::new(op::TLOCK)
                    .u32(0)
                    .u8(0)
                    .u32(0)
                    .u64(0)
                    .u64(0)
                    .u32(1)
                    .str("c")
                    .build(),
                Msg::new(op::TGETLOCK)
                    .u32(0)
                    .u8(0)
                    .u64(0)
                    .u64(10)
                    .u32(1)
                    .str("client")
                    .build(),
                Msg::new(op::TFLUSH).u16(1).build(),
                Msg::new(op::TXATTRWALK).u32(0).u32(5).str("user.x").build(),
                Msg::new(op::TAUTH).u32(9).str("").str("").u32(0).build(),
                Msg::new(op::TRENAME).u32(0).u32(0).str("x").build(),
                t::walk(0, 1, &["empty"]),
                Msg::new(op::TREMOVE).u32(1).build(),
                t::getattr(1),
            ],
        ),
        (
            "dotdot",
            vec![
                t::walk(0, 1, &[".."]),
                t::getattr(1),
                t::walk(0, 2, &["..", ".."]),
                t::walk(0, 3, &["sub", "..", "..", ".."]),
                t::lopen(3, RDONLY | DIRECTORY),
                t::readdir(3, 0, 8192),
                t::walk(0, 4, &["sub", "deeper", "..", "..", ".."]),
                t::lcreate(4, "x", WRONLY | CREAT, 0o644),
                t::walk(0, 5, &["."]),
            ],
        ),
        (
            "bad_names",
            vec![
                t::walk(0, 1, &["sub/nested.txt"]),
                t::walk(0, 1, &["/etc"]),
                t::walk(0, 1, &["nul\0byte"]),
                t::walk(0, 1, &[""]),
                t::lcreate(0, "../x", WRONLY | CREAT, 0o644),
                t::lcreate(0, "a/b", WRONLY | CREAT, 0o644),
                t::lcreate(0, "..", WRONLY | CREAT, 0o644),
                t::mkdir(0, "..", 0o755),
                t::mkdir(0, "up/x", 0o755),
                t::symlink(0, ".", "/etc/passwd"),
                t::symlink(0, "../y", "x"),
                t::mknod(0, "../z", S_IFREG | 0o644, 0, 0),
                t::unlinkat(0, "..", REMOVEDIR),
                t::unlinkat(0, "up/secret.txt", 0),
                t::renameat(0, "hello.txt", 0, "../stolen"),
                t::renameat(0, "up/secret.txt", 0, "got"),
                t::link(0, 0, "../l"),
            ],
        ),
        (
            "outside_symlinks",
            vec![
                t::walk(0, 1, &["etc", "passwd"]),
                t::walk(0, 1, &["up", "secret.txt"]),
                t::walk(0, 1, &["abs", "secret.txt"]),
                t::walk(0, 1, &["sub", "up2", "deep"]),
                t::walk(0, 1, &["up"]),
                t::lopen(1, RDONLY),
                t::walk(1, 2, &["secret.txt"]),
                t::walk(1, 2, &[".."]),
                t::setattr(1, SET_MODE, 0o777, 0, 0, 0),
                t::setattr(1, SET_SIZE, 0, 0, 0, 0),
                t::setattr(1, SET_UID, 0, 1234, 0, 0),
                t::lcreate(1, "pwn", WRONLY | CREAT, 0o644),
                t::mkdir(1, "pwn", 0o755),
                t::symlink(1, "pwn", "x"),
                t::mknod(1, "pwn", S_IFREG | 0o644, 0, 0),
                t::unlinkat(1, "secret.txt", 0),
                t::renameat(0, "hello.txt", 1, "stolen"),
                t::renameat(1, "secret.txt", 0, "got"),
                t::link(1, 0, "x"),
                t::walk(0, 3, &["hello.txt"]),
                t::link(1, 3, "x"),
                t::readdir(1, 0, 4096),
                t::statfs(1),
            ],
        ),
        (
            "huge_counts",
            vec![
                t::walk(0, 1, &["hello.txt"]),
                t::lopen(1, RDWR),
                t::read(1, 0, u32::MAX),
                t::read(1, u64::MAX, u32::MAX),
                t::read(1, i64::MAX as u64, 10),
                t::write(1, u64::MAX - 1, b"x"),
                t::write(1, 1 << 40, b"x"),
                t::setattr(1, SET_SIZE, 0, 0, 0, u64::MAX),
                t::walk(0, 2, &[]),
                t::lopen(2, RDONLY | DIRECTORY),
                t::readdir(2, 0, u32::MAX),
                t::readdir(2, u64::MAX, 0),
                t::readdir(2, 0, 10),
                t::version(u32::MAX, "9P2000.L"),
                t::version(0, "9P2000.L"),
                t::version(8192, "9P2000.u"),
                t::attach(0, u32::MAX),
                t::walk(0, 3, &[&big, &big]),
                t::symlink(0, "long", &"a".repeat(5000)),
                t::walk(0, 4, &["long"]),
                t::readlink(4),
            ],
        ),
        (
            "truncated",
            vec![
                Msg::new(op::TWALK)
                    .u32(0)
                    .u32(1)
                    .u16(1)
                    .u16(0xffff)
                    .raw(b"ab")
                    .build(),
                Msg::new(op::TLCREATE).u32(0).u16(5).raw(b"ab").build(),
                Msg::new(op::TWRITE)
                    .u32(0)
                    .u64(0)
                    .u32(1000)
                    .raw(b"abc")
                    .build(),
                Msg::new(op::TWALK).u32(0).u32(1).u16(17).build(),
                Msg::new(op::TVERSION).build(),
                Msg::new(0).build(),
                Msg::new(255).u32(1).build(),
                Msg::new(op::TCLUNK).u32(0).build()[..6].to_vec(),
                Msg::new(op::TREAD).u32(0).u64(0).build(),
                vec![3, 0, 0, 0],
                vec![7, 0, 0, 0, op::TFLUSH, 1, 0],
            ],
        ),
        (
            "fid_games",
            vec![
                t::attach(0, 0),
                t::walk(0, 0, &["sub"]),
                t::walk(0, 1, &[".."]),
                t::attach(2, 1000),
                t::walk(2, 1, &[]),
                t::clunk(2),
                t::clunk(2),
                t::lcreate(2, "x", WRONLY | CREAT, 0o644),
                t::walk(1, 3, &["hello.txt"]),
                t::lcreate(3, "x", WRONLY | CREAT, 0o644),
                t::readdir(3, 0, 100),
                t::write(3, 0, b"x"),
                t::version(MSIZE, "9P2000.L"),
                t::getattr(1),
                t::attach(7, 0),
                t::getattr(7),
            ],
        ),
        (
            "swap",
            vec![
                t::mkdir(0, "d", 0o755),
                t::walk(0, 1, &["d"]),
                t::renameat(0, "d", 0, "d.old"),
                t::renameat(0, "up", 0, "d"),
                t::lcreate(1, "in_old", WRONLY | CREAT, 0o644),
                t::walk(0, 2, &["d"]),
                t::lcreate(2, "in_link", WRONLY | CREAT, 0o644),
                t::walk(0, 3, &["d", "secret.txt"]),
                t::renameat(0, "d.old", 0, "sub"),
                t::walk(1, 4, &["..", "hello.txt"]),
            ],
        ),
    ]
}

/// Seed inputs for p9_wire: every message of [`server_seeds`], one per input.
pub fn wire_seeds() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = server_seeds().into_iter().flat_map(|(_, m)| m).collect();
    all.sort();
    all.dedup();
    all
}
