//! TAP devices for VM mode: the host end of the guest's virtio-net card. The device is not
//! persistent, so it disappears with its last file descriptor: a VMM that dies leaves no link
//! behind.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::{Error, Result};

/// Size of the virtio-net v1 header (`struct virtio_net_hdr_v1`) that prefixes every frame.
const VNET_HDR_LEN: libc::c_int = 12;

/// An open TAP device: the descriptor the VMM reads and writes frames on, and the link's name
/// to attach it to a bridge.
#[derive(Debug)]
pub struct Tap {
    /// The queue descriptor (blocking, close-on-exec).
    pub fd: OwnedFd,
    /// The link name the kernel gave the device.
    pub name: String,
}

/// Creates TAP link `name` in the calling thread's network namespace, framed the way
/// virtio-net expects (no packet-info prefix, a 12-byte virtio-net header on each frame).
pub fn open_tap(name: &str) -> Result<Tap> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
        return Err(Error::Invalid(format!(
            "TAP name {name:?} is not a valid interface name (1 to {} characters, no '/' or spaces)",
            libc::IFNAMSIZ - 1
        )));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound {
                "opening /dev/net/tun (missing: load the tun module with `modprobe tun`)"
            } else {
                "opening /dev/net/tun (TAP devices need root or CAP_NET_ADMIN)"
            };
            Error::io(hint, "/dev/net/tun", e)
        })?;

    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_flags =
        (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
        return Err(Error::sys(
            format!(
                "creating TAP device {name} (TUNSETIFF); is the name already used by another link?"
            ),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: TUNSETVNETHDRSZ reads one `c_int`, which outlives the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &VNET_HDR_LEN) } < 0 {
        return Err(Error::sys(
            format!("setting the virtio-net header size of TAP device {name} (TUNSETVNETHDRSZ)"),
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: the kernel NUL-terminates the (possibly completed, e.g. "tap%d") name.
    let name = unsafe { std::ffi::CStr::from_ptr(ifr.ifr_name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Ok(Tap {
        fd: file.into(),
        name,
    })
}
