//! A 9P2000.L file server for one shared host directory. Each fid is an `O_PATH` handle
//! (plus an open file after Tlopen/Tlcreate); every name the guest sends is resolved by
//! [`host_fs`] beneath the directory handle it is relative to. Errors of any kind become an
//! Rlerror reply: a hostile message never ends the VMM.
//!
//! Ownership: ids pass through unchanged. A file the guest's uid 1000 creates is owned by host
//! uid 1000, and the guest sees host owners as they are (like QEMU's `security_model=
//! passthrough`). The server never creates set-user-ID or set-group-ID files or device nodes.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::attr::{getattr_reply, give, qid, set_attr, MODE_BITS};
use super::host_fs::{self, errno};
use super::wire::{self, Qid, Reply, Request};

/// Largest message size we accept (the Linux virtio transport allows up to ~500 KiB).
pub const MAX_MSIZE: u32 = 512 * 1024;
/// Smallest msize a client may ask for.
pub const MIN_MSIZE: u32 = 4096;
/// Fids one guest may hold at once (each is a host fd).
pub const MAX_FIDS: usize = 16 * 1024;
/// Bytes of an Rread/Rreaddir header: size, type, tag, count.
pub const IO_HEADER: u32 = 11;

/// Tlopen/Tlcreate flags we pass on (they share Linux's values): access mode, append,
/// truncate, exclusive, directory, (d)sync. Everything else (O_DIRECT, O_NOATIME, async) is
/// dropped.
const OPEN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_APPEND
    | libc::O_TRUNC
    | libc::O_EXCL
    | libc::O_DIRECTORY
    | libc::O_DSYNC
    | libc::O_SYNC;
/// `AT_REMOVEDIR` as 9P2000.L sends it (the Linux value).
const UNLINK_DIR: u32 = 0x200;

/// One guest handle.
struct Fid {
    path: OwnedFd,
    file: Option<File>,
    uid: u32,
}

/// The server state for one share.
pub struct Server {
    root: OwnedFd,
    root_ino: (u64, u64),
    read_only: bool,
    msize: u32,
    fids: HashMap<u32, Fid>,
}

impl Server {
    /// Serves the directory `root`; `read_only` refuses every change with EROFS.
    pub fn new(root: &Path, read_only: bool) -> io::Result<Server> {
        let c = std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
            .map_err(|_| errno(libc::EINVAL))?;
        // SAFETY: valid C string; new fd owned below.
        let fd = host_fs::check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: fd was just returned by the kernel.
        let root: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
        Ok(Server {
            root_ino: identity(root.as_raw_fd())?,
            root,
            read_only,
            msize: MAX_MSIZE,
            fids: HashMap::new(),
        })
    }

    /// The negotiated message size.
    pub fn msize(&self) -> u32 {
        self.msize
    }

    /// Handles one T-message and leaves the R-message (or Rlerror) in `reply`.
    pub fn handle(&mut self, msg: &[u8], reply: &mut Reply) {
        let (kind, tag, body) = match wire::split_header(msg) {
            Ok(h) => h,
            Err(_) => {
                // No trustworthy tag: answer with NOTAG so the client can tell.
                reply.error(u16::MAX, libc::EINVAL);
                return;
            }
        };
        let result = wire::decode(kind, body)
            .map_err(|e| match e {
                wire::WireError::UnknownType(_) => errno(libc::EOPNOTSUPP),
                _ => errno(libc::EINVAL),
            })
            .and_then(|req| self.dispatch(kind + 1, tag, req, reply));
        if let Err(e) = result {
            reply.error(tag, e.raw_os_error().unwrap_or(libc::EIO));
        }
    }

    fn fid(&self, fid: u32) -> io::Result<&Fid> {
        self.fids.get(&fid).ok_or_else(|| errno(libc::EBADF))
    }

    fn writable(&self) -> io::Result<()> {
        if self.read_only {
            Err(errno(libc::EROFS))
        } else {
            Ok(())
        }
    }

    fn insert(&mut self, id: u32, fid: Fid) -> io::Result<()> {
        if self.fids.len() >= MAX_FIDS && !self.fids.contains_key(&id) {
            return Err(errno(libc::ENFILE));
        }
        self.fids.insert(id, fid);
        Ok(())
    }

    /// The checks every create shares: the share is writable, `name` is one component, the
    /// directory fid exists.
    fn creating(&self, dfid: u32, name: &[u8]) -> io::Result<(&Fid, std::ffi::CString)> {
        self.writable()?;
        let name = host_fs::component(name)?;
        Ok((self.fid(dfid)?, name))
    }

    fn is_root(&self, fd: RawFd) -> io::Result<bool> {
        Ok(identity(fd)? == self.root_ino)
    }

    /// One walk step from `fd`: a name beneath it, or its parent (never above the root).
    fn step(&self, fd: RawFd, name: &[u8]) -> io::Result<OwnedFd> {
        if name == b".." {
            if self.is_root(fd)? {
                return self.root.try_clone();
            }
            let parent = host_fs::parent(fd)?;
            self.check_beneath(&parent)?;
            return Ok(parent);
        }
        host_fs::lookup(fd, &host_fs::component(name)?)
    }

    /// Confirms that a directory is the root or beneath it by walking up to the root: a
    /// directory the host moved out of the share since the guest walked into it must not
    /// become the guest's way out through `..`.
    fn check_beneath(&self, dir: &OwnedFd) -> io::Result<()> {
        let mut cur = dir.try_clone()?;
        let mut id = identity(cur.as_raw_fd())?;
        for _ in 0..4096 {
            if id == self.root_ino {
                return Ok(());
            }
            let up = host_fs::parent(cur.as_raw_fd())?;
            let up_id = identity(up.as_raw_fd())?;
            if up_id == id {
                break; // reached the host's "/" without passing the share's root
            }
            (cur, id) = (up, up_id);
        }
        Err(errno(libc::EACCES))
    }

    fn dispatch(&mut self, rkind: u8, tag: u16, req: Request, r: &mut Reply) -> io::Result<()> {
        r.start(rkind, tag);
        match req {
            Request::Version { msize, version } => {
                if msize < MIN_MSIZE {
                    return Err(errno(libc::EINVAL));
                }
                self.fids.clear();
                self.msize = msize.min(MAX_MSIZE);
                let v: &[u8] = if version == b"9P2000.L" {
                    b"9P2000.L"
                } else {
                    b"unknown"
                };
                r.u32(self.msize).string(v);
            }
            Request::Auth | Request::Xattr | Request::Rename | Request::Remove { .. } => {
                if let Request::Remove { fid } = req {
                    self.fids.remove(&fid); // Tremove clunks even when it fails
                }
                return Err(errno(libc::EOPNOTSUPP));
            }
            Request::Attach { fid, n_uname } => {
                if self.fids.contains_key(&fid) {
                    return Err(errno(libc::EBADF));
                }
                let path = self.root.try_clone()?;
                let q = qid(&host_fs::stat(path.as_raw_fd())?);
                let uid = if n_uname == u32::MAX { 0 } else { n_uname };
                self.insert(
                    fid,
                    Fid {
                        path,
                        file: None,
                        uid,
                    },
                )?;
                r.qid(q);
            }
            Request::Flush => {}
            Request::Walk { fid, newfid, names } => {
                let start = self.fid(fid)?;
                let uid = start.uid;
                if fid != newfid && self.fids.contains_key(&newfid) {
                    return Err(errno(libc::EBADF));
                }
                let mut cur = start.path.try_clone()?;
                let mut qids = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    match self.step(cur.as_raw_fd(), name) {
                        Ok(next) => {
                            qids.push(qid(&host_fs::stat(next.as_raw_fd())?));
                            cur = next;
                        }
                        Err(e) if i == 0 => return Err(e),
                        Err(_) => break,
                    }
                }
                if qids.len() == names.len() {
                    self.insert(
                        newfid,
                        Fid {
                            path: cur,
                            file: None,
                            uid,
                        },
                    )?;
                }
                r.u16(qids.len() as u16);
                for q in qids {
                    r.qid(q);
                }
            }
            Request::Lopen { fid, flags } => {
                let flags = flags as i32 & OPEN_FLAGS;
                if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
                    self.writable()?;
                }
                let f = self.fid(fid)?;
                let st = host_fs::stat(f.path.as_raw_fd())?;
                let file = host_fs::reopen(f.path.as_raw_fd(), &st, flags)?;
                self.fids.get_mut(&fid).expect("checked").file = Some(file);
                r.qid(qid(&st)).u32(self.msize - IO_HEADER);
            }
            Request::Lcreate {
                fid,
                name,
                flags,
                mode,
                gid,
            } => {
                let (f, name) = self.creating(fid, name)?;
                let uid = f.uid;
                // O_NONBLOCK: an existing FIFO of that name must not block the open (and is
                // then refused below, as Tlopen refuses it); no effect on regular files.
                let base = (flags as i32 & OPEN_FLAGS) | libc::O_NONBLOCK;
                let dir = f.path.as_raw_fd();
                let excl = base | libc::O_CREAT | libc::O_EXCL;
                let (fd, created) = match host_fs::open_beneath(dir, &name, excl, mode & MODE_BITS)
                {
                    Ok(fd) => (fd, true),
                    // Created meanwhile by someone else: open it, but do not take it over.
                    Err(e)
                        if e.raw_os_error() == Some(libc::EEXIST) && base & libc::O_EXCL == 0 =>
                    {
                        (host_fs::open_beneath(dir, &name, base, 0)?, false)
                    }
                    Err(e) => return Err(e),
                };
                let st = host_fs::stat(fd.as_raw_fd())?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(errno(libc::EACCES));
                }
                if created {
                    give(fd.as_raw_fd(), &st, uid, gid, Some(mode))?;
                }
                let file = File::from(fd);
                let path = host_fs::path_of(file.as_raw_fd())?;
                let st = host_fs::stat(path.as_raw_fd())?;
                self.fids.insert(
                    fid,
                    Fid {
                        path,
                        file: Some(file),
                        uid,
                    },
                );
                r.qid(qid(&st)).u32(self.msize - IO_HEADER);
            }
            Request::Symlink {
                fid,
                name,
                target,
                gid,
            } => {
                let (f, name) = self.creating(fid, name)?;
                let target = std::ffi::CString::new(target).map_err(|_| errno(libc::EINVAL))?;
                let dir = f.path.as_raw_fd();
                // SAFETY: valid C strings; the link is created in the directory fd.
                host_fs::check(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) })?;
                let link = host_fs::lookup(dir, &name)?;
                let st = host_fs::stat(link.as_raw_fd())?;
                give(link.as_raw_fd(), &st, f.uid, gid, None)?;
                r.qid(qid(&host_fs::stat(link.as_raw_fd())?));
            }
            Request::Mknod {
                dfid,
                name,
                mode,
                gid,
            } => {
                let (f, name) = self.creating(dfid, name)?;
                let kind = mode & libc::S_IFMT;
                if ![libc::S_IFREG, libc::S_IFIFO, libc::S_IFSOCK].contains(&kind) {
                    return Err(errno(libc::EPERM)); // no device nodes on the host
                }
                let dir = f.path.as_raw_fd();
                // SAFETY: valid C string; created in the directory fd.
                host_fs::check(unsafe {
                    libc::mknodat(dir, name.as_ptr(), kind | (mode & MODE_BITS), 0)
                })?;
                let node = host_fs::lookup(dir, &name)?;
                let st = host_fs::stat(node.as_raw_fd())?;
                give(node.as_raw_fd(), &st, f.uid, gid, Some(mode))?;
                r.qid(qid(&host_fs::stat(node.as_raw_fd())?));
            }
            Request::Readlink { fid } => {
                let target = host_fs::readlink(self.fid(fid)?.path.as_raw_fd())?;
                r.string(&target);
            }
            Request::Getattr { fid } => {
                let st = host_fs::stat(self.fid(fid)?.path.as_raw_fd())?;
                getattr_reply(r, &st);
            }
            Request::Setattr { fid, attr } => {
                self.writable()?;
                set_attr(self.fid(fid)?.path.as_raw_fd(), &attr)?;
            }
            Request::Readdir { fid, offset, count } => {
                let f = self.fid(fid)?;
                let dir = f.file.as_ref().ok_or_else(|| errno(libc::EBADF))?;
                let max = count.min(self.msize - IO_HEADER) as usize;
                let entries = host_fs::read_dir(dir, offset, max)?;
                r.u32(0);
                let start = r.buf.len();
                for e in entries {
                    // qid[13] offset[8] type[1] name[s]
                    if r.buf.len() - start + 24 + e.name.len() > max {
                        break;
                    }
                    let kind = match e.kind {
                        libc::DT_DIR => wire::QTDIR,
                        libc::DT_LNK => wire::QTSYMLINK,
                        _ => wire::QTFILE,
                    };
                    r.qid(Qid {
                        kind,
                        version: 0,
                        path: e.ino,
                    })
                    .u64(e.next)
                    .u8(e.kind)
                    .string(&e.name);
                }
                let n = (r.buf.len() - start) as u32;
                r.buf[start - 4..start].copy_from_slice(&n.to_le_bytes());
            }
            Request::Fsync { fid } => {
                if let Some(file) = &self.fid(fid)?.file {
                    file.sync_all()?;
                }
            }
            Request::Lock => {
                r.u8(0); // success: locks are advisory and local to the guest
            }
            Request::Getlock {
                start,
                length,
                proc_id,
                client_id,
            } => {
                r.u8(libc::F_UNLCK as u8)
                    .u64(start)
                    .u64(length)
                    .u32(proc_id)
                    .string(client_id);
            }
            Request::Link { dfid, fid, name } => {
                self.writable()?;
                let name = host_fs::component(name)?;
                let target = self.fid(fid)?.path.as_raw_fd();
                let dir = self.fid(dfid)?.path.as_raw_fd();
                // SAFETY: valid C strings; AT_EMPTY_PATH links the inode `target` refers to.
                host_fs::check(unsafe {
                    libc::linkat(
                        target,
                        c"".as_ptr(),
                        dir,
                        name.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    )
                })?;
            }
            Request::Mkdir {
                dfid,
                name,
                mode,
                gid,
            } => {
                let (f, name) = self.creating(dfid, name)?;
                let dir = f.path.as_raw_fd();
                // SAFETY: valid C string; created in the directory fd.
                host_fs::check(unsafe { libc::mkdirat(dir, name.as_ptr(), mode & MODE_BITS) })?;
                let made = host_fs::lookup(dir, &name)?;
                let st = host_fs::stat(made.as_raw_fd())?;
                give(made.as_raw_fd(), &st, f.uid, gid, Some(mode))?;
                r.qid(qid(&host_fs::stat(made.as_raw_fd())?));
            }
            Request::Renameat {
                olddir,
                oldname,
                newdir,
                newname,
            } => {
                self.writable()?;
                let (o, n) = (host_fs::component(oldname)?, host_fs::component(newname)?);
                let od = self.fid(olddir)?.path.as_raw_fd();
                let nd = self.fid(newdir)?.path.as_raw_fd();
                // SAFETY: valid C strings relative to directory fds.
                host_fs::check(unsafe { libc::renameat(od, o.as_ptr(), nd, n.as_ptr()) })?;
            }
            Request::Unlinkat { dfid, name, flags } => {
                self.writable()?;
                let name = host_fs::component(name)?;
                let dir = self.fid(dfid)?.path.as_raw_fd();
                let at = if flags & UNLINK_DIR != 0 {
                    libc::AT_REMOVEDIR
                } else {
                    0
                };
                // SAFETY: valid C string relative to a directory fd.
                host_fs::check(unsafe { libc::unlinkat(dir, name.as_ptr(), at) })?;
            }
            Request::Statfs { fid } => {
                let s = host_fs::statfs(self.fid(fid)?.path.as_raw_fd())?;
                // SAFETY: fsid is two plain ints.
                let fsid: [i32; 2] = unsafe { std::mem::transmute(s.f_fsid) };
                r.u32(s.f_type as u32)
                    .u32(s.f_bsize as u32)
                    .u64(s.f_blocks)
                    .u64(s.f_bfree)
                    .u64(s.f_bavail)
                    .u64(s.f_files)
                    .u64(s.f_ffree)
                    .u64(u64::from(fsid[0] as u32) | (u64::from(fsid[1] as u32) << 32))
                    .u32(s.f_namelen as u32);
            }
            Request::Read { fid, offset, count } => {
                let file = self
                    .fid(fid)?
                    .file
                    .as_ref()
                    .ok_or_else(|| errno(libc::EBADF))?;
                let n = count.min(self.msize - IO_HEADER) as usize;
                let start = r.buf.len() + 4;
                r.buf.resize(start + n, 0);
                let got = read_full(file, &mut r.buf[start..], offset)?;
                r.buf.truncate(start + got);
                r.buf[start - 4..start].copy_from_slice(&(got as u32).to_le_bytes());
            }
            Request::Write { fid, offset, data } => {
                self.writable()?;
                let file = self
                    .fid(fid)?
                    .file
                    .as_ref()
                    .ok_or_else(|| errno(libc::EBADF))?;
                let n = file.write_at(data, offset)?;
                r.u32(n as u32);
            }
            Request::Clunk { fid } => {
                self.fids.remove(&fid).ok_or_else(|| errno(libc::EBADF))?;
            }
        }
        r.finish();
        Ok(())
    }
}

/// (device, inode) of the file behind `fd`: what "the same directory" means.
fn identity(fd: RawFd) -> io::Result<(u64, u64)> {
    let st = host_fs::stat(fd)?;
    Ok((st.st_dev, st.st_ino))
}

/// Reads until `buf` is full or end of file (a short read would end a guest `read` early).
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if got > 0 => {
                let _ = e;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
