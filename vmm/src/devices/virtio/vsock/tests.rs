//! The device behind its MMIO transport, driven like the Linux driver does (a fake guest that
//! posts RX buffers and sends TX packets), against real Unix sockets on the host side.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::RawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::packet::{Header, Op, HDR_LEN, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};
use super::*;
use crate::devices::virtio::driver_model::{read_reg, setup_queue, write_desc, write_reg};
use crate::devices::virtio::mmio::MmioTransport;

const CID: u64 = 3;
const QSIZE: u16 = 64;
const RX_BUF: u32 = 4096;

/// (descriptor table, avail ring, used ring) of queue `q`.
fn rings(q: usize) -> (u64, u64, u64) {
    let base = 0x10000 + q as u64 * 0x4000;
    (base, base + 0x1000, base + 0x2000)
}

/// A fresh directory for one test's sockets.
fn test_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "vcmp-vsock-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Guest {
    mem: GuestMem,
    t: MmioTransport,
    _irq: EventFd,
    epoll: RawFd,
    metrics: Arc<VsockMetrics>,
    uds: PathBuf,
    next_avail: [u16; 3],
    last_used: [u16; 3],
    inbox: VecDeque<(Header, Vec<u8>)>,
    /// What the fake guest socket layer advertises.
    buf_alloc: u32,
    fwd_cnt: u32,
}

impl Guest {
    fn new() -> Guest {
        let uds = test_dir().join("v.sock");
        let dev = Vsock::new(CID, &uds).unwrap();
        let metrics = dev.metrics();
        let mem = crate::memory::create(32, false).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let t = MmioTransport::new(Box::new(dev), mem.clone(), irq.try_clone().unwrap());
        let epoll = t.host_event_fd().expect("vsock has a host event fd");
        let mut g = Guest {
            mem,
            t,
            _irq: irq,
            epoll,
            metrics,
            uds,
            next_avail: [0; 3],
            last_used: [0; 3],
            inbox: VecDeque::new(),
            buf_alloc: 64 * 1024,
            fwd_cnt: 0,
        };
        g.init();
        g
    }

    /// Probes and sets up the device as the Linux driver does.
    fn init(&mut self) {
        self.next_avail = [0; 3];
        self.last_used = [0; 3];
        assert_eq!(self.r32(8), DEVICE_ID);
        self.w32(0x70, 1 | 2);
        self.w32(0x14, 1);
        assert_eq!(self.r32(0x10), 1, "VERSION_1 offered");
        self.w32(0x24, 1);
        self.w32(0x20, 1);
        self.w32(0x70, 1 | 2 | 8);
        for q in 0..3 {
            let (desc, avail, used) = rings(q);
            for a in [avail, used] {
                self.mem.write_slice(&[0u8; 4], GuestAddress(a)).unwrap();
            }
            setup_queue(
                &mut self.t,
                q as u32,
                QUEUE_SIZE,
                QSIZE,
                (desc, avail, used),
            );
        }
        self.w32(0x70, 1 | 2 | 8 | 4);
        assert_eq!(self.t.status() & 0x40, 0, "activated");
        let mut cid = [0u8; 8];
        self.t.read(0x100, &mut cid);
        assert_eq!(u64::from_le_bytes(cid), CID);
    }

    fn w32(&mut self, off: u64, v: u32) {
        write_reg(&mut self.t, off, v);
    }

    fn r32(&mut self, off: u64) -> u32 {
        read_reg(&mut self.t, off)
    }

    /// Puts a chain of (address, length, device-writable) buffers on queue `q` without
    /// notifying. Each chain gets its own two descriptor slots.
    fn put(&mut self, q: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        assert!(bufs.len() <= 2);
        let (desc, avail, _) = rings(q);
        let first = (self.next_avail[q] % (QSIZE / 2)) * 2;
        for (i, &(addr, len, w)) in bufs.iter().enumerate() {
            let more = i + 1 < bufs.len();
            let flags: u16 = u16::from(more) | if w { 2 } else { 0 };
            let at = u64::from(first) + i as u64;
            write_desc(&self.mem, desc, at, (addr, len), flags, first + 1);
        }
        let slot = u64::from(self.next_avail[q] % QSIZE);
        self.mem
            .write_obj(first, GuestAddress(avail + 4 + 2 * slot))
            .unwrap();
        self.next_avail[q] = self.next_avail[q].wrapping_add(1);
        self.mem
            .write_obj(self.next_avail[q], GuestAddress(avail + 2))
            .unwrap();
        first
    }

    /// Posts `n` 4 KiB RX buffers and notifies.
    fn post_rx(&mut self, n: usize) {
        for _ in 0..n {
            let slot = u64::from(self.next_avail[RX_QUEUE] % (QSIZE / 2));
            self.put(RX_QUEUE, &[(0x100000 + slot * 0x2000, RX_BUF, true)]);
        }
        self.w32(0x50, RX_QUEUE as u32);
    }

    /// A header from the guest socket `src_port` to host port `dst_port`.
    fn hdr(&self, op: Op, src_port: u32, dst_port: u32) -> Header {
        Header {
            src_cid: CID,
            dst_cid: 2,
            src_port,
            dst_port,
            len: 0,
            type_: TYPE_STREAM,
            op: op as u16,
            flags: 0,
            buf_alloc: self.buf_alloc,
            fwd_cnt: self.fwd_cnt,
        }
    }

    /// Sends raw header bytes and `payload` (in a second buffer) on TX and notifies.
    fn send_raw(&mut self, hdr: &[u8], payload: &[u8]) {
        let slot = u64::from(self.next_avail[TX_QUEUE] % (QSIZE / 2));
        let base = 0x400000 + slot * 0x20000;
        self.mem.write_slice(hdr, GuestAddress(base)).unwrap();
        self.mem
            .write_slice(payload, GuestAddress(base + 0x100))
            .unwrap();
        let mut bufs = vec![(base, hdr.len() as u32, false)];
        if !payload.is_empty() {
            bufs.push((base + 0x100, payload.len() as u32, false));
        }
        self.put(TX_QUEUE, &bufs);
        self.w32(0x50, TX_QUEUE as u32);
    }

    fn send(&mut self, mut h: Header, payload: &[u8]) {
        h.len = payload.len() as u32;
        self.send_raw(&h.to_bytes(), payload);
    }

    /// Runs the main loop's part for as long as the epoll fd is ready within `ms`.
    fn pump(&mut self, ms: i32) {
        let mut wait = ms;
        loop {
            let mut p = libc::pollfd {
                fd: self.epoll,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut p, 1, wait) } <= 0 {
                return;
            }
            self.t.process_host_event();
            wait = 0;
        }
    }

    /// Moves used RX buffers into the inbox, consuming the data as a reader would.
    fn collect(&mut self) {
        for (d, len) in self.take_used_rx() {
            let addr: u64 = self.mem.read_obj(GuestAddress(d)).unwrap();
            let h = self.header_at(addr);
            assert_eq!(len as usize, HDR_LEN + h.len as usize, "used length");
            let mut data = vec![0u8; h.len as usize];
            self.mem
                .read_slice(&mut data, GuestAddress(addr + HDR_LEN as u64))
                .unwrap();
            self.fwd_cnt = self.fwd_cnt.wrapping_add(h.len);
            self.inbox.push_back((h, data));
        }
    }

    /// The RX chains used since the last call, in order, as (address of the chain's first
    /// descriptor, used length).
    fn take_used_rx(&mut self) -> Vec<(u64, u32)> {
        let (desc, _, used) = rings(RX_QUEUE);
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        let mut out = Vec::new();
        while self.last_used[RX_QUEUE] != idx {
            let elem = used + 4 + 8 * u64::from(self.last_used[RX_QUEUE] % QSIZE);
            let id: u32 = self.mem.read_obj(GuestAddress(elem)).unwrap();
            let len: u32 = self.mem.read_obj(GuestAddress(elem + 4)).unwrap();
            out.push((desc + 16 * u64::from(id), len));
            self.last_used[RX_QUEUE] = self.last_used[RX_QUEUE].wrapping_add(1);
        }
        out
    }

    /// The packet header at guest address `addr`.
    fn header_at(&self, addr: u64) -> Header {
        let mut raw = [0u8; HDR_LEN];
        self.mem.read_slice(&mut raw, GuestAddress(addr)).unwrap();
        Header::parse(&raw)
    }

    /// The next packet for the guest within `ms`, posting RX buffers as needed.
    fn try_recv(&mut self, ms: u64) -> Option<(Header, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            self.collect();
            if let Some(p) = self.inbox.pop_front() {
                return Some(p);
            }
            if Instant::now() >= deadline {
                return None;
            }
            let posted = self.next_avail[RX_QUEUE].wrapping_sub(self.last_used[RX_QUEUE]);
            if posted < 4 {
                self.post_rx(4);
            }
            self.pump(10);
        }
    }

    fn recv(&mut self) -> (Header, Vec<u8>) {
        self.try_recv(3000).expect("a packet for the guest")
    }

    /// Asserts the next packet's op and ports and returns it.
    fn expect(&mut self, op: Op, local: u32, peer: u32) -> (Header, Vec<u8>) {
        let (h, d) = self.recv();
        assert_eq!(
            (h.op, h.src_port, h.dst_port, h.src_cid, h.dst_cid, h.type_),
            (op as u16, local, peer, 2, CID, TYPE_STREAM),
            "{h:?}"
        );
        (h, d)
    }

    /// Expects the REQUEST of a host connection to guest `port`; returns its host port.
    fn expect_request(&mut self, port: u32) -> u32 {
        let (req, _) = self.recv();
        assert_eq!(req.op, Op::Request as u16, "{req:?}");
        assert_eq!((req.dst_port, req.src_cid, req.dst_cid), (port, 2, CID));
        assert!(req.src_port >= 1 << 30, "host port {}", req.src_port);
        req.src_port
    }

    /// Connects a host stream to guest `port` and plays the guest's accept: returns the
    /// stream (after the OK line) and the host-side port.
    fn host_connect(&mut self, port: u32) -> (UnixStream, u32) {
        let s = UnixStream::connect(&self.uds).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        (&s).write_all(format!("CONNECT {port}\n").as_bytes())
            .unwrap();
        let local = self.expect_request(port);
        self.fwd_cnt = 0; // the fake guest counts for one connection at a time
        self.send(self.hdr(Op::Response, port, local), &[]);
        let line = read_line(&s);
        assert_eq!(line, format!("OK {local}"));
        (s, local)
    }
}

fn read_line(s: &UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        let n = (&*s).read(&mut b).unwrap();
        assert_eq!(n, 1, "EOF before the end of the line {line:?}");
        if b[0] == b'\n' {
            return String::from_utf8(line).unwrap();
        }
        line.push(b[0]);
    }
}

fn read_exact(s: &UnixStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    (&*s).read_exact(&mut v).unwrap();
    v
}

/// Reads until EOF (with the stream's timeout), returning what came.
fn read_to_eof(s: &UnixStream) -> Vec<u8> {
    let mut v = Vec::new();
    (&*s).read_to_end(&mut v).expect("EOF, not a timeout");
    v
}

fn metric(m: &AtomicU64) -> u64 {
    m.load(Ordering::Relaxed)
}

#[test]
fn host_connect_relays_data_both_ways_with_credit() {
    let mut g = Guest::new();
    let (s, local) = g.host_connect(52);
    // Host → guest, stamped with our receive buffer.
    (&s).write_all(b"hello").unwrap();
    let (h, d) = g.expect(Op::Rw, local, 52);
    assert_eq!(d, b"hello");
    assert_eq!((h.buf_alloc, h.fwd_cnt), (CONN_BUF, 0));
    // Guest → host; fwd_cnt counts what reached the host.
    g.send(g.hdr(Op::Rw, 52, local), b"world");
    assert_eq!(read_exact(&s, 5), b"world");
    g.send(g.hdr(Op::CreditRequest, 52, local), &[]);
    let (h, _) = g.expect(Op::CreditUpdate, local, 52);
    assert_eq!(h.fwd_cnt, 5);
    // A big transfer: once the guest's view of our free space is under half the buffer,
    // an update comes unasked.
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..3 {
        g.send(g.hdr(Op::Rw, 52, local), &chunk);
    }
    assert_eq!(read_exact(&s, 3 * chunk.len()).len(), 3 * chunk.len());
    let (h, _) = g.expect(Op::CreditUpdate, local, 52);
    assert_eq!(h.fwd_cnt, 5 + 3 * 64 * 1024);
    assert_eq!(g.metrics.malformed(), 0);
    assert_eq!(metric(&g.metrics.host_connects), 1);
}

#[test]
fn guest_rst_closes_the_host_stream_without_ok() {
    let mut g = Guest::new();
    let s = UnixStream::connect(&g.uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    (&s).write_all(b"CONNECT 99\n").unwrap();
    let local = g.expect_request(99);
    g.send(g.hdr(Op::Rst, 99, local), &[]);
    assert_eq!(read_to_eof(&s), b"");
}

#[test]
fn guest_connects_to_a_host_listener_and_data_flows() {
    let mut g = Guest::new();
    let l = UnixListener::bind(uds::port_path(&g.uds, 1234)).unwrap();
    g.send(g.hdr(Op::Request, 5000, 1234), &[]);
    g.expect(Op::Response, 1234, 5000);
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    g.send(g.hdr(Op::Rw, 5000, 1234), b"abc");
    assert_eq!(read_exact(&s, 3), b"abc");
    (&s).write_all(b"xyz").unwrap();
    let (_, d) = g.expect(Op::Rw, 1234, 5000);
    assert_eq!(d, b"xyz");
    assert_eq!(metric(&g.metrics.guest_connects), 1);
}

#[test]
fn guest_connect_without_listener_gets_rst() {
    let mut g = Guest::new();
    g.send(g.hdr(Op::Request, 5001, 4321), &[]);
    g.expect(Op::Rst, 4321, 5001);
    assert_eq!(metric(&g.metrics.guest_connects_refused), 1);
    // Data to a connection that does not exist is answered with RST too.
    g.send(g.hdr(Op::Rw, 5001, 4321), b"x");
    g.expect(Op::Rst, 4321, 5001);
}

#[test]
fn host_data_waits_for_guest_credit() {
    let mut g = Guest::new();
    g.buf_alloc = 8;
    let (s, local) = g.host_connect(60);
    (&s).write_all(&[1u8; 20]).unwrap();
    let (_, d) = g.expect(Op::Rw, local, 60);
    assert_eq!(d.len(), 8, "no more than the guest's buf_alloc");
    // Credit exhausted: at most a CREDIT_REQUEST, no data.
    let (h, _) = g.expect(Op::CreditRequest, local, 60);
    assert_eq!(h.len, 0);
    assert!(
        g.try_recv(200).is_none(),
        "nothing more until the guest gives credit"
    );
    // The fake guest consumed the 8 bytes (fwd_cnt 8): an update releases the next 8.
    assert_eq!(g.fwd_cnt, 8);
    g.send(g.hdr(Op::CreditUpdate, 60, local), &[]);
    let (_, d) = g.expect(Op::Rw, local, 60);
    assert_eq!(d.len(), 8);
    let _ = g.expect(Op::CreditRequest, local, 60);
    g.send(g.hdr(Op::CreditUpdate, 60, local), &[]);
    let (_, d) = g.expect(Op::Rw, local, 60);
    assert_eq!(d.len(), 4);
}

#[test]
fn guest_ignoring_our_credit_is_reset_and_memory_stays_bounded() {
    let mut g = Guest::new();
    let (s, local) = g.host_connect(61);
    // The host never reads; its socket buffer fills, then ours (CONN_BUF), then RST.
    let chunk = vec![0u8; 64 * 1024];
    let mut rst = false;
    for _ in 0..32 {
        g.send(g.hdr(Op::Rw, 61, local), &chunk);
        g.pump(0);
        g.collect();
        if g.inbox.iter().any(|(h, _)| h.op == Op::Rst as u16) {
            rst = true;
            break;
        }
    }
    assert!(rst, "RST once the guest overran our buffer");
    drop(s);
}

#[test]
fn malformed_packets_are_counted_and_answered() {
    let mut g = Guest::new();
    // Truncated header: dropped silently.
    g.send_raw(&[0u8; 20], &[]);
    assert_eq!(metric(&g.metrics.tx_bad_chain), 1);
    // len beyond the chain: RST.
    let mut h = g.hdr(Op::Rw, 7000, 80);
    h.len = 100;
    g.send_raw(&h.to_bytes(), &[1u8; 10]);
    assert_eq!(metric(&g.metrics.tx_bad_len), 1);
    g.expect(Op::Rst, 80, 7000);
    // Unknown op: RST.
    let mut h = g.hdr(Op::Rw, 7001, 80);
    h.op = 42;
    g.send(h, &[]);
    assert_eq!(metric(&g.metrics.tx_unknown_op), 1);
    g.expect(Op::Rst, 80, 7001);
    // Wrong type (SEQPACKET was not offered): RST.
    let mut h = g.hdr(Op::Request, 7002, 80);
    h.type_ = 2;
    g.send(h, &[]);
    assert_eq!(metric(&g.metrics.tx_bad_type), 1);
    g.expect(Op::Rst, 80, 7002);
    // Forged source cid: dropped without an answer.
    let mut h = g.hdr(Op::Request, 7003, 80);
    h.src_cid = 9;
    g.send(h, &[]);
    assert_eq!(metric(&g.metrics.tx_bad_cid), 1);
    // A device-writable buffer in a TX chain: dropped.
    g.put(TX_QUEUE, &[(0x300000, 64, true)]);
    g.w32(0x50, TX_QUEUE as u32);
    assert_eq!(metric(&g.metrics.tx_bad_chain), 2);
    assert!(g.try_recv(100).is_none());
    assert_eq!(g.metrics.malformed(), 6);
    assert_eq!(g.t.status() & 0x40, 0, "the device still runs");
    // And it still works.
    let (s, local) = g.host_connect(52);
    (&s).write_all(b"ok").unwrap();
    assert_eq!(g.expect(Op::Rw, local, 52).1, b"ok");
}

#[test]
fn malformed_connect_line_closes_the_stream() {
    let mut g = Guest::new();
    let s = UnixStream::connect(&g.uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    (&s).write_all(b"HELLO 52\n").unwrap();
    g.pump(100);
    assert_eq!(read_to_eof(&s), b"");
    assert_eq!(metric(&g.metrics.host_connects_bad), 1);
    assert!(g.try_recv(50).is_none(), "no REQUEST for a bad line");
}

#[test]
fn silent_host_stream_times_out() {
    let mut g = Guest::new();
    let s = UnixStream::connect(&g.uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (&s).write_all(b"CONNECT").unwrap();
    let t0 = Instant::now();
    while metric(&g.metrics.host_connects_bad) == 0 && t0.elapsed() < Duration::from_secs(4) {
        g.pump(100);
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "not before the timeout"
    );
    assert_eq!(read_to_eof(&s), b"");
}

#[test]
fn shutdowns_close_in_order() {
    let mut g = Guest::new();
    // Guest shuts down both ways: pending data reaches the host first, then EOF and RST.
    let (s, local) = g.host_connect(70);
    g.send(g.hdr(Op::Rw, 70, local), b"last words");
    let mut h = g.hdr(Op::Shutdown, 70, local);
    h.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    g.send(h, &[]);
    assert_eq!(read_to_eof(&s), b"last words");
    g.expect(Op::Rst, local, 70);
    // The host closes: SHUTDOWN(both) to the guest, whose RST ends it.
    let (s, local) = g.host_connect(71);
    (&s).write_all(b"bye").unwrap();
    drop(s);
    assert_eq!(g.expect(Op::Rw, local, 71).1, b"bye");
    let (h, _) = g.expect(Op::Shutdown, local, 71);
    assert_eq!(h.flags, SHUTDOWN_RCV | SHUTDOWN_SEND);
    g.send(g.hdr(Op::Rst, 71, local), &[]);
    // A host half-close only ends the host → guest direction.
    let (s, local) = g.host_connect(72);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let (h, _) = g.expect(Op::Shutdown, local, 72);
    assert_eq!(h.flags, SHUTDOWN_SEND);
    g.send(g.hdr(Op::Rw, 72, local), b"reply");
    assert_eq!(read_exact(&s, 5), b"reply");
}

#[test]
fn reset_drops_connections() {
    let mut g = Guest::new();
    let (s, _) = g.host_connect(52);
    g.w32(0x70, 0);
    assert_eq!(read_to_eof(&s), b"");
    g.init();
    // A new driver starts from scratch and the listener still works.
    let (s, local) = g.host_connect(52);
    (&s).write_all(b"again").unwrap();
    assert_eq!(g.expect(Op::Rw, local, 52).1, b"again");
}

#[test]
fn dropping_the_device_removes_the_socket_file() {
    let g = Guest::new();
    let path = g.uds.clone();
    assert!(path.exists());
    drop(g);
    assert!(!path.exists());
}

#[test]
fn client_gets_the_stream_without_over_reading() {
    let mut g = Guest::new();
    let uds = g.uds.clone();
    let client = std::thread::spawn(move || connect(&uds, 52, Duration::from_secs(5)));
    let local = g.expect_request(52);
    g.send(g.hdr(Op::Response, 52, local), &[]);
    g.send(g.hdr(Op::Rw, 52, local), b"first");
    let s = client.join().unwrap().expect("connected");
    assert_eq!(s.read_timeout().unwrap(), None);
    assert_eq!(read_exact(&s, 5), b"first");
}

#[test]
fn client_reports_refused_no_socket_and_timeout() {
    let mut g = Guest::new();
    let uds = g.uds.clone();
    let client = std::thread::spawn(move || connect(&uds, 99, Duration::from_secs(5)));
    let local = g.expect_request(99);
    g.send(g.hdr(Op::Rst, 99, local), &[]);
    let e = client.join().unwrap().unwrap_err();
    assert!(matches!(e, VsockConnectError::Refused { port: 99 }), "{e}");

    let missing = test_dir().join("none.sock");
    let e = connect(&missing, 1, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, VsockConnectError::NoSocket { .. }), "{e}");

    // A VMM that never answers (nobody runs its main loop here).
    let t0 = Instant::now();
    let e = connect(&g.uds, 1, Duration::from_millis(300)).unwrap_err();
    assert!(matches!(e, VsockConnectError::Timeout { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn long_socket_paths_work() {
    let mut dir = test_dir();
    while dir.as_os_str().len() <= MAX_SUN_PATH {
        dir.push("a-rather-long-directory-name");
    }
    std::fs::create_dir_all(&dir).unwrap();
    let uds = dir.join("v.sock");
    let dev = Vsock::new(CID, &uds).unwrap();
    assert!(uds.exists());
    let e = connect(&uds, 1, Duration::from_millis(100)).unwrap_err();
    assert!(
        matches!(e, VsockConnectError::Timeout { .. }),
        "reached the listener: {e}"
    );
    drop(dev);
    assert!(!uds.exists());
}

#[test]
fn invalid_cid_is_refused() {
    let uds = test_dir().join("v.sock");
    assert!(matches!(Vsock::new(2, &uds), Err(VsockError::BadCid(2))));
}

impl Guest {
    /// Sends `bytes` (header and payload) on TX in two buffers, split at byte `split`.
    fn send_split(&mut self, bytes: &[u8], split: usize) {
        let slot = u64::from(self.next_avail[TX_QUEUE] % (QSIZE / 2));
        let base = 0x400000 + slot * 0x20000;
        let (a, b) = bytes.split_at(split);
        self.mem.write_slice(a, GuestAddress(base)).unwrap();
        self.mem
            .write_slice(b, GuestAddress(base + 0x10000))
            .unwrap();
        self.put(
            TX_QUEUE,
            &[
                (base, a.len() as u32, false),
                (base + 0x10000, b.len() as u32, false),
            ],
        );
        self.w32(0x50, TX_QUEUE as u32);
    }

    /// The RX chains used since the last call: (header, used length, bytes of the chain's
    /// second buffer, if it has one), read the way a driver that posted them would.
    fn used_rx_chains(&mut self) -> Vec<(Header, u32, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        for (d, len) in self.take_used_rx() {
            let addr: u64 = self.mem.read_obj(GuestAddress(d)).unwrap();
            let flags: u16 = self.mem.read_obj(GuestAddress(d + 12)).unwrap();
            let h = self.header_at(addr);
            let data = (flags & 1 != 0).then(|| {
                let addr: u64 = self.mem.read_obj(GuestAddress(d + 16)).unwrap();
                let mut v = vec![0u8; h.len as usize];
                self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
                v
            });
            out.push((h, len, data));
        }
        out
    }
}

#[test]
fn tx_packets_framed_over_buffers_any_way_are_accepted() {
    let mut g = Guest::new();
    let l = UnixListener::bind(uds::port_path(&g.uds, 1234)).unwrap();
    // The header split over two buffers.
    g.send_split(&g.hdr(Op::Request, 5000, 1234).to_bytes(), 20);
    g.expect(Op::Response, 1234, 5000);
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // The payload starting in the header's buffer and continuing in the next.
    let mut h = g.hdr(Op::Rw, 5000, 1234);
    h.len = 6;
    let mut bytes = h.to_bytes().to_vec();
    bytes.extend_from_slice(b"abcdef");
    g.send_split(&bytes, HDR_LEN + 2);
    assert_eq!(read_exact(&s, 6), b"abcdef");
    // The header split and `len` beyond the chain: RST, as with the usual framing.
    let mut h = g.hdr(Op::Rw, 5000, 1234);
    h.len = 100;
    let mut bytes = h.to_bytes().to_vec();
    bytes.extend_from_slice(b"xyz");
    g.send_split(&bytes, 30);
    assert_eq!(metric(&g.metrics.tx_bad_len), 1);
    g.expect(Op::Rst, 1234, 5000);
    // `len` beyond 64 KiB with a forged cid: dropped for the cid, without an answer.
    let mut h = g.hdr(Op::Rw, 5001, 1234);
    (h.src_cid, h.len) = (9, MAX_PAYLOAD + 1);
    g.send_raw(&h.to_bytes(), b"x");
    assert_eq!(metric(&g.metrics.tx_bad_cid), 1);
    assert!(g.try_recv(100).is_none());
    assert_eq!(g.metrics.malformed(), 2);
}

#[test]
fn rx_chains_of_a_lone_header_or_header_and_data_buffers_are_filled() {
    let mut g = Guest::new();
    // A lone header-sized buffer takes a control packet.
    g.put(RX_QUEUE, &[(0x100000, HDR_LEN as u32, true)]);
    g.w32(0x50, RX_QUEUE as u32);
    let s = UnixStream::connect(&g.uds).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    (&s).write_all(b"CONNECT 52\n").unwrap();
    g.pump(200);
    let got = g.used_rx_chains();
    assert_eq!(got.len(), 1, "{got:?}");
    let (req, len, _) = got[0];
    assert_eq!(
        (req.op, req.dst_port, len),
        (Op::Request as u16, 52, HDR_LEN as u32)
    );
    let local = req.src_port;
    g.send(g.hdr(Op::Response, 52, local), &[]);
    assert_eq!(read_line(&s), format!("OK {local}"));
    // A header buffer and a data buffer (older Linux drivers): the payload goes to the
    // second.
    for i in 0..4u64 {
        g.put(
            RX_QUEUE,
            &[
                (0x110000 + i * 0x100, HDR_LEN as u32, true),
                (0x120000 + i * 0x2000, RX_BUF, true),
            ],
        );
    }
    g.w32(0x50, RX_QUEUE as u32);
    (&s).write_all(b"hello").unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let rw = loop {
        g.pump(20);
        if let Some(p) = g
            .used_rx_chains()
            .into_iter()
            .find(|(h, _, _)| h.op == Op::Rw as u16)
        {
            break p;
        }
        assert!(Instant::now() < deadline, "no RW packet");
    };
    let (h, len, data) = rw;
    assert_eq!(
        (h.src_port, h.dst_port, h.len, len),
        (local, 52, 5, HDR_LEN as u32 + 5)
    );
    assert_eq!(data.as_deref(), Some(&b"hello"[..]));
    assert_eq!(metric(&g.metrics.rx_bad_chain), 0);
}
