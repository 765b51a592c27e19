//! Why a network measurement failed. Typed (not strings) so the probe's command can tell a
//! misuse (exit 2) from a path that does not work (exit 1), and say which step broke: a
//! refused connect means "nothing listens there", a timeout mid-transaction means "the path
//! drops packets" — different fixes.

use std::fmt;
use std::net::SocketAddr;

/// One failed step of a server or client run.
#[derive(Debug)]
pub enum NetError {
    /// Binding or listening on the server's address failed (port in use, no such address).
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The client could not connect (refused, unreachable, timed out).
    Connect {
        /// The server's address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A read or write on an established connection failed (reset, timeout, early EOF).
    Io {
        /// What was being done, e.g. "reading response 17".
        step: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The peer sent something that is not our protocol (wrong magic or version, sizes out
    /// of bounds): the port belongs to another program or another probe version.
    Protocol(String),
    /// Listing the host's interface addresses failed.
    Addrs(std::io::Error),
}

impl NetError {
    /// An [`NetError::Io`] for `step` (a `map_err` helper).
    pub fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
        let step = step.into();
        move |source| NetError::Io { step, source }
    }
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            NetError::Connect { addr, source } => write!(f, "cannot connect to {addr}: {source}"),
            NetError::Io { step, source } => write!(f, "{step}: {source}"),
            NetError::Protocol(what) => write!(f, "protocol error: {what}"),
            NetError::Addrs(source) => write!(f, "listing interface addresses: {source}"),
        }
    }
}

impl std::error::Error for NetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NetError::Bind { source, .. }
            | NetError::Connect { source, .. }
            | NetError::Io { source, .. }
            | NetError::Addrs(source) => Some(source),
            NetError::Protocol(_) => None,
        }
    }
}
