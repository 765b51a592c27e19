//! The server's own IPv4 addresses, printed in its ready line: a client on the same bridge
//! network (another container, or a container reaching a VM) needs the server's address, and
//! the server is the one place that knows it in both modes without asking the runtime.

use std::net::Ipv4Addr;

use super::error::NetError;

/// IPv4 addresses of every interface that is up and not loopback, in the kernel's order.
pub fn ipv4_non_loopback() -> Result<Vec<Ipv4Addr>, NetError> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(NetError::Addrs(std::io::Error::last_os_error()));
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        let up = ifa.ifa_flags & libc::IFF_UP as libc::c_uint != 0;
        let lo = ifa.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0;
        if up && !lo && !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points to a sockaddr of its sa_family.
            let family = unsafe { (*ifa.ifa_addr).sa_family } as libc::c_int;
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lists_without_loopback() {
        let v = super::ipv4_non_loopback().unwrap();
        assert!(v.iter().all(|a| !a.is_loopback()), "{v:?}");
    }
}
