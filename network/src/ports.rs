//! Published ports (`-p [IP:]HOST_PORT:GUEST_PORT[/tcp|udp]`, Docker's syntax): parsing, and
//! the check that no host process already listens on the host side. Publishing itself is
//! DNAT in [`crate::firewall`]; a DNAT rule silently steals traffic from a host listener, so
//! the conflict has to be found here, before the rule exists.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::str::FromStr;

use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, SockaddrIn};

use crate::{Error, Result};

/// Transport protocol of a published port; `tcp` when `-p` names none, as in Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// The lower-case name nft and `-p` use, as a `&'static str` so errors can hold it.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `-p`: traffic for `host_ip:host_port` (any local address when `host_ip` is `None`) is
/// forwarded to `guest_port` of the instance.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// Host address to publish on; `None` means every local address (`0.0.0.0` parses to it).
    pub host_ip: Option<Ipv4Addr>,
    /// Port on the host.
    pub host_port: u16,
    /// Port inside the instance.
    pub guest_port: u16,
    /// Transport protocol.
    pub proto: Proto,
}

impl PortMapping {
    /// Whether `self` and `other` would claim the same host socket: same protocol and port,
    /// and host addresses that overlap (`None` overlaps every address).
    pub fn overlaps(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && (self.host_ip.is_none() || other.host_ip.is_none() || self.host_ip == other.host_ip)
    }
}

impl FromStr for PortMapping {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        let bad = |reason: String| Error::InvalidPort {
            value: value.to_string(),
            reason,
        };
        let (rest, proto) = match value.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Proto::Tcp),
            Some((rest, "udp")) => (rest, Proto::Udp),
            Some((_, other)) => {
                return Err(bad(format!("unknown protocol {other:?} (use tcp or udp)")))
            }
            None => (value, Proto::Tcp),
        };
        let port = |s: &str, which: &str| match s.parse::<u16>() {
            Ok(0) => Err(bad(format!("{which} port 0 is not allowed"))),
            Ok(p) => Ok(p),
            Err(_) => Err(bad(format!(
                "{which} port {s:?} is not a number from 1 to 65535"
            ))),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (host_ip, host, guest) = match parts[..] {
            [host, guest] => (None, host, guest),
            [ip, host, guest] => {
                let ip: Ipv4Addr = ip
                    .parse()
                    .map_err(|_| bad(format!("host address {ip:?} is not an IPv4 address")))?;
                (Some(ip).filter(|ip| !ip.is_unspecified()), host, guest)
            }
            _ => return Err(bad("both a host and a guest port are needed".into())),
        };
        Ok(PortMapping {
            host_ip,
            host_port: port(host, "host")?,
            guest_port: port(guest, "guest")?,
            proto,
        })
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(f, "{}:{}/{}", self.host_port, self.guest_port, self.proto)
    }
}

/// Fails with [`Error::PortInUse`] when a host socket already holds the mapping's host side,
/// found by binding a socket of that protocol there (without `SO_REUSEADDR`, so a listener on
/// any overlapping address conflicts). The probe is closed again at once.
pub fn check_free(m: &PortMapping) -> Result<()> {
    let ip = m.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let ty = match m.proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = socket(AddressFamily::Inet, ty, SockFlag::SOCK_CLOEXEC, None).map_err(|e| {
        Error::sys(
            format!(
                "creating a {} socket to probe port {}",
                m.proto, m.host_port
            ),
            e.into(),
        )
    })?;
    let addr = SockaddrIn::from(SocketAddrV4::new(ip, m.host_port));
    match bind(fd.as_raw_fd(), &addr) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EADDRINUSE) => Err(Error::PortInUse {
            ip,
            port: m.host_port,
            proto: m.proto.as_str(),
        }),
        Err(nix::errno::Errno::EADDRNOTAVAIL) => Err(Error::InvalidPort {
            value: m.to_string(),
            reason: format!("{ip} is not an address of this host"),
        }),
        Err(e) => Err(Error::sys(
            format!("probing host port {} {ip}:{}", m.proto, m.host_port),
            e.into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        let m: PortMapping = "8080:80".parse().unwrap();
        assert_eq!(
            (m.host_ip, m.host_port, m.guest_port, m.proto),
            (None, 8080, 80, Proto::Tcp)
        );
        let m: PortMapping = "127.0.0.1:5353:53/udp".parse().unwrap();
        assert_eq!(m.host_ip, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(m.to_string(), "127.0.0.1:5353:53/udp");
        assert_eq!("0.0.0.0:1:2".parse::<PortMapping>().unwrap().host_ip, None);
        for bad in [
            "0:80", "80:0", "80", "x:1:2", "1:2/sctp", "1:2:3:4", "70000:1", "",
        ] {
            assert!(
                matches!(bad.parse::<PortMapping>(), Err(Error::InvalidPort { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn overlap_rules() {
        let p = |s: &str| s.parse::<PortMapping>().unwrap();
        assert!(p("80:1").overlaps(&p("127.0.0.1:80:2")));
        assert!(!p("127.0.0.2:80:1").overlaps(&p("127.0.0.1:80:2")));
        assert!(!p("80:1/udp").overlaps(&p("80:1")));
    }
}
