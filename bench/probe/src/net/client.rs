//! `probe net-client`: the measuring side. Every clock read is here, on the client, with the
//! monotonic clock ([`Instant`]), so a figure never mixes two machines' clocks (the server
//! may be a guest with its own).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::error::NetError;
use super::latency::LatencySummary;
use super::params::Params;
use super::report::{ClientReport, RrReport, StreamReport};
use super::wire::{Header, Mode};

/// How long a connect may take: a nested guest answers slowly, but not this slowly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one read or write may block before the path is declared broken.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the bulk client waits for the server's byte count after its last write: the
/// socket buffers (a few MiB) still drain then, and a nested guest receives at well under
/// 1 MiB/s.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Nanoseconds between two instants, saturating.
fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Connects with the timeouts and `TCP_NODELAY` every measurement uses; returns the socket
/// and the connect time.
fn connect(target: SocketAddr) -> Result<(TcpStream, u64), NetError> {
    let t = Instant::now();
    let s = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).map_err(|source| {
        NetError::Connect {
            addr: target,
            source,
        }
    })?;
    let connect_ns = ns(t.elapsed());
    s.set_nodelay(true)
        .and_then(|_| s.set_read_timeout(Some(IO_TIMEOUT)))
        .and_then(|_| s.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(NetError::io("setting socket options"))?;
    Ok((s, connect_ns))
}

/// Runs both measurements of `p` against `target` (each skipped when its bound is 0).
pub fn run(target: SocketAddr, p: &Params) -> Result<ClientReport, NetError> {
    let rr = if p.count > 0 {
        Some(request_response(target, p)?)
    } else {
        None
    };
    let stream = if p.stream_secs > 0.0 {
        Some(stream(target, p)?)
    } else {
        None
    };
    Ok(ClientReport {
        workload: "net-client".into(),
        target: target.to_string(),
        rr,
        stream,
    })
}

/// One transaction: the whole request out, the whole response in.
fn transact(s: &mut TcpStream, req: &[u8], resp: &mut [u8], n: u64) -> Result<(), NetError> {
    s.write_all(req)
        .map_err(NetError::io(format!("writing request {n}")))?;
    s.read_exact(resp)
        .map_err(NetError::io(format!("reading response {n}")))
}

/// Warm-up, then the timed transactions, bounded by count and by time.
pub fn request_response(target: SocketAddr, p: &Params) -> Result<RrReport, NetError> {
    let (mut s, connect_ns) = connect(target)?;
    Header {
        mode: Mode::RequestResponse,
        request_bytes: p.request_bytes,
        response_bytes: p.response_bytes,
    }
    .write_to(&mut s)?;
    let req = vec![0xa5_u8; p.request_bytes as usize];
    let mut resp = vec![0u8; p.response_bytes as usize];

    let warm_limit = Duration::from_secs_f64(p.warmup_secs);
    let warm_start = Instant::now();
    let mut warmup_done = 0;
    while warmup_done < p.warmup && warm_start.elapsed() < warm_limit {
        warmup_done += 1;
        transact(&mut s, &req, &mut resp, warmup_done)?;
    }

    let limit = Duration::from_secs_f64(p.max_secs);
    let mut lat = Vec::with_capacity(p.count.min(1 << 24) as usize);
    let start = Instant::now();
    let mut last = start;
    let mut by_time = false;
    while (lat.len() as u64) < p.count {
        if last - start >= limit {
            by_time = true;
            break;
        }
        let t = Instant::now();
        transact(&mut s, &req, &mut resp, warmup_done + lat.len() as u64 + 1)?;
        last = Instant::now();
        lat.push(ns(last - t));
    }
    let elapsed_ns = ns(last - start);
    drop(s);
    let summary = LatencySummary::of(&mut lat)
        .ok_or_else(|| NetError::Protocol("no transaction completed within --max-secs".into()))?;
    Ok(RrReport::new(
        p.request_bytes,
        p.response_bytes,
        connect_ns,
        warmup_done,
        by_time,
        elapsed_ns,
        &summary,
    ))
}

/// Bulk: writes for `stream_secs`, shuts down writing, reads the server's byte count.
pub fn stream(target: SocketAddr, p: &Params) -> Result<StreamReport, NetError> {
    let (mut s, _) = connect(target)?;
    Header {
        mode: Mode::Stream,
        request_bytes: p.chunk_bytes,
        response_bytes: 0,
    }
    .write_to(&mut s)?;
    let buf = vec![0xa5_u8; p.chunk_bytes as usize];
    let limit = Duration::from_secs_f64(p.stream_secs);
    let mut sent = 0u64;
    let start = Instant::now();
    while start.elapsed() < limit {
        s.write_all(&buf).map_err(NetError::io(format!(
            "writing the stream after {sent} bytes"
        )))?;
        sent += buf.len() as u64;
    }
    s.shutdown(Shutdown::Write)
        .map_err(NetError::io("ending the stream"))?;
    let mut count = [0u8; 8];
    s.set_read_timeout(Some(DRAIN_TIMEOUT))
        .map_err(NetError::io("setting socket options"))?;
    s.read_exact(&mut count)
        .map_err(NetError::io("reading the server's byte count"))?;
    let elapsed_ns = ns(start.elapsed());
    let received = u64::from_be_bytes(count);
    if received != sent {
        return Err(NetError::Protocol(format!(
            "server received {received} bytes, client sent {sent}"
        )));
    }
    Ok(StreamReport::new(p.chunk_bytes, sent, received, elapsed_ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{bind, serve, ServeParams};

    /// A server on 127.0.0.1, port chosen by the kernel, serving on a background thread.
    fn loopback_server() -> SocketAddr {
        let (l, ready) = bind(&ServeParams {
            bind: "127.0.0.1".parse().unwrap(),
            port: 0,
        })
        .unwrap();
        std::thread::spawn(move || serve(l));
        SocketAddr::new("127.0.0.1".parse().unwrap(), ready.port)
    }

    #[test]
    fn loopback_round_trips_are_counted_and_bounded() {
        let target = loopback_server();
        let p = Params {
            count: 500,
            warmup: 20,
            stream_secs: 0.2,
            ..Params::default()
        };
        let r = run(target, &p).unwrap();
        let rr = r.rr.unwrap();
        assert_eq!((rr.transactions, rr.warmup_done), (500, 20));
        assert_eq!(rr.stopped_by, "count");
        assert!(rr.min_ns <= rr.p50_ns && rr.p50_ns <= rr.p99_ns && rr.p99_ns <= rr.max_ns);
        assert!(rr.min_ns > 0 && rr.elapsed_ns >= rr.transactions * rr.min_ns);
        let st = r.stream.unwrap();
        assert_eq!(st.sent_bytes, st.received_bytes);
        assert!(st.received_bytes > 0 && st.elapsed_ns >= 200_000_000);
    }

    #[test]
    fn the_time_bound_ends_a_long_count() {
        let target = loopback_server();
        let p = Params {
            count: u64::MAX,
            warmup: 0,
            max_secs: 0.1,
            stream_secs: 0.0,
            ..Params::default()
        };
        let r = run(target, &p).unwrap();
        let rr = r.rr.unwrap();
        assert_eq!(rr.stopped_by, "time");
        assert!(rr.elapsed_ns >= 100_000_000 && rr.transactions > 0);
        assert!(r.stream.is_none());
    }

    #[test]
    fn the_warm_up_is_time_bounded_too() {
        let target = loopback_server();
        let p = Params {
            warmup: u64::MAX,
            warmup_secs: 0.05,
            count: 1,
            stream_secs: 0.0,
            ..Params::default()
        };
        let rr = run(target, &p).unwrap().rr.unwrap();
        assert!(rr.warmup_done > 0 && rr.warmup_done < u64::MAX);
        assert_eq!(rr.transactions, 1);
    }

    #[test]
    fn large_messages_are_whole() {
        let target = loopback_server();
        let p = Params {
            request_bytes: 1 << 20,
            response_bytes: 3 << 20,
            count: 3,
            warmup: 1,
            stream_secs: 0.0,
            ..Params::default()
        };
        assert_eq!(run(target, &p).unwrap().rr.unwrap().transactions, 3);
    }

    #[test]
    fn a_closed_port_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = l.local_addr().unwrap();
        drop(l);
        let e = run(target, &Params::default()).unwrap_err();
        assert!(matches!(e, NetError::Connect { .. }), "{e}");
    }
}
