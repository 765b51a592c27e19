//! Networking: by default the container gets a new network namespace whose only interface is
//! the loopback `lo`, brought up here (a fresh namespace starts with `lo` down); with
//! `--network host` no namespace is created and the host's stack is shared.

use crate::sys::{self, SysResult};

/// Child side: sets `IFF_UP` on `lo` in the current network namespace with two `ioctl`s on a
/// throw-away datagram socket (cheaper than netlink, and allocation-free).
pub fn loopback_up() -> SysResult<()> {
    // SAFETY: plain socket/ioctl calls on a zeroed ifreq whose name we fill in.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(sys::last_errno());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) != 0 {
            let e = sys::last_errno();
            libc::close(s);
            return Err(e);
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let rc = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        let e = sys::last_errno();
        libc::close(s);
        if rc != 0 {
            return Err(e);
        }
    }
    Ok(())
}
