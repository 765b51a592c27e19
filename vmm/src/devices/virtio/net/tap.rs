//! The host side of virtio-net: a TAP file descriptor the CLI opened (`IFF_TAP | IFF_NO_PI |
//! IFF_VNET_HDR`) and passed down. The VMM never opens or names TAPs (it needs no
//! `CAP_NET_ADMIN`); it checks what it was given, makes it non-blocking, and sets the
//! offloads the guest acked. Frames cross it with the same 12-byte `virtio_net_hdr_v1` the
//! guest uses, so neither direction rewrites headers.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{NetError, VNET_HDR_LEN};

/// `struct ifreq` as TUNGETIFF fills it: the name, then the flags (a union in C; 40 bytes).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// The TAP as the device uses it: an fd of our own (a `dup` of the job's, so the caller's
/// descriptor is never closed behind its back), non-blocking.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    /// False for the socketpair the unit tests use instead: no TUN ioctls then.
    is_tun: bool,
}

impl Tap {
    /// Takes the job's TAP `fd`: checks it is a TAP with `IFF_NO_PI | IFF_VNET_HDR` (anything
    /// else would frame packets differently than the device expects), sets the vnet header
    /// size to 12 (what virtio 1.x uses; idempotent if the CLI did already) and O_NONBLOCK
    /// (the device must never block a vCPU or the main loop).
    pub fn from_job_fd(fd: RawFd) -> Result<Tap, NetError> {
        // SAFETY: F_DUPFD_CLOEXEC only reads `fd` (EBADF if it is not open) and returns a new
        // descriptor that we own.
        let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if dup < 0 {
            return Err(NetError::TapFd {
                fd,
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: `dup` is a fresh descriptor owned by nobody else.
        let fd_owned = unsafe { OwnedFd::from_raw_fd(dup) };
        let mut ifr = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: 0,
            _pad: [0; 22],
        };
        // SAFETY: TUNGETIFF writes one `struct ifreq` (40 bytes, the size of `IfReq`).
        if unsafe { libc::ioctl(dup, libc::TUNGETIFF, &mut ifr) } < 0 {
            return Err(NetError::NotTap {
                fd,
                why: format!("TUNGETIFF: {}", std::io::Error::last_os_error()),
            });
        }
        let flags = libc::c_int::from(ifr.flags);
        let want = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if flags & want != want {
            return Err(NetError::NotTap {
                fd,
                why: format!("flags {flags:#x}, need IFF_TAP|IFF_NO_PI|IFF_VNET_HDR"),
            });
        }
        let hdr = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int.
        if unsafe { libc::ioctl(dup, libc::TUNSETVNETHDRSZ, &hdr) } < 0 {
            return Err(NetError::Ioctl {
                what: "TUNSETVNETHDRSZ",
                source: std::io::Error::last_os_error(),
            });
        }
        set_nonblocking(dup)?;
        Ok(Tap {
            fd: fd_owned,
            is_tun: true,
        })
    }

    /// A stand-in for unit tests: one end of a `SOCK_SEQPACKET` socketpair, which keeps
    /// frame boundaries like a TAP; the TUN ioctls are skipped.
    #[cfg(test)]
    pub(crate) fn from_socket(fd: OwnedFd) -> Tap {
        set_nonblocking(fd.as_raw_fd()).unwrap();
        Tap { fd, is_tun: false }
    }

    /// `TUNSETOFFLOAD`: which offloaded frames (partial checksums, TSO) the host kernel may
    /// hand us for the guest. Only what the guest acked (its GUEST_* features), else the
    /// host would deliver frames the guest driver cannot take.
    pub fn set_offload(&self, tun_flags: libc::c_uint) -> Result<(), NetError> {
        if !self.is_tun {
            return Ok(());
        }
        // TUNSETOFFLOAD takes the flags as the ioctl's integer argument, not a pointer.
        // SAFETY: no memory is passed.
        let rc = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(tun_flags),
            )
        };
        if rc < 0 {
            return Err(NetError::Ioctl {
                what: "TUNSETOFFLOAD",
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(())
    }

    /// One frame (vnet header first) from the TAP into `iov`; the TAP returns the frame's
    /// full length even when `iov` was too short for it (then the rest is lost).
    pub fn readv(&self, iov: &[libc::iovec]) -> std::io::Result<usize> {
        // SAFETY: every iovec points into guest RAM checked by the caller (see iov.rs).
        let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as i32) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// One frame (vnet header first) from `iov` to the TAP.
    pub fn writev(&self, iov: &[libc::iovec]) -> std::io::Result<usize> {
        // SAFETY: every iovec points into guest RAM checked by the caller (see iov.rs).
        let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), iov.len() as i32) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn set_nonblocking(fd: RawFd) -> Result<(), NetError> {
    // SAFETY: F_GETFL/F_SETFL on an fd we hold; no memory is passed.
    let ok = unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        fl >= 0 && libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(NetError::Ioctl {
            what: "O_NONBLOCK",
            source: std::io::Error::last_os_error(),
        })
    }
}
