//! The host side of the handshake, for the CLI: connect to the VMM's socket, ask for a guest
//! port, wait for `OK <host port>\n`. The reply is read a byte at a time so that nothing the
//! guest sends right after accepting is swallowed with it.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::uds;

/// Longest reply line accepted (`OK 4294967295\n` is 14 bytes).
const MAX_REPLY: usize = 32;

/// Why [`connect`] could not reach a guest port.
#[derive(Debug, thiserror::Error)]
pub enum VsockConnectError {
    /// Nothing listens at the socket path: the VM is not running or has no vsock device.
    #[error("no VM is listening at {}: the VM is not running or has no vsock device", .path.display())]
    NoSocket {
        /// The socket path tried.
        path: PathBuf,
    },
    /// The VMM closed the connection without `OK`: no guest socket listens on the port (yet).
    #[error("the VM refused the connection to vsock port {port}: nothing listens on it in the guest yet")]
    Refused {
        /// The guest port.
        port: u32,
    },
    /// No answer within the caller's timeout.
    #[error("the VM did not answer the connection to vsock port {port} within {timeout:?}")]
    Timeout {
        /// The guest port.
        port: u32,
        /// The caller's timeout.
        timeout: Duration,
    },
    /// Any other failure talking to the VMM's socket, including a reply that is not `OK <n>`.
    #[error("talking to the VM's vsock socket {} failed: {source}", .path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// Connects to guest vsock `port` through the VMM listening at `uds_path`, waiting at most
/// `timeout` in all. Returns the stream in blocking mode without timeouts, positioned at the
/// first byte the guest sends.
pub fn connect(
    uds_path: &Path,
    port: u32,
    timeout: Duration,
) -> Result<UnixStream, VsockConnectError> {
    let deadline = Instant::now() + timeout;
    let timed_out = || VsockConnectError::Timeout { port, timeout };
    let io_err = |source| VsockConnectError::Io {
        path: uds_path.to_path_buf(),
        source,
    };
    let stream = loop {
        match uds::connect_nonblocking(uds_path) {
            Ok(s) => break s,
            Err(e) => match e.raw_os_error() {
                Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTDIR) => {
                    return Err(VsockConnectError::NoSocket {
                        path: uds_path.to_path_buf(),
                    })
                }
                // The VMM's accept backlog is full: it is busy, not gone.
                Some(libc::EAGAIN) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Some(libc::EAGAIN) => return Err(timed_out()),
                _ => return Err(io_err(e)),
            },
        }
    };
    // Classifies an I/O error of the handshake.
    let classify = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            VsockConnectError::Refused { port }
        }
        _ => io_err(e),
    };
    let left = || {
        let d = deadline.saturating_duration_since(Instant::now());
        (!d.is_zero()).then_some(d).ok_or_else(timed_out)
    };
    stream.set_nonblocking(false).map_err(io_err)?;
    stream.set_write_timeout(Some(left()?)).map_err(io_err)?;
    (&stream)
        .write_all(format!("CONNECT {port}\n").as_bytes())
        .map_err(classify)?;
    let mut line = Vec::new();
    loop {
        stream.set_read_timeout(Some(left()?)).map_err(io_err)?;
        let mut b = [0u8; 1];
        match (&stream).read(&mut b) {
            Ok(0) => return Err(VsockConnectError::Refused { port }),
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) if line.len() < MAX_REPLY => line.push(b[0]),
            Ok(_) => return Err(io_err(bad_reply(&line))),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(classify(e)),
        }
    }
    let ok = std::str::from_utf8(&line)
        .ok()
        .and_then(|l| l.strip_prefix("OK "))
        .is_some_and(|n| n.parse::<u32>().is_ok());
    if !ok {
        return Err(io_err(bad_reply(&line)));
    }
    stream.set_read_timeout(None).map_err(io_err)?;
    stream.set_write_timeout(None).map_err(io_err)?;
    Ok(stream)
}

fn bad_reply(line: &[u8]) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected reply {:?}", String::from_utf8_lossy(line)),
    )
}
