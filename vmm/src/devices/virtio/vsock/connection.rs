//! One stream connection between a host Unix stream and a guest vsock socket: its state
//! machine and both directions' credit accounting.
//!
//! Guest → host: data lands in `to_host`, bounded by [`CONN_BUF`], the `buf_alloc` we
//! advertise; `fwd_cnt` counts what reached the host stream. The guest may only have
//! `CONN_BUF - (rx_cnt - fwd_cnt)` bytes in flight, so a slow host reader stops the guest
//! instead of growing the buffer; more than that is a protocol violation (RST).
//! Host → guest: we read from the host stream only what the guest's last advertised
//! `buf_alloc`/`fwd_cnt` allow, and ask for credit (`CREDIT_REQUEST`) once when it runs out.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::packet::{GuestPacket, Header, Op, MAX_PAYLOAD, SHUTDOWN_RCV, SHUTDOWN_SEND};
use super::VsockMetrics;

/// Receive buffer per connection for guest → host data not yet written to the host.
pub const CONN_BUF: u32 = 256 * 1024;
/// How long the guest has to answer a host-initiated REQUEST (Firecracker's value).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a closing connection waits for the guest's RST, or for a slow host to take the
/// data the guest sent before it shut down.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest control-packet backlog; a guest that floods TX without posting RX buffers
/// loses the excess (counted) instead of growing VMM memory.
const MAX_CTL: usize = 1024;

/// A connection's identity: host-side port and guest-side port (the cids are fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnKey {
    /// The host side's port (`src_port` of packets to the guest).
    pub local_port: u32,
    /// The guest side's port.
    pub peer_port: u32,
}

/// A header-only packet waiting for a guest RX buffer.
#[derive(Debug, Clone, Copy)]
pub struct Ctl {
    /// The connection it belongs to (which may be gone by the time it is sent, e.g. RST).
    pub key: ConnKey,
    /// The op.
    pub op: Op,
    /// SHUTDOWN flags.
    pub flags: u32,
}

/// The bounded queue of control packets for the guest.
pub struct CtlQueue {
    q: VecDeque<Ctl>,
    metrics: Arc<VsockMetrics>,
}

impl CtlQueue {
    /// An empty queue counting its drops in `metrics`.
    pub fn new(metrics: Arc<VsockMetrics>) -> CtlQueue {
        CtlQueue {
            q: VecDeque::new(),
            metrics,
        }
    }

    /// Queues `op` for `key` (dropped and counted when the queue is full).
    pub fn push(&mut self, key: ConnKey, op: Op, flags: u32) {
        if self.q.len() >= MAX_CTL {
            VsockMetrics::add(&self.metrics.ctl_dropped);
            return;
        }
        self.q.push_back(Ctl { key, op, flags });
    }

    /// The oldest queued packet.
    pub fn pop(&mut self) -> Option<Ctl> {
        self.q.pop_front()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    /// Forgets everything (device reset).
    pub fn clear(&mut self) {
        self.q.clear();
    }
}

/// What the muxer must do with a connection after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Fate {
    /// It lives on.
    Keep,
    /// Remove it (its host stream is closed by the drop).
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Host-initiated: REQUEST queued, waiting for the guest's RESPONSE until the instant.
    Connecting(Instant),
    /// Data flows.
    Established,
    /// The host hung up: SHUTDOWN(both) queued, waiting for the guest's RST until the instant.
    Closing(Instant),
    /// The guest shut down both ways: flushing to the host, then RST (at the instant at the
    /// latest).
    Draining(Instant),
}

/// One connection.
pub struct Connection {
    key: ConnKey,
    /// The epoll token of `stream`.
    pub token: u64,
    stream: UnixStream,
    state: State,
    /// Guest data not yet written to the host.
    to_host: VecDeque<u8>,
    /// Guest bytes received, ever (wrapping, like every counter here).
    rx_cnt: u32,
    /// Guest bytes written to the host (or discarded after the host left).
    fwd_cnt: u32,
    /// `fwd_cnt` as last told to the guest.
    fwd_cnt_sent: u32,
    credit_update_queued: bool,
    /// Host bytes sent to the guest.
    tx_cnt: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    credit_requested: bool,
    /// The host stream may have bytes (or EOF) to read: set by epoll, cleared on EAGAIN.
    readable: bool,
    /// Read returned EOF: the host sends no more.
    host_eof: bool,
    /// The host closed (or errored): it also receives no more.
    host_hup: bool,
    /// We shut down writing to the host (the guest sends no more).
    host_write_shut: bool,
    /// SHUTDOWN flags the guest sent.
    peer_shut: u32,
}

impl Connection {
    fn new(key: ConnKey, token: u64, stream: UnixStream, state: State) -> Connection {
        Connection {
            key,
            token,
            stream,
            state,
            to_host: VecDeque::new(),
            rx_cnt: 0,
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            credit_update_queued: false,
            tx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            credit_requested: false,
            readable: false,
            host_eof: false,
            host_hup: false,
            host_write_shut: false,
            peer_shut: 0,
        }
    }

    /// A host process asked for guest port `key.peer_port`; the caller queues the REQUEST.
    pub fn host_initiated(key: ConnKey, token: u64, stream: UnixStream) -> Connection {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        Connection::new(key, token, stream, State::Connecting(deadline))
    }

    /// The guest's REQUEST `hdr` reached a host listener on `stream`; the caller queues the
    /// RESPONSE.
    pub fn guest_initiated(
        key: ConnKey,
        token: u64,
        stream: UnixStream,
        hdr: &Header,
    ) -> Connection {
        let mut c = Connection::new(key, token, stream, State::Established);
        c.peer_buf_alloc = hdr.buf_alloc;
        c.peer_fwd_cnt = hdr.fwd_cnt;
        c.readable = true;
        c
    }

    /// Bytes the guest can still take from us.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Fills our receive-buffer state into a header about to go to the guest.
    pub fn stamp(&mut self, hdr: &mut Header) {
        hdr.buf_alloc = CONN_BUF;
        hdr.fwd_cnt = self.fwd_cnt;
        self.fwd_cnt_sent = self.fwd_cnt;
        if hdr.op == Op::CreditUpdate as u16 {
            self.credit_update_queued = false;
        }
    }

    /// When the connection gives up if nothing happens.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Connecting(d) | State::Closing(d) | State::Draining(d) => Some(d),
            State::Established => None,
        }
    }

    /// RST and close if the deadline passed.
    pub fn on_timeout(&mut self, now: Instant, ctl: &mut CtlQueue) -> Fate {
        match self.deadline() {
            Some(d) if d <= now => self.abort(ctl),
            _ => Fate::Keep,
        }
    }

    fn abort(&mut self, ctl: &mut CtlQueue) -> Fate {
        ctl.push(self.key, Op::Rst, 0);
        Fate::Close
    }

    /// The host is gone for good: tell the guest both directions are over and wait for its
    /// RST (or the timeout).
    fn close_both(&mut self, ctl: &mut CtlQueue) -> Fate {
        match self.state {
            State::Connecting(_) => self.abort(ctl),
            State::Closing(_) => Fate::Keep,
            State::Established | State::Draining(_) => {
                self.to_host.clear();
                ctl.push(self.key, Op::Shutdown, SHUTDOWN_RCV | SHUTDOWN_SEND);
                self.state = State::Closing(Instant::now() + SHUTDOWN_TIMEOUT);
                Fate::Keep
            }
        }
    }

    /// Handles a packet from the guest addressed to this connection.
    pub fn on_guest(&mut self, pkt: &GuestPacket, ctl: &mut CtlQueue) -> Fate {
        let h = &pkt.hdr;
        if (h.buf_alloc, h.fwd_cnt) != (self.peer_buf_alloc, self.peer_fwd_cnt) {
            self.credit_requested = false;
        }
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
        match (pkt.op, self.state) {
            (Op::Rst, _) => Fate::Close,
            (Op::Response, State::Connecting(_)) => {
                let line = format!("OK {}\n", self.key.local_port);
                // A fresh socket's buffer is empty: a short write means the host is gone.
                match (&self.stream).write(line.as_bytes()) {
                    Ok(n) if n == line.len() => {
                        self.state = State::Established;
                        self.readable = true;
                        Fate::Keep
                    }
                    _ => self.abort(ctl),
                }
            }
            (Op::CreditUpdate, _) => Fate::Keep,
            (Op::CreditRequest, _) => {
                if !self.credit_update_queued {
                    self.credit_update_queued = true;
                    ctl.push(self.key, Op::CreditUpdate, 0);
                }
                Fate::Keep
            }
            (Op::Rw, State::Closing(_)) => {
                // The host left: the data has nowhere to go, but still frees credit.
                self.rx_cnt = self.rx_cnt.wrapping_add(h.len);
                self.fwd_cnt = self.fwd_cnt.wrapping_add(h.len);
                Fate::Keep
            }
            (Op::Rw, State::Established) if self.peer_shut & SHUTDOWN_SEND == 0 => {
                if self.to_host.len() + pkt.payload.len() > CONN_BUF as usize {
                    return self.abort(ctl); // the guest ignored our credit
                }
                self.to_host.extend(&pkt.payload);
                self.rx_cnt = self.rx_cnt.wrapping_add(h.len);
                self.flush(ctl)
            }
            (Op::Shutdown, State::Established | State::Draining(_) | State::Closing(_)) => {
                self.peer_shut |= h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
                if self.peer_shut == SHUTDOWN_RCV | SHUTDOWN_SEND {
                    if let State::Closing(_) = self.state {
                        return self.abort(ctl);
                    }
                    self.state = State::Draining(Instant::now() + SHUTDOWN_TIMEOUT);
                } else if self.peer_shut & SHUTDOWN_RCV != 0 && self.host_hup {
                    return self.close_both(ctl);
                }
                self.flush(ctl)
            }
            _ => self.abort(ctl), // REQUEST on a live connection, data out of state, ...
        }
    }

    /// Handles epoll readiness `events` of the host stream.
    pub fn on_host_event(&mut self, events: u32, ctl: &mut CtlQueue) -> Fate {
        let hup = (libc::EPOLLHUP | libc::EPOLLERR) as u32;
        if events & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 | hup != 0 {
            self.readable = true;
        }
        if events & hup != 0 {
            self.host_hup = true;
        }
        if self.flush(ctl) == Fate::Close {
            return Fate::Close;
        }
        let guest_done_reading = self.peer_shut & SHUTDOWN_RCV != 0 || self.host_eof;
        match self.state {
            State::Connecting(_) if self.host_hup => self.abort(ctl),
            State::Established if self.host_hup && guest_done_reading => self.close_both(ctl),
            _ => Fate::Keep,
        }
    }

    /// Writes buffered guest data to the host until done or the host's socket is full, then
    /// does what the progress allows: finish a drain, half-close, or give the guest credit.
    pub fn flush(&mut self, ctl: &mut CtlQueue) -> Fate {
        while !self.to_host.is_empty() {
            let (chunk, _) = self.to_host.as_slices();
            match (&self.stream).write(chunk) {
                Ok(n) => {
                    self.to_host.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // EPIPE and friends: the host is gone; what is left counts as delivered.
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(self.to_host.len() as u32);
                    self.host_hup = true;
                    if let State::Draining(_) = self.state {
                        return self.abort(ctl);
                    }
                    return self.close_both(ctl);
                }
            }
        }
        if !self.to_host.is_empty() {
            return Fate::Keep;
        }
        if let State::Draining(_) = self.state {
            return self.abort(ctl);
        }
        if self.peer_shut & SHUTDOWN_SEND != 0 && !self.host_write_shut {
            self.host_write_shut = true;
            let _ = self.stream.shutdown(Shutdown::Write);
        }
        if self.needs_credit_update() {
            self.credit_update_queued = true;
            ctl.push(self.key, Op::CreditUpdate, 0);
        }
        Fate::Keep
    }

    /// The guest's view of our free space fell under half the buffer and we forwarded more
    /// since we last told it: it may be waiting for credit, so tell it.
    fn needs_credit_update(&self) -> bool {
        let seen_free = CONN_BUF.saturating_sub(self.rx_cnt.wrapping_sub(self.fwd_cnt_sent));
        matches!(self.state, State::Established | State::Closing(_))
            && !self.credit_update_queued
            && self.fwd_cnt != self.fwd_cnt_sent
            && seen_free < CONN_BUF / 2
    }

    /// Whether host data could move to the guest now (given an RX buffer).
    pub fn wants_rx(&self) -> bool {
        self.state == State::Established
            && self.readable
            && !self.host_eof
            && self.peer_shut & SHUTDOWN_RCV == 0
            && self.peer_credit() > 0
    }

    /// The host has data but the guest's credit is used up: ask the guest once for an update
    /// (Linux also sends one unasked as its reader drains).
    pub fn request_credit_if_stalled(&mut self, ctl: &mut CtlQueue) {
        if self.state == State::Established
            && self.readable
            && !self.host_eof
            && self.peer_credit() == 0
            && !self.credit_requested
        {
            self.credit_requested = true;
            ctl.push(self.key, Op::CreditRequest, 0);
        }
    }

    /// Reads at most `cap` bytes (and the guest's credit) from the host for one RW packet.
    /// `None` when nothing was read: the stream is drained (EAGAIN), or at EOF, which queues
    /// the matching SHUTDOWN instead.
    pub fn read_for_guest(&mut self, cap: usize, ctl: &mut CtlQueue) -> Option<Vec<u8>> {
        let n = cap
            .min(self.peer_credit() as usize)
            .min(MAX_PAYLOAD as usize);
        if n == 0 || !self.wants_rx() {
            return None;
        }
        let mut buf = vec![0u8; n];
        match (&self.stream).read(&mut buf) {
            Ok(0) => {
                self.readable = false;
                self.host_eof = true;
                if self.host_hup || self.host_write_shut {
                    let _ = self.close_both(ctl);
                } else {
                    ctl.push(self.key, Op::Shutdown, SHUTDOWN_SEND);
                }
                None
            }
            Ok(k) => {
                buf.truncate(k);
                self.tx_cnt = self.tx_cnt.wrapping_add(k as u32);
                self.request_credit_if_stalled(ctl);
                Some(buf)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.readable = false;
                None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
            Err(_) => {
                self.readable = false;
                self.host_eof = true;
                self.host_hup = true;
                let _ = self.close_both(ctl);
                None
            }
        }
    }
}
