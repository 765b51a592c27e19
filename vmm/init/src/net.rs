//! The guest's network setup for `--network`: `lo` up, the virtio-net interface given its
//! address, netmask and default route, /etc/resolv.conf and /etc/hosts written. With the
//! classic ioctls on one UDP socket (a handful of syscalls, nothing to parse), as the init's
//! start is part of the measured boot. The kernel has no IP autoconfiguration (no IP_PNP):
//! this is the only place the guest's addresses come from.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use vcompare_spec::guest::GuestNetwork;

/// `struct ifreq` with the member the calls here use: flags, or an address (40 bytes).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: IfReqData,
}

#[repr(C)]
union IfReqData {
    addr: libc::sockaddr_in,
    hwaddr: libc::sockaddr,
    flags: libc::c_short,
    _pad: [u8; 24],
}

fn ifreq(name: &str) -> Result<IfReq, String> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("bad interface name {name:?}"));
    }
    let mut r = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: IfReqData { _pad: [0; 24] },
    };
    for (d, s) in r.name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

fn sockaddr(ip: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn ioctl<T>(sock: &OwnedFd, req: libc::c_ulong, arg: &mut T, what: &str) -> Result<(), String> {
    // SAFETY: each request here reads/writes exactly the struct passed (ifreq or rtentry).
    if unsafe { libc::ioctl(sock.as_raw_fd(), req, arg as *mut T) } < 0 {
        return Err(format!("{what}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Sets IFF_UP on `name`, keeping its other flags.
fn link_up(sock: &OwnedFd, name: &str) -> Result<(), String> {
    let mut r = ifreq(name)?;
    ioctl(
        sock,
        libc::SIOCGIFFLAGS,
        &mut r,
        &format!("flags of {name}"),
    )?;
    // SAFETY: SIOCGIFFLAGS filled the flags member.
    unsafe { r.data.flags |= libc::IFF_UP as libc::c_short };
    ioctl(
        sock,
        libc::SIOCSIFFLAGS,
        &mut r,
        &format!("bringing {name} up"),
    )
}

fn parse_ip(what: &str, s: &str) -> Result<Ipv4Addr, String> {
    s.parse()
        .map_err(|_| format!("network: {what} {s:?} is not an IPv4 address"))
}

/// Configures the guest's network from the spec: `lo` always (as a container's), and with
/// `--network` the virtio-net interface; the error is one sentence for the console (the
/// init's failure path adds the rest). Without a network, a kernel without IPv4 is fine.
pub fn configure(net: Option<&GuestNetwork>) -> Result<(), String> {
    // SAFETY: socket returns a new fd (or -1), which we own.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return match net {
            None => Ok(()),
            Some(_) => Err(format!(
                "network: no IPv4 socket ({}): the guest kernel lacks CONFIG_INET; rebuild it with kernels/build.sh",
                std::io::Error::last_os_error()
            )),
        };
    }
    // SAFETY: `raw` is the fresh socket.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let ctx = |e: String| format!("network: {e}");
    link_up(&sock, "lo").map_err(ctx)?;
    match net {
        Some(net) => configure_interface(&sock, net),
        None => Ok(()),
    }
}

/// Address, netmask, link, default route and the two files of the `--network` interface.
fn configure_interface(sock: &OwnedFd, net: &GuestNetwork) -> Result<(), String> {
    let name = if net.interface.is_empty() {
        "eth0"
    } else {
        &net.interface
    };
    let addr = parse_ip("address", &net.address)?;
    if net.prefix_len > 32 {
        return Err(format!("network: prefix length {} > 32", net.prefix_len));
    }
    let mask = Ipv4Addr::from(
        u32::MAX
            .checked_shl(32 - u32::from(net.prefix_len))
            .unwrap_or(0),
    );
    let gateway = match net.gateway.as_str() {
        "" => None,
        g => Some(parse_ip("gateway", g)?),
    };
    let ctx = |e: String| format!("network: {e}");
    set_mac(sock, name, &net.mac).map_err(ctx)?;
    let mut r = ifreq(name)?;
    r.data.addr = sockaddr(addr);
    ioctl(
        sock,
        libc::SIOCSIFADDR,
        &mut r,
        &format!("address {addr} on {name}"),
    )
    .map_err(|e| format!("network: {e} (is the VMM's virtio-net device there?)"))?;
    r.data.addr = sockaddr(mask);
    ioctl(
        sock,
        libc::SIOCSIFNETMASK,
        &mut r,
        &format!("netmask {mask} on {name}"),
    )
    .map_err(ctx)?;
    link_up(sock, name).map_err(ctx)?;
    if let Some(gw) = gateway {
        add_default_route(sock, gw).map_err(ctx)?;
    }
    write_file("/etc/resolv.conf", &net.resolv_conf)?;
    write_file("/etc/hosts", &net.hosts)
}

/// Gives the (still down) interface the run's MAC address. After a cold boot the NIC already
/// has it (the driver read it from the device); a VM restored from a snapshot carries the
/// snapshot's, and must not share it with its siblings on the bridge. Empty = keep.
fn set_mac(sock: &OwnedFd, name: &str, mac: &str) -> Result<(), String> {
    if mac.is_empty() {
        return Ok(());
    }
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad MAC address {mac:?}"))?;
    if bytes.len() != 6 {
        return Err(format!("bad MAC address {mac:?}"));
    }
    // SAFETY: an all-zero sockaddr is a valid value.
    let mut hw: libc::sockaddr = unsafe { std::mem::zeroed() };
    hw.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in hw.sa_data.iter_mut().zip(&bytes) {
        *d = *s as libc::c_char;
    }
    let mut r = ifreq(name)?;
    r.data.hwaddr = hw;
    ioctl(
        sock,
        libc::SIOCSIFHWADDR,
        &mut r,
        &format!("MAC {mac} on {name}"),
    )
}

/// `route add default gw GW`: the subnet's own route came with the address.
fn add_default_route(sock: &OwnedFd, gw: Ipv4Addr) -> Result<(), String> {
    // SAFETY: rtentry is plain data; all-zero is "no device, metric 0, default destination".
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    let as_sockaddr = |ip| {
        let a = sockaddr(ip);
        // SAFETY: sockaddr_in and sockaddr are both 16 bytes; the kernel reads it as AF_INET.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(a) }
    };
    rt.rt_dst = as_sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = as_sockaddr(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = as_sockaddr(gw);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    ioctl(
        sock,
        libc::SIOCADDRT,
        &mut rt,
        &format!("default route via {gw}"),
    )
}

/// Writes `contents` to `path` unless empty (then the image's file stays). The root disk
/// is the instance's own copy, so this changes nothing outside the VM.
fn write_file(path: &str, contents: &str) -> Result<(), String> {
    if contents.is_empty() {
        return Ok(());
    }
    let _ = std::fs::create_dir("/etc");
    // A dangling symlink (e.g. resolv.conf -> ../run/...) would make the write fail.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        let _ = std::fs::remove_file(path);
    }
    std::fs::write(path, contents).map_err(|e| format!("network: writing {path}: {e}"))?;
    Ok(())
}
