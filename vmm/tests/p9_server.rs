//! The 9P2000.L server's semantics and confinement, with hand-built messages and no KVM: each
//! test drives `Server` on a fresh share (see `vmm/fuzz/harness.rs`, shared with the fuzz
//! targets) next to a canary directory, and asserts the exact reply or Rlerror errno.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::mpsc;
use std::time::Duration;

use harness::{flags::*, t, Conn, Sandbox, HELLO, ROOT_FID};
use vcompare_vmm::devices::virtio::p9::wire::{op, Qid, QTDIR, QTSYMLINK};

const EPERM: u32 = 1;
const ENOENT: u32 = 2;
const EBADF: u32 = 9;
const EACCES: u32 = 13;
const ENOTDIR: u32 = 20;
const EINVAL: u32 = 22;
const EROFS: u32 = 30;
const ELOOP: u32 = 40;
const EOPNOTSUPP: u32 = 95;

/// Reads an R-message's body fields in order (after the 7-byte header).
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn of(reply: &'a [u8]) -> Body<'a> {
        Body(&reply[7..])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn qid(&mut self) -> Qid {
        Qid {
            kind: self.u8(),
            version: self.u32(),
            path: self.u64(),
        }
    }
    fn qids(&mut self) -> Vec<Qid> {
        (0..self.u16()).map(|_| self.qid()).collect()
    }
    fn string(&mut self) -> &'a [u8] {
        let n = self.u16() as usize;
        self.take(n)
    }
}

/// A fresh sandbox and a read-write server attached to its share as fid [`ROOT_FID`].
fn setup() -> (Sandbox, Conn) {
    let sb = Sandbox::new();
    let conn = Conn::attached(&sb.root(), false);
    (sb, conn)
}

/// The qid of the share's root, as Tattach returns it.
fn root_qid(c: &mut Conn) -> Qid {
    c.ok(&t::attach(99, 0));
    let q = Body::of(&c.reply.buf).qid();
    c.ok(&t::clunk(99));
    q
}

/// Asserts that `fid` is not bound on the server.
fn assert_no_fid(c: &mut Conn, fid: u32) {
    assert_eq!(c.err(&t::getattr(fid)), EBADF, "fid {fid} exists");
}

#[test]
fn create_write_read_round_trip() {
    let (sb, mut c) = setup();
    c.ok(&t::walk(ROOT_FID, 1, &[]));
    let r = c.ok(&t::lcreate(1, "new.txt", RDWR | CREAT | EXCL, 0o640));
    assert_eq!(r[4], op::TLCREATE + 1);
    assert_eq!(Body::of(r).qid().kind, 0);
    assert_eq!(Body::of(c.ok(&t::write(1, 0, b"hello 9p"))).u32(), 8);
    let mut b = Body::of(c.ok(&t::read(1, 6, 100)));
    let n = b.u32() as usize;
    assert_eq!(b.take(n), b"9p");
    c.ok(&t::clunk(1));
    assert_eq!(fs::read(sb.root().join("new.txt")).unwrap(), b"hello 9p");
    let mode = fs::metadata(sb.root().join("new.txt")).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o640);

    c.ok(&t::walk(ROOT_FID, 2, &["hello.txt"]));
    c.ok(&t::lopen(2, RDONLY));
    let mut b = Body::of(c.ok(&t::read(2, 0, 8192)));
    let n = b.u32() as usize;
    assert_eq!(b.take(n), HELLO);
    sb.check();
}

#[test]
fn readdir_lists_entries() {
    let (_sb, mut c) = setup();
    c.ok(&t::walk(ROOT_FID, 1, &[]));
    c.ok(&t::lopen(1, RDONLY | DIRECTORY));
    let mut b = Body::of(c.ok(&t::readdir(1, 0, 8192)));
    let n = b.u32() as usize;
    let mut rest = Body(b.take(n));
    let mut names = vec![];
    while !rest.0.is_empty() {
        let q = rest.qid();
        let (_next, kind) = (rest.u64(), rest.u8());
        let name = String::from_utf8(rest.string().to_vec()).unwrap();
        let want = match name.as_str() {
            "sub" | "." | ".." => (QTDIR, libc::DT_DIR),
            "etc" | "up" | "abs" => (QTSYMLINK, libc::DT_LNK),
            _ => (0, libc::DT_REG),
        };
        assert_eq!((q.kind, kind), want, "{name}");
        names.push(name);
    }
    names.sort();
    assert_eq!(
        names,
        [".", "..", "abs", "empty", "etc", "hello.txt", "sub", "up"]
    );
}

#[test]
fn dotdot_at_the_root_stays_at_the_root() {
    let (sb, mut c) = setup();
    let root = root_qid(&mut c);
    let qids = Body::of(c.ok(&t::walk(ROOT_FID, 1, &[".."]))).qids();
    assert_eq!(qids, [root]);
    let qids = Body::of(c.ok(&t::walk(ROOT_FID, 2, &["sub", "deeper", "..", "..", ".."]))).qids();
    assert_eq!(qids.len(), 5);
    assert_eq!(qids[3..], [root, root]);
    // Listing fid 2 shows the share, not its parent.
    c.ok(&t::lopen(2, RDONLY | DIRECTORY));
    let r = c.ok(&t::readdir(2, 0, 8192)).to_vec();
    let contains = |s: &[u8]| r.windows(s.len()).any(|w| w == s);
    assert!(contains(b"hello.txt") && !contains(b"outside"));
    sb.check();
}

#[test]
fn walk_names_with_a_slash_or_dot_are_refused() {
    let (_sb, mut c) = setup();
    for name in ["sub/nested.txt", "/etc", "up/secret.txt", ".", "", "a\0b"] {
        assert_eq!(c.err(&t::walk(ROOT_FID, 1, &[name])), EINVAL, "{name:?}");
        assert_no_fid(&mut c, 1);
    }
}

#[test]
fn walk_through_a_symlink_to_outside_stops_at_the_link() {
    let (sb, mut c) = setup();
    for (link, inside) in [
        ("up", "secret.txt"),
        ("abs", "secret.txt"),
        ("etc", "passwd"),
    ] {
        // A multi-name walk stops at the link: one qid, the link's, and no new fid.
        let qids = Body::of(c.ok(&t::walk(ROOT_FID, 1, &[link, inside]))).qids();
        assert_eq!(qids.len(), 1, "{link}");
        assert_eq!(qids[0].kind, QTSYMLINK);
        assert_no_fid(&mut c, 1);
        // A fid on the link itself: nothing can be walked, opened or created through it.
        c.ok(&t::walk(ROOT_FID, 2, &[link]));
        assert_eq!(c.err(&t::walk(2, 3, &[inside])), ENOTDIR);
        assert_eq!(c.err(&t::walk(2, 3, &[".."])), ENOTDIR);
        assert_no_fid(&mut c, 3);
        assert_eq!(c.err(&t::lopen(2, RDONLY)), ELOOP);
        assert_eq!(c.err(&t::readdir(2, 0, 4096)), EBADF);
        let create = t::lcreate(2, "pwned", WRONLY | CREAT, 0o644);
        assert_eq!(c.err(&create), ENOTDIR);
        assert_eq!(c.err(&t::mkdir(2, "pwned", 0o755)), ENOTDIR);
        assert_eq!(c.err(&t::symlink(2, "pwned", "x")), ENOTDIR);
        assert_eq!(c.err(&t::unlinkat(2, inside, 0)), ENOTDIR);
        c.ok(&t::clunk(2));
    }
    let nested = Body::of(c.ok(&t::walk(ROOT_FID, 1, &["sub", "up2", "deep"]))).qids();
    assert_eq!(nested.len(), 2);
    sb.check();
}

#[test]
fn bad_names_are_refused_by_every_creating_op() {
    let (sb, mut c) = setup();
    c.ok(&t::walk(ROOT_FID, 1, &["hello.txt"]));
    for name in ["..", ".", "a/b", "../x", "up/x", ""] {
        let msgs = [
            t::lcreate(ROOT_FID, name, WRONLY | CREAT, 0o644),
            t::mkdir(ROOT_FID, name, 0o755),
            t::symlink(ROOT_FID, name, "/etc/passwd"),
            t::mknod(ROOT_FID, name, S_IFREG | 0o644, 0, 0),
            t::link(ROOT_FID, 1, name),
            t::renameat(ROOT_FID, "hello.txt", ROOT_FID, name),
            t::renameat(ROOT_FID, name, ROOT_FID, "got"),
            t::unlinkat(ROOT_FID, name, 0),
            t::unlinkat(ROOT_FID, name, REMOVEDIR),
        ];
        for m in &msgs {
            assert_eq!(c.err(m), EINVAL, "{name:?} in {m:?}");
        }
    }
    assert_eq!(fs::read(sb.root().join("hello.txt")).unwrap(), HELLO);
    sb.check();
}

#[test]
fn renameat_cannot_move_a_file_out_of_the_share() {
    let (sb, mut c) = setup();
    c.ok(&t::walk(ROOT_FID, 1, &["up"]));
    c.ok(&t::walk(ROOT_FID, 2, &[".."]));
    c.ok(&t::walk(ROOT_FID, 3, &["sub"]));
    let tries = [
        (
            t::renameat(ROOT_FID, "hello.txt", ROOT_FID, "../stolen"),
            EINVAL,
        ),
        (t::renameat(ROOT_FID, "hello.txt", 1, "stolen"), ENOTDIR),
        (t::renameat(3, "nested.txt", 3, ".."), EINVAL),
        (t::renameat(1, "secret.txt", ROOT_FID, "got"), ENOTDIR),
    ];
    for (m, e) in &tries {
        assert_eq!(c.err(m), *e, "{m:?}");
    }
    // ".." at the root is the root: this rename stays inside.
    c.ok(&t::renameat(ROOT_FID, "hello.txt", 2, "renamed"));
    assert!(sb.root().join("renamed").is_file());
    sb.check();
}

#[test]
fn read_only_share_refuses_every_change() {
    let sb = Sandbox::new();
    let mut c = Conn::attached(&sb.root(), true);
    c.ok(&t::walk(ROOT_FID, 1, &["hello.txt"]));
    c.ok(&t::walk(ROOT_FID, 2, &["sub"]));
    let changes = [
        t::lcreate(2, "x", WRONLY | CREAT, 0o644),
        t::mkdir(ROOT_FID, "x", 0o755),
        t::symlink(ROOT_FID, "x", "hello.txt"),
        t::mknod(ROOT_FID, "x", S_IFREG | 0o644, 0, 0),
        t::link(ROOT_FID, 1, "x"),
        t::renameat(ROOT_FID, "hello.txt", ROOT_FID, "x"),
        t::unlinkat(ROOT_FID, "hello.txt", 0),
        t::setattr(1, SET_MODE, 0o777, 0, 0, 0),
        t::setattr(1, SET_SIZE, 0, 0, 0, 0),
        t::setattr(1, SET_TIMES, 0, 0, 0, 0),
        t::lopen(1, WRONLY),
        t::lopen(1, RDWR),
        t::lopen(1, RDONLY | TRUNC),
    ];
    for m in &changes {
        assert_eq!(c.err(m), EROFS, "{m:?}");
    }
    // Reading still works, and a write on a read-only open is refused the same way.
    c.ok(&t::lopen(1, RDONLY));
    assert_eq!(
        Body::of(c.ok(&t::read(1, 0, 100))).u32(),
        HELLO.len() as u32
    );
    assert_eq!(c.err(&t::write(1, 0, b"x")), EROFS);
    assert_eq!(fs::read(sb.root().join("hello.txt")).unwrap(), HELLO);
    assert!(!sb.root().join("x").exists() && !sb.root().join("sub/x").exists());
    sb.check();
}

#[test]
fn mknod_of_a_device_is_refused() {
    let (sb, mut c) = setup();
    let char_dev = t::mknod(ROOT_FID, "null", libc::S_IFCHR | 0o666, 1, 3);
    assert_eq!(c.err(&char_dev), EPERM);
    let block_dev = t::mknod(ROOT_FID, "sda", libc::S_IFBLK | 0o666, 8, 0);
    assert_eq!(c.err(&block_dev), EPERM);
    assert!(!sb.root().join("null").exists() && !sb.root().join("sda").exists());
    // A FIFO may be made, but never opened: opening it would block the VMM.
    c.ok(&t::mknod(ROOT_FID, "fifo", S_IFIFO | 0o644, 0, 0));
    c.ok(&t::walk(ROOT_FID, 1, &["fifo"]));
    assert_eq!(c.err(&t::lopen(1, RDONLY)), EACCES);
}

#[test]
fn lcreate_over_an_existing_fifo_neither_blocks_nor_opens_it() {
    let (sb, mut c) = setup();
    c.ok(&t::mknod(ROOT_FID, "fifo", S_IFIFO | 0o644, 0, 0));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut errnos = vec![];
        for (fid, mode) in [(1, RDONLY), (2, WRONLY), (3, RDWR)] {
            c.ok(&t::walk(ROOT_FID, fid, &[]));
            errnos.push(c.err(&t::lcreate(fid, "fifo", mode | CREAT, 0o644)));
        }
        tx.send(errnos).unwrap();
    });
    let errnos = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("Tlcreate blocked");
    // O_WRONLY | O_NONBLOCK on a FIFO without reader fails in open itself (ENXIO).
    assert_eq!(errnos, [EACCES, libc::ENXIO as u32, EACCES]);
    sb.check();
}

#[test]
fn setuid_and_setgid_bits_are_masked() {
    let (sb, mut c) = setup();
    c.ok(&t::walk(ROOT_FID, 1, &["hello.txt"]));
    c.ok(&t::setattr(1, SET_MODE, 0o6755, 0, 0, 0));
    let mode = |name: &str| fs::metadata(sb.root().join(name)).unwrap().mode() & 0o7777;
    assert_eq!(mode("hello.txt"), 0o755);
    c.ok(&t::walk(ROOT_FID, 2, &[]));
    c.ok(&t::lcreate(2, "suid", WRONLY | CREAT, 0o4755));
    assert_eq!(mode("suid"), 0o755);
    c.ok(&t::mkdir(ROOT_FID, "sgid", 0o2755));
    assert_eq!(mode("sgid"), 0o755);
    c.ok(&t::mknod(ROOT_FID, "node", S_IFREG | 0o6644, 0, 0));
    assert_eq!(mode("node"), 0o644);
}

#[test]
fn chmod_through_a_symlink_fid_leaves_its_target_alone() {
    let (sb, mut c) = setup();
    let target = sb.outside().join("secret.txt");
    let before = fs::metadata(&target).unwrap();
    for link in ["up", "abs", "etc"] {
        c.ok(&t::walk(ROOT_FID, 1, &[link]));
        let chmod = t::setattr(1, SET_MODE, 0o777, 0, 0, 0);
        assert_eq!(c.err(&chmod), EOPNOTSUPP, "{link}");
        assert_eq!(c.err(&t::setattr(1, SET_SIZE, 0, 0, 0, 0)), EINVAL);
        // chown and times act on the link itself.
        c.ok(&t::setattr(1, SET_UID | SET_TIMES, 0, 1234, 0, 0));
        let link_md = fs::symlink_metadata(sb.root().join(link)).unwrap();
        assert_eq!(link_md.uid(), 1234);
        c.ok(&t::clunk(1));
    }
    let after = fs::metadata(&target).unwrap();
    assert_eq!((after.mode(), after.uid()), (before.mode(), before.uid()));
    sb.check();
}

#[test]
fn host_swapping_a_walked_directory_for_a_symlink_creates_nothing_outside() {
    let (sb, mut c) = setup();
    let root = sb.root();
    fs::create_dir(root.join("d")).unwrap();
    fs::create_dir(root.join("e")).unwrap();
    c.ok(&t::walk(ROOT_FID, 1, &["d"]));
    c.ok(&t::walk(ROOT_FID, 2, &["e"]));
    // The host removes d and renames e away, then puts symlinks to outside in their place.
    fs::remove_dir(root.join("d")).unwrap();
    fs::rename(root.join("e"), root.join("e.old")).unwrap();
    for name in ["d", "e"] {
        std::os::unix::fs::symlink(sb.outside(), root.join(name)).unwrap();
    }
    // The fids still name the original directories: the removed one is gone, the renamed
    // one gets the file, inside the share.
    assert_eq!(
        c.err(&t::lcreate(1, "pwned", WRONLY | CREAT, 0o644)),
        ENOENT
    );
    assert_eq!(c.err(&t::mkdir(1, "pwned", 0o755)), ENOENT);
    c.ok(&t::lcreate(2, "pwned", WRONLY | CREAT, 0o644));
    assert!(root.join("e.old/pwned").is_file());
    // A new walk by the swapped name reaches the link, never its target.
    c.ok(&t::walk(ROOT_FID, 3, &["d"]));
    assert_eq!(
        c.err(&t::lcreate(3, "pwned", WRONLY | CREAT, 0o644)),
        ENOTDIR
    );
    let qids = Body::of(c.ok(&t::walk(ROOT_FID, 4, &["e", "secret.txt"]))).qids();
    assert_eq!(qids.len(), 1);
    assert!(!sb.outside().join("pwned").exists());
    sb.check();
}

#[test]
fn created_files_get_the_exact_mode_the_guest_asked_for() {
    // The guest applied its umask already; the VMM's umask (022 here) must not apply again.
    // SAFETY: umask only changes this test process's file creation mask.
    let old = unsafe { libc::umask(0o022) };
    let (sb, mut c) = setup();
    let mode = |name: &str| fs::metadata(sb.root().join(name)).unwrap().mode() & 0o7777;
    c.ok(&t::mkdir(ROOT_FID, "shared-dir", 0o775));
    c.ok(&t::walk(ROOT_FID, 1, &[]));
    c.ok(&t::lcreate(1, "group-writable", WRONLY | CREAT, 0o664));
    c.ok(&t::mknod(ROOT_FID, "fifo", libc::S_IFIFO | 0o666, 0, 0));
    unsafe { libc::umask(old) };
    assert_eq!(mode("shared-dir"), 0o775);
    assert_eq!(mode("group-writable"), 0o664);
    assert_eq!(mode("fifo"), 0o666);
}

#[test]
fn dotdot_from_a_directory_the_host_moved_out_is_refused() {
    let (sb, mut c) = setup();
    c.ok(&t::walk(ROOT_FID, 1, &["sub", "deeper"]));
    // The host moves `sub` (with the guest's fid inside it) out of the share.
    fs::rename(sb.root().join("sub"), sb.outside().join("moved")).unwrap();
    assert_eq!(c.err(&t::walk(1, 2, &[".."])), EACCES);
    fs::rename(sb.outside().join("moved"), sb.root().join("sub")).unwrap();
    // Back inside: `..` works again and leads to `sub`.
    c.ok(&t::walk(1, 2, &[".."]));
}
