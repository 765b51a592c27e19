//! The network crate's one error type: each variant names what failed and, where the user can
//! act, how to fix it (the CLI prints the message as is).

use std::path::PathBuf;

/// Everything that can go wrong while plumbing a network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A netlink request was refused by the kernel (errno from the NLMSG_ERROR reply).
    #[error("{op}: {errno}{}", permission_hint(errno))]
    Netlink {
        /// What we asked for, e.g. "creating bridge vcbr0".
        op: String,
        /// The kernel's errno (part of the message, not a separate cause, so the CLI's error
        /// chain prints it once).
        errno: std::io::Error,
    },
    /// A file under the data root (network definitions, IPAM, hosts) could not be used.
    #[error("{what} {}: {errno}", path.display())]
    Io {
        /// What we were doing.
        what: String,
        /// The file.
        path: PathBuf,
        /// The cause (in the message; see [`Error::Netlink`]).
        errno: std::io::Error,
    },
    /// A system call outside netlink failed (TAP ioctls, setns, sockets).
    #[error("{what}: {errno}{}", permission_hint(errno))]
    Sys {
        /// What we were doing.
        what: String,
        /// The cause (in the message; see [`Error::Netlink`]).
        errno: std::io::Error,
    },
    /// `nft` failed or is missing.
    #[error("nftables: {what}: {detail}")]
    Nft {
        /// What we were doing.
        what: String,
        /// nft's message, or how to install it.
        detail: String,
    },
    /// `-p` names a host port something else already listens on.
    #[error("host port {proto} {ip}:{port} is already in use; choose another host port or stop what listens there")]
    PortInUse {
        /// Host address of the mapping.
        ip: std::net::Ipv4Addr,
        /// Host port.
        port: u16,
        /// "tcp" or "udp".
        proto: &'static str,
    },
    /// A `-p` value that does not parse.
    #[error("-p {value:?}: {reason}; expected [IP:]HOST_PORT:GUEST_PORT[/tcp|udp]")]
    InvalidPort {
        /// What the user typed.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Every address of the subnet is taken.
    #[error("network {network}: no free address left in {subnet}; remove instances or create another network")]
    AddressesExhausted {
        /// Network name.
        network: String,
        /// Its subnet (CIDR).
        subnet: String,
    },
    /// A DNS server (ours or the upstream one) answered a query with an error code.
    #[error("{what}: {detail}; check that the network's DNS responder runs and its upstream resolver answers")]
    Dns {
        /// Which query, to which server.
        what: String,
        /// The server's answer.
        detail: String,
    },
    /// Bad input from the user (network name, subnet, …): the message says what and how.
    #[error("{0}")]
    Invalid(String),
    /// The kernel answered a netlink request with bytes we cannot decode: a bug here or an
    /// unexpectedly old or new kernel, not something the user did.
    #[error("{op}: could not decode the kernel's netlink reply ({detail}); please report this with `uname -r`")]
    NetlinkDecode {
        /// What we asked for.
        op: String,
        /// The decoder's complaint.
        detail: String,
    },
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::Io`] in one call.
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, errno: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            path: path.into(),
            errno,
        }
    }

    /// An [`Error::Sys`] from `errno` in one call.
    pub fn sys(what: impl Into<String>, errno: std::io::Error) -> Error {
        Error::Sys {
            what: what.into(),
            errno,
        }
    }
}

/// The fix for the one failure a user can act on at once: networks are root's business.
fn permission_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "; networks need root (CAP_NET_ADMIN): run vcompare as root, or use --network none"
        }
        _ => "",
    }
}
