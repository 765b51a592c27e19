//! The host side of the device: the listener at `uds_path`, the host streams still sending
//! their `CONNECT` line, the connections, and the control packets waiting for the guest.
//!
//! Everything the host side must react to is registered with one epoll fd, which is the
//! device's `host_event_fd`: the listener and the streams still in their handshake
//! (level-triggered, each event handled until EAGAIN), connection streams (edge-triggered;
//! the connection remembers "readable" until a read returns EAGAIN, so a stream whose guest
//! has no credit costs no wake-ups), an eventfd the TX path writes when it produced packets
//! for the guest (TX processing only has the TX queue at hand), and a timerfd armed for the
//! earliest handshake or shutdown deadline.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::ops::Bound;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::timerfd::TimerFd;

use super::connection::{ConnKey, Connection, CtlQueue, Fate};
use super::packet::{GuestPacket, Header, Op, HOST_CID, TYPE_STREAM};
use super::{uds, VsockError, VsockMetrics};

const TOKEN_LISTENER: u64 = 0;
const TOKEN_KICK: u64 = 1;
const TOKEN_TIMER: u64 = 2;
const FIRST_STREAM_TOKEN: u64 = 16;
/// Host streams allowed to be in their handshake at once.
const MAX_PENDING: usize = 64;
/// Connections allowed at once (each holds up to `CONN_BUF` of guest data).
const MAX_CONNS: usize = 256;
/// How long a host stream has to send its `CONNECT <port>\n` line.
pub const CONNECT_LINE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest `CONNECT` line accepted.
const MAX_LINE: usize = 32;
/// First host-side port of host-initiated connections (as Firecracker): far above the
/// ports a guest connects to, so the two never collide in practice.
const FIRST_LOCAL_PORT: u32 = 1 << 30;

/// A host stream still sending its `CONNECT` line.
struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
    deadline: Instant,
}

/// The host side (see the module comment).
pub struct Muxer {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    kick: EventFd,
    timer: TimerFd,
    handshakes: HashMap<u64, Handshake>,
    conns: BTreeMap<ConnKey, Connection>,
    tokens: HashMap<u64, ConnKey>,
    ctl: CtlQueue,
    next_token: u64,
    next_local_port: u32,
    /// The connection served last (RX round-robin, so one busy stream cannot starve others).
    last_served: Option<ConnKey>,
    metrics: Arc<VsockMetrics>,
}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> VsockError {
    move |source| VsockError::Setup { what, source }
}

impl Muxer {
    /// Listens at `uds_path` for a guest with context id `guest_cid`.
    pub fn new(
        guest_cid: u64,
        uds_path: PathBuf,
        metrics: Arc<VsockMetrics>,
    ) -> Result<Muxer, VsockError> {
        let listener = uds::bind_listener(&uds_path).map_err(|source| VsockError::Bind {
            path: uds_path.clone(),
            source,
        })?;
        let epoll = Epoll::new().map_err(setup("epoll_create1"))?;
        let kick =
            EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(setup("eventfd"))?;
        let timer = TimerFd::new()
            .map_err(|e| setup("timerfd_create")(io::Error::from_raw_os_error(e.errno())))?;
        // SAFETY: fcntl on the timerfd we own; no pointers.
        if unsafe { libc::fcntl(timer.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } < 0 {
            return Err(setup("fcntl(timerfd)")(io::Error::last_os_error()));
        }
        let m = Muxer {
            guest_cid,
            uds_path,
            listener,
            epoll,
            kick,
            timer,
            handshakes: HashMap::new(),
            conns: BTreeMap::new(),
            tokens: HashMap::new(),
            ctl: CtlQueue::new(metrics.clone()),
            next_token: FIRST_STREAM_TOKEN,
            next_local_port: FIRST_LOCAL_PORT,
            last_served: None,
            metrics,
        };
        for (fd, token) in [
            (m.listener.as_raw_fd(), TOKEN_LISTENER),
            (m.kick.as_raw_fd(), TOKEN_KICK),
            (m.timer.as_raw_fd(), TOKEN_TIMER),
        ] {
            m.watch(ControlOperation::Add, fd, EventSet::IN, token)
                .map_err(setup("epoll_ctl"))?;
        }
        Ok(m)
    }

    /// The epoll fd the main loop polls.
    pub fn epoll_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn watch(&self, op: ControlOperation, fd: RawFd, ev: EventSet, token: u64) -> io::Result<()> {
        self.epoll.ctl(op, fd, EpollEvent::new(ev, token))
    }

    fn stream_events() -> EventSet {
        EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED
    }

    fn new_token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Drops every connection and handshake (device reset): their host streams close.
    pub fn reset(&mut self) {
        self.conns.clear();
        self.tokens.clear();
        self.handshakes.clear();
        self.ctl.clear();
        self.last_served = None;
        let _ = self.kick.read();
        let _ = self.timer.clear();
    }

    /// Number of live connections (handshakes not included).
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn remove(&mut self, key: ConnKey) {
        if let Some(c) = self.conns.remove(&key) {
            self.tokens.remove(&c.token);
        }
    }

    fn apply(&mut self, key: ConnKey, fate: Fate) {
        if fate == Fate::Close {
            self.remove(key);
        }
    }

    // ---- guest → host ----

    /// Acts on a valid packet from the guest.
    pub fn on_guest_packet(&mut self, pkt: &GuestPacket) {
        let key = ConnKey {
            local_port: pkt.hdr.dst_port,
            peer_port: pkt.hdr.src_port,
        };
        if let Some(c) = self.conns.get_mut(&key) {
            let fate = c.on_guest(pkt, &mut self.ctl);
            self.apply(key, fate);
            return;
        }
        match pkt.op {
            Op::Request => self.connect_guest(key, &pkt.hdr),
            Op::Rst => {} // nothing to reset
            _ => self.ctl.push(key, Op::Rst, 0),
        }
    }

    /// Answers a malformed but correctly addressed packet: RST, and its connection is gone.
    pub fn refuse(&mut self, hdr: &Header) {
        let key = ConnKey {
            local_port: hdr.dst_port,
            peer_port: hdr.src_port,
        };
        self.remove(key);
        if hdr.op != Op::Rst as u16 {
            self.ctl.push(key, Op::Rst, 0);
        }
    }

    /// The guest connects to host port `key.local_port`: `<uds_path>_<port>`.
    fn connect_guest(&mut self, key: ConnKey, hdr: &Header) {
        let path = uds::port_path(&self.uds_path, key.local_port);
        let stream = if self.conns.len() >= MAX_CONNS {
            Err(io::Error::from_raw_os_error(libc::EMFILE))
        } else {
            uds::connect_nonblocking(&path)
        };
        let token = self.new_token();
        let stream = stream.and_then(|s| {
            self.watch(
                ControlOperation::Add,
                s.as_raw_fd(),
                Self::stream_events(),
                token,
            )?;
            Ok(s)
        });
        match stream {
            Ok(s) => {
                VsockMetrics::add(&self.metrics.guest_connects);
                self.conns
                    .insert(key, Connection::guest_initiated(key, token, s, hdr));
                self.tokens.insert(token, key);
                self.ctl.push(key, Op::Response, 0);
            }
            Err(e) => {
                VsockMetrics::add(&self.metrics.guest_connects_refused);
                tracing::debug!("vsock: guest connect to {} failed: {e}", path.display());
                self.ctl.push(key, Op::Rst, 0);
            }
        }
    }

    /// After the guest's TX queue was served: arm the timer, ask for credit where stalled,
    /// and wake the main loop if packets wait for the guest (only it has the RX queue).
    pub fn after_guest_packets(&mut self) {
        self.request_credit_where_stalled();
        self.rearm_timer();
        if self.has_rx_work() {
            let _ = self.kick.write(1);
        }
    }

    // ---- host events ----

    /// Consumes all readiness of the epoll fd and acts on it.
    pub fn process_events(&mut self) {
        let mut evs = [EpollEvent::new(EventSet::empty(), 0); 32];
        loop {
            let n = self.epoll.wait(0, &mut evs).unwrap_or(0);
            for ev in &evs[..n] {
                match ev.data() {
                    TOKEN_LISTENER => self.accept_all(),
                    TOKEN_KICK => {
                        let _ = self.kick.read();
                    }
                    TOKEN_TIMER => {
                        let _ = self.timer.wait();
                    }
                    t if self.handshakes.contains_key(&t) => self.read_connect_line(t),
                    t => {
                        if let Some(&key) = self.tokens.get(&t) {
                            let c = self
                                .conns
                                .get_mut(&key)
                                .expect("token of a live connection");
                            let fate = c.on_host_event(ev.events(), &mut self.ctl);
                            self.apply(key, fate);
                        }
                    }
                }
            }
            if n < evs.len() {
                break;
            }
        }
        self.expire(Instant::now());
        self.request_credit_where_stalled();
        self.rearm_timer();
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    if self.handshakes.len() >= MAX_PENDING || self.conns.len() >= MAX_CONNS {
                        VsockMetrics::add(&self.metrics.host_connects_refused);
                        continue; // dropped: the client sees EOF
                    }
                    let token = self.new_token();
                    let ok = s.set_nonblocking(true).is_ok()
                        && self
                            .watch(
                                ControlOperation::Add,
                                s.as_raw_fd(),
                                EventSet::IN | EventSet::READ_HANG_UP,
                                token,
                            )
                            .is_ok();
                    if ok {
                        let deadline = Instant::now() + CONNECT_LINE_TIMEOUT;
                        self.handshakes.insert(
                            token,
                            Handshake {
                                stream: s,
                                line: Vec::new(),
                                deadline,
                            },
                        );
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if e.kind() != io::ErrorKind::WouldBlock {
                        tracing::warn!("vsock: accept on {}: {e}", self.uds_path.display());
                    }
                    return;
                }
            }
        }
    }

    /// Reads the handshake byte by byte (what follows the line is the connection's data).
    fn read_connect_line(&mut self, token: u64) {
        let Some(h) = self.handshakes.get_mut(&token) else {
            return;
        };
        let port = loop {
            let mut b = [0u8; 1];
            match (&h.stream).read(&mut b) {
                Ok(1) if b[0] == b'\n' => break parse_connect(&h.line),
                Ok(1) if h.line.len() < MAX_LINE => h.line.push(b[0]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break None, // EOF, error, or an endless line
            }
        };
        let h = self.handshakes.remove(&token).expect("present above");
        let Some(peer_port) = port else {
            VsockMetrics::add(&self.metrics.host_connects_bad);
            return; // dropping the stream closes it
        };
        if self.conns.len() >= MAX_CONNS
            || self
                .watch(
                    ControlOperation::Modify,
                    h.stream.as_raw_fd(),
                    Self::stream_events(),
                    token,
                )
                .is_err()
        {
            VsockMetrics::add(&self.metrics.host_connects_refused);
            return;
        }
        let key = ConnKey {
            local_port: self.alloc_local_port(),
            peer_port,
        };
        VsockMetrics::add(&self.metrics.host_connects);
        self.conns
            .insert(key, Connection::host_initiated(key, token, h.stream));
        self.tokens.insert(token, key);
        self.ctl.push(key, Op::Request, 0);
    }

    fn alloc_local_port(&mut self) -> u32 {
        loop {
            let p = self.next_local_port;
            self.next_local_port = p.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
            if !self.conns.keys().any(|k| k.local_port == p) {
                return p;
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let before = self.handshakes.len();
        self.handshakes.retain(|_, h| h.deadline > now);
        for _ in self.handshakes.len()..before {
            VsockMetrics::add(&self.metrics.host_connects_bad);
        }
        let expired: Vec<ConnKey> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline().is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if let Some(c) = self.conns.get_mut(&key) {
                let fate = c.on_timeout(now, &mut self.ctl);
                self.apply(key, fate);
            }
        }
    }

    fn rearm_timer(&mut self) {
        let next = self
            .handshakes
            .values()
            .map(|h| h.deadline)
            .chain(self.conns.values().filter_map(Connection::deadline))
            .min();
        let _ = match next {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                self.timer.reset(left.max(Duration::from_millis(1)), None)
            }
            None => self.timer.clear(),
        };
    }

    fn request_credit_where_stalled(&mut self) {
        for c in self.conns.values_mut() {
            c.request_credit_if_stalled(&mut self.ctl);
        }
    }

    // ---- host → guest ----

    /// Whether a packet for the guest is ready (given an RX buffer).
    pub fn has_rx_work(&self) -> bool {
        !self.ctl.is_empty() || self.conns.values().any(Connection::wants_rx)
    }

    fn header(&self, key: ConnKey, op: Op, flags: u32) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: key.local_port,
            dst_port: key.peer_port,
            len: 0,
            type_: TYPE_STREAM,
            op: op as u16,
            flags,
            buf_alloc: 0,
            fwd_cnt: 0,
        }
    }

    /// The next packet for the guest, its payload at most `cap` bytes: control packets
    /// first, then data from the connections in turn.
    pub fn next_rx_packet(&mut self, cap: usize) -> Option<(Header, Vec<u8>)> {
        loop {
            if let Some(c) = self.ctl.pop() {
                let mut h = self.header(c.key, c.op, c.flags);
                if let Some(conn) = self.conns.get_mut(&c.key) {
                    conn.stamp(&mut h);
                }
                return Some((h, Vec::new()));
            }
            if cap == 0 {
                return None;
            }
            let key = self.next_ready_conn()?;
            self.last_served = Some(key);
            let mut h = self.header(key, Op::Rw, 0);
            let conn = self.conns.get_mut(&key).expect("ready connection");
            if let Some(data) = conn.read_for_guest(cap, &mut self.ctl) {
                h.len = data.len() as u32;
                conn.stamp(&mut h);
                return Some((h, data));
            }
            // Nothing read: the stream drained or ended (a SHUTDOWN may now be queued).
        }
    }

    fn next_ready_conn(&self) -> Option<ConnKey> {
        let after = match self.last_served {
            Some(k) => self.conns.range((Bound::Excluded(k), Bound::Unbounded)),
            None => self.conns.range(..),
        };
        after
            .chain(self.conns.iter())
            .find(|(_, c)| c.wants_rx())
            .map(|(k, _)| *k)
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.uds_path) {
            tracing::debug!("vsock: removing {}: {e}", self.uds_path.display());
        }
    }
}

/// `CONNECT <port>` → the port.
fn parse_connect(line: &[u8]) -> Option<u32> {
    let line = std::str::from_utf8(line).ok()?;
    let port = line.strip_prefix("CONNECT ")?.trim_end_matches('\r');
    port.parse().ok()
}
