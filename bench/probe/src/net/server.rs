//! `probe net-serve`: one listening socket, one thread per connection, each connection
//! declaring in its [`Header`] whether it is request/response or bulk. Threads, not an event
//! loop: a benchmark server holds one or two connections, and a blocking read/write pair is
//! the least code between the socket and the figure.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use super::error::NetError;
use super::params::ServeParams;
use super::report::ServeReady;
use super::wire::{read_full, Filled, Header, Mode};

/// Longest silence inside a connection before the server gives up on it (a client that died
/// mid-transaction must not hold a thread forever).
const IDLE: Duration = Duration::from_secs(120);
/// Read size of the bulk sink.
const SINK_BUF: usize = 256 << 10;

/// Binds `p` and returns the listener with the ready line describing it.
pub fn bind(p: &ServeParams) -> Result<(TcpListener, ServeReady), NetError> {
    let addr = SocketAddr::new(p.bind, p.port);
    let l = TcpListener::bind(addr).map_err(|source| NetError::Bind { addr, source })?;
    let port = l
        .local_addr()
        .map_err(|source| NetError::Bind { addr, source })?
        .port();
    let addrs = super::addrs::ipv4_non_loopback()?
        .into_iter()
        .map(|a| a.to_string())
        .collect();
    Ok((
        l,
        ServeReady {
            workload: "net-serve".into(),
            bind: p.bind.to_string(),
            port,
            addrs,
        },
    ))
}

/// Accepts forever, serving each connection on its own thread; a broken connection ends only
/// its thread (reported on stderr), never the server.
pub fn serve(listener: TcpListener) -> Result<(), NetError> {
    loop {
        match listener.accept() {
            Ok((s, peer)) => {
                std::thread::spawn(move || {
                    if let Err(e) = connection(s) {
                        eprintln!("probe net-serve: connection from {peer}: {e}");
                    }
                });
            }
            // Aborted handshakes and fd or memory pressure are transient: keep listening.
            Err(e) if transient(&e) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(NetError::io("accepting a connection")(e)),
        }
    }
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EPROTO
        )
    )
}

/// Serves one connection according to its header.
pub fn connection(mut s: TcpStream) -> Result<(), NetError> {
    s.set_nodelay(true)
        .and_then(|_| s.set_read_timeout(Some(IDLE)))
        .and_then(|_| s.set_write_timeout(Some(IDLE)))
        .map_err(NetError::io("setting socket options"))?;
    let Some(h) = Header::read_from(&mut s)? else {
        return Ok(());
    };
    match h.mode {
        Mode::RequestResponse => echo(&mut s, &h),
        Mode::Stream => sink(&mut s),
    }
}

/// Reads whole requests and answers each with a whole response until the client closes
/// between transactions.
fn echo(s: &mut TcpStream, h: &Header) -> Result<(), NetError> {
    let mut req = vec![0u8; h.request_bytes as usize];
    let resp = vec![0x5a_u8; h.response_bytes as usize];
    for n in 1u64.. {
        match read_full(s, &mut req).map_err(NetError::io(format!("reading request {n}")))? {
            Filled::Eof => return Ok(()),
            Filled::Full => s
                .write_all(&resp)
                .map_err(NetError::io(format!("writing response {n}")))?,
        }
    }
    Ok(())
}

/// Counts bytes until the client shuts down writing, then answers with the count.
fn sink(s: &mut TcpStream) -> Result<(), NetError> {
    let mut buf = vec![0u8; SINK_BUF];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(NetError::io("receiving the stream")(e)),
        }
    }
    s.write_all(&total.to_be_bytes())
        .map_err(NetError::io("sending the byte count"))
}
