//! File attributes for the 9P server: qids, the Rgetattr reply, Tsetattr, and handing a new
//! file to its creator. Set-user-ID and set-group-ID bits never reach the host.

use std::io;
use std::os::fd::RawFd;

use super::host_fs::{self, errno};
use super::wire::{self, Qid, Reply, SetAttr};

const SETATTR_MODE: u32 = 0x1;
const SETATTR_UID: u32 = 0x2;
const SETATTR_GID: u32 = 0x4;
const SETATTR_SIZE: u32 = 0x8;
const SETATTR_ATIME: u32 = 0x10;
const SETATTR_MTIME: u32 = 0x20;
const SETATTR_ATIME_SET: u32 = 0x80;
const SETATTR_MTIME_SET: u32 = 0x100;
/// Mode bits the guest may set on host files: permissions and sticky, no setuid/setgid.
pub(super) const MODE_BITS: u32 = 0o1777;
/// Rgetattr's "valid" mask: the basic fields.
const GETATTR_BASIC: u64 = 0x7ff;

/// Hands a file the guest just created to its creator (`uid` from the attach, `gid` from the
/// request) and sets its exact mode: the guest already applied its umask, the VMM's must not
/// apply again. Set-id bits are dropped.
pub(super) fn give(
    fd: RawFd,
    st: &libc::stat,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
) -> io::Result<()> {
    host_fs::chown(fd, uid, gid)?;
    match mode {
        Some(m) => host_fs::chmod(fd, st, m & MODE_BITS),
        None => Ok(()),
    }
}

/// The qid of a file: its kind, a content version and its inode.
pub(super) fn qid(st: &libc::stat) -> Qid {
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => wire::QTDIR,
        libc::S_IFLNK => wire::QTSYMLINK,
        _ => wire::QTFILE,
    };
    Qid {
        kind,
        version: version(st),
        path: st.st_ino,
    }
}

/// A qid version that changes when the file's content does (mtime or size), as QEMU's
/// server does. Never 0: the Linux client treats version 0 as "legacy server" and bypasses
/// its page cache, which splits every read and write into one request per page.
fn version(st: &libc::stat) -> u32 {
    let v = (st.st_mtime as u64) ^ ((st.st_mtime_nsec as u64) << 2) ^ ((st.st_size as u64) << 8);
    ((v ^ (v >> 32)) as u32).max(1)
}

/// Rgetattr's body for `st` (the basic fields).
pub(super) fn getattr_reply(r: &mut Reply, st: &libc::stat) {
    r.u64(GETATTR_BASIC)
        .qid(qid(st))
        .u32(st.st_mode)
        .u32(st.st_uid)
        .u32(st.st_gid)
        .u64(st.st_nlink)
        .u64(st.st_rdev)
        .u64(st.st_size as u64)
        .u64(st.st_blksize as u64)
        .u64(st.st_blocks as u64)
        .u64(st.st_atime as u64)
        .u64(st.st_atime_nsec as u64)
        .u64(st.st_mtime as u64)
        .u64(st.st_mtime_nsec as u64)
        .u64(st.st_ctime as u64)
        .u64(st.st_ctime_nsec as u64)
        .u64(0)
        .u64(0)
        .u64(0)
        .u64(0);
}

/// One Tsetattr time: none, now, or the given one.
fn time_arg(valid: u32, any: u32, set: u32, (sec, nsec): (u64, u64)) -> Option<libc::timespec> {
    if valid & any == 0 {
        return None;
    }
    Some(if valid & set != 0 {
        libc::timespec {
            tv_sec: sec as libc::time_t,
            tv_nsec: (nsec % 1_000_000_000) as libc::c_long,
        }
    } else {
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        }
    })
}

/// Applies a Tsetattr to the file behind `fd` (owner, mode without set-id bits, size,
/// times).
pub(super) fn set_attr(fd: RawFd, a: &SetAttr) -> io::Result<()> {
    let st = host_fs::stat(fd)?;
    if a.valid & (SETATTR_UID | SETATTR_GID) != 0 {
        let uid = if a.valid & SETATTR_UID != 0 {
            a.uid
        } else {
            u32::MAX
        };
        let gid = if a.valid & SETATTR_GID != 0 {
            a.gid
        } else {
            u32::MAX
        };
        host_fs::chown(fd, uid, gid)?;
    }
    if a.valid & SETATTR_MODE != 0 {
        host_fs::chmod(fd, &st, a.mode & MODE_BITS)?;
    }
    if a.valid & SETATTR_SIZE != 0 {
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(errno(libc::EINVAL));
        }
        let file = host_fs::reopen(fd, &st, libc::O_WRONLY)?;
        file.set_len(a.size)?;
    }
    let atime = time_arg(a.valid, SETATTR_ATIME, SETATTR_ATIME_SET, a.atime);
    let mtime = time_arg(a.valid, SETATTR_MTIME, SETATTR_MTIME_SET, a.mtime);
    if atime.is_some() || mtime.is_some() {
        host_fs::set_times(fd, &st, atime, mtime)?;
    }
    Ok(())
}
