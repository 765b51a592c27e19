//! The relay between a process's stdio and the host connection: one loop for `exec` and
//! the attached entrypoint. They differ only in how the end of the process is learnt
//! ([`ExitWatch`]): an `exec` child is the session's own (pidfd + waitpid), the entrypoint
//! is PID 1's child (PID 1 reaps it, for the boot-timer report and OOM detection as before,
//! and writes its wait status into a pipe the session polls).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use vcompare_spec::agent::{FrameBuffer, Kind, Message, HEADER_BYTES, STREAM_CHUNK};

use crate::inbound::{Inbound, ReadError};

use crate::stdio::HostEnds;
use crate::sys;

/// Output read but not yet sent above which the relay stops reading the process's output
/// (backpressure: the process blocks on a full pipe, the session's memory stays bounded).
const OUT_LIMIT: usize = 256 * 1024;
/// Stdin received but not yet written above which the relay stops reading the connection.
const IN_LIMIT: usize = 256 * 1024;
/// After the process ended: how long output may be quiet before the relay stops waiting for
/// EOF (a background grandchild may hold the pipe or terminal open forever).
const DRAIN_IDLE: Duration = Duration::from_millis(100);
/// After the process ended: the longest the relay keeps reading output at all.
const DRAIN_MAX: Duration = Duration::from_secs(2);
/// How long the last messages may take to reach a slow host.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the host to close after our last message ([`sys::linger`]).
pub const LINGER: Duration = Duration::from_secs(2);

/// How the relay learns that its process ended (its raw wait status).
#[derive(Debug)]
pub enum ExitWatch {
    /// `exec`: the session's own child, watched through a pidfd and reaped here.
    Child {
        /// The child.
        pid: libc::pid_t,
        /// Readable once it exited.
        pidfd: OwnedFd,
    },
    /// The attached entrypoint: PID 1 reaps it and writes the wait status (`i32`, little
    /// endian) into this pipe.
    Reported {
        /// The pipe's read end.
        pipe: OwnedFd,
    },
}

impl ExitWatch {
    /// Watches our own child `pid`.
    pub fn child(pid: libc::pid_t) -> std::io::Result<ExitWatch> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new (CLOEXEC) fd.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(ExitWatch::Child {
            pid,
            // SAFETY: a new fd nobody else owns.
            pidfd: unsafe { OwnedFd::from_raw_fd(fd as RawFd) },
        })
    }

    /// The fd to poll for readability.
    pub fn fd(&self) -> RawFd {
        match self {
            ExitWatch::Child { pidfd, .. } => pidfd.as_raw_fd(),
            ExitWatch::Reported { pipe } => pipe.as_raw_fd(),
        }
    }

    /// The wait status, once [`ExitWatch::fd`] was readable. A status pipe closed without a
    /// status (PID 1 gone: cannot happen while the VM runs) reads as killed by SIGKILL.
    fn status(&self) -> Option<i32> {
        match self {
            ExitWatch::Child { pid, .. } => {
                let mut st = 0;
                // SAFETY: reaping our own child with a valid status pointer.
                (unsafe { libc::waitpid(*pid, &mut st, libc::WNOHANG) } == *pid).then_some(st)
            }
            ExitWatch::Reported { pipe } => {
                let mut b = [0u8; 4];
                match sys::read_full(pipe.as_raw_fd(), &mut b) {
                    4 => Some(i32::from_le_bytes(b)),
                    _ => Some(libc::SIGKILL),
                }
            }
        }
    }
}

/// One process's relay: its stdio ends, the connection, how its end is learnt.
#[derive(Debug)]
pub struct Relay {
    /// The host connection (the handshake is done).
    pub conn: OwnedFd,
    /// The agent's ends of the process's stdio.
    pub host: HostEnds,
    /// How the relay learns the process ended.
    pub watch: ExitWatch,
    /// The process (session leader of its own session and process group).
    pub pid: libc::pid_t,
    /// Signals from the host go to the process group (with a tty) or the process.
    pub tty: bool,
    /// Host messages the handshake already read after the request (stdin sent right
    /// behind `Exec`): relayed first.
    pub frames: FrameBuffer,
}

/// An output stream of the process.
struct Source {
    /// Pipe read end or pty master.
    fd: RawFd,
    /// Its chunks go out as `Stderr` (else `Stdout`).
    stderr: bool,
    /// EOF (or EIO from a pty whose slave is closed) was read.
    eof: bool,
}

/// The host connection is gone (EOF, error, malformed frame).
struct HostGone;

/// The relay's moving state: buffers in both directions and where the process stands.
struct Flow {
    /// The process's output streams.
    sources: Vec<Source>,
    /// Where stdin goes (pipe write end or pty master); `None` once closed or gone.
    sink: Option<RawFd>,
    /// The pty master, with `-t`.
    master: Option<RawFd>,
    /// Encoded frames for the host; bytes before `sent` are sent.
    out: Vec<u8>,
    /// How much of `out` the connection took. `out` is cleared once all of it was sent
    /// rather than shifted after each partial send: see [`Flow::read_outputs`].
    sent: usize,
    /// Stdin from the host; bytes before `stdin_sent` are written. Cleared once all of it
    /// was written rather than shifted after each partial write (no user-space copy).
    stdin_buf: Vec<u8>,
    /// How much of `stdin_buf` the process's stdin took.
    stdin_sent: usize,
    /// The host's stdin ended: close the pipe once `stdin_buf` is written.
    close_stdin: bool,
    /// Bytes from the host, parsed (stdin lands in `stdin_buf` directly).
    inbound: Inbound,
    /// Control messages received, not yet acted on.
    pending: Vec<Message>,
    /// The wait status and when it was learnt, once the process ended.
    status: Option<(i32, Instant)>,
    /// When output last arrived (or the relay last waited on the host instead).
    quiet_since: Instant,
}

impl Flow {
    /// The state at the start: `Started` queued, the handshake's leftover bytes taken.
    fn new(r: &mut Relay) -> Result<Flow, HostGone> {
        let source = |fd: &OwnedFd, stderr| Source {
            fd: fd.as_raw_fd(),
            stderr,
            eof: false,
        };
        let (sources, sink, master) = match &r.host {
            HostEnds::Pty { master } => {
                let m = master.as_raw_fd();
                (vec![source(master, false)], Some(m), Some(m))
            }
            HostEnds::Pipes {
                stdin,
                stdout,
                stderr,
            } => (
                vec![source(stdout, false), source(stderr, true)],
                stdin.as_ref().map(|f| f.as_raw_fd()),
                None,
            ),
        };
        let mut f = Flow {
            sources,
            sink,
            master,
            out: {
                // Room for the whole backlog (see `throttled`), so it is never moved (a copy).
                let mut out = Vec::with_capacity(OUT_LIMIT + 2 * (HEADER_BYTES + STREAM_CHUNK));
                out.extend(Message::Started(r.pid as u32).encode());
                out
            },
            sent: 0,
            stdin_buf: Vec::with_capacity(IN_LIMIT + STREAM_CHUNK),
            stdin_sent: 0,
            close_stdin: false,
            inbound: Inbound::default(),
            pending: Vec::new(),
            status: None,
            quiet_since: Instant::now(),
        };
        // What the handshake read behind the request continues the stream.
        let (keep, mut pending) = (f.sink.is_some(), Vec::new());
        f.inbound
            .feed(&r.frames.take_bytes(), &mut f.stdin_buf, keep, |m| {
                pending.push(m)
            })
            .map_err(|e| crate::log(&format!("agent session: {e}")))
            .map_err(|()| HostGone)?;
        f.pending = pending;
        Ok(f)
    }

    /// Forgets buffered stdin (all written, or nobody will read it).
    fn clear_stdin(&mut self) {
        self.stdin_buf.clear();
        self.stdin_sent = 0;
    }

    /// Too much output waits for the host: stop reading the process's output.
    fn throttled(&self) -> bool {
        // The whole buffer, sent part included: it is only cleared once all was sent, so
        // this bound keeps it within its capacity (never moved).
        self.out.len() >= OUT_LIMIT
    }

    /// The next poll's timeout (`Some(None)` = no limit), or `None` when the relay is done:
    /// the process ended and its output reached EOF, stayed quiet for [`DRAIN_IDLE`] or
    /// was read for [`DRAIN_MAX`].
    fn poll_timeout(&mut self) -> Option<Option<Duration>> {
        let throttled = self.throttled();
        if throttled {
            self.quiet_since = Instant::now();
        }
        let Some((_, ended)) = self.status else {
            return Some(None);
        };
        let all_eof = self.sources.iter().all(|s| s.eof);
        let idle = !throttled && self.quiet_since.elapsed() >= DRAIN_IDLE;
        if all_eof || idle || ended.elapsed() >= DRAIN_MAX {
            return None;
        }
        let left = DRAIN_MAX.saturating_sub(ended.elapsed());
        let idle_left = DRAIN_IDLE.saturating_sub(self.quiet_since.elapsed());
        Some(Some(if throttled { left } else { left.min(idle_left) }))
    }

    /// The poll set: connection, each source, the stdin sink, the exit watch (in that
    /// order; an fd with nothing to wait for is -1).
    fn pollfds(&self, conn: RawFd, watch: RawFd) -> Vec<libc::pollfd> {
        let read_conn = self.status.is_none() && self.stdin_buf.len() < IN_LIMIT;
        let conn_events = if read_conn { libc::POLLIN } else { 0 }
            | if self.out.len() == self.sent {
                0
            } else {
                libc::POLLOUT
            };
        let mut pfds = vec![pollfd(conn, conn_events)];
        for s in &self.sources {
            let fd = if s.eof || self.throttled() { -1 } else { s.fd };
            pfds.push(pollfd(fd, libc::POLLIN));
        }
        let sink = self.sink.filter(|_| !self.stdin_buf.is_empty());
        pfds.push(pollfd(sink.unwrap_or(-1), libc::POLLOUT));
        let watch = if self.status.is_none() { watch } else { -1 };
        pfds.push(pollfd(watch, libc::POLLIN));
        pfds
    }

    /// Reads the sources that polled ready (`ready` in source order) into `out`.
    fn read_outputs(&mut self, ready: &[libc::pollfd]) {
        for (s, p) in self.sources.iter_mut().zip(ready) {
            if p.revents == 0 {
                continue;
            }
            // The output is read straight into its frame in `out` (the header patched in
            // after the read), so the payload is never copied in user space.
            let at = self.out.len();
            self.out.resize(at + HEADER_BYTES + STREAM_CHUNK, 0);
            match sys::read(s.fd, &mut self.out[at + HEADER_BYTES..]) {
                Ok(0) => {
                    self.out.truncate(at);
                    s.eof = true
                }
                Ok(n) => {
                    let kind = if s.stderr { Kind::Stderr } else { Kind::Stdout };
                    self.out[at..at + 4].copy_from_slice(&(n as u32).to_le_bytes());
                    self.out[at + 4] = kind as u8;
                    self.out.truncate(at + HEADER_BYTES + n);
                    self.quiet_since = Instant::now();
                }
                Err(e) => {
                    self.out.truncate(at);
                    if e != libc::EAGAIN && e != libc::EINTR {
                        s.eof = true;
                    }
                }
            }
            if s.eof && self.master.is_some() {
                // The terminal is gone: nothing more can be typed into it.
                self.sink = None;
                self.stdin_buf.clear();
                self.stdin_sent = 0;
            }
        }
    }

    /// Sends queued frames and receives host bytes as the connection's `revents` allow.
    fn conn_io(&mut self, conn: RawFd, revents: i16) -> Result<(), HostGone> {
        if revents & libc::POLLOUT != 0 {
            match sys::write(conn, &self.out[self.sent..], true) {
                Ok(n) => {
                    self.sent += n;
                    if self.sent == self.out.len() {
                        self.out.clear();
                        self.sent = 0;
                    }
                }
                Err(libc::EAGAIN) | Err(libc::EINTR) => {}
                Err(_) => return Err(HostGone),
            }
        }
        if revents & libc::POLLIN != 0 {
            let keep = self.sink.is_some();
            match self.inbound.read(conn, &mut self.stdin_buf, keep) {
                Ok(Some(m)) => self.pending.push(m),
                Ok(None) | Err(ReadError::Again) => {}
                Err(ReadError::Protocol(e)) => {
                    crate::log(&format!("agent session: {e}"));
                    return Err(HostGone);
                }
                Err(ReadError::Io(errno)) => {
                    crate::log(&format!("agent session: connection error (errno {errno})"));
                    return Err(HostGone);
                }
                Err(ReadError::Eof) => return Err(HostGone),
            }
        } else if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            // Both directions are shut (or the connection failed): the host is gone.
            return Err(HostGone);
        }
        Ok(())
    }
}

impl Relay {
    /// Every fd the relay holds (to keep open in a forked session process).
    pub fn fds(&self) -> Vec<RawFd> {
        let mut v = self.host.fds();
        v.extend([self.conn.as_raw_fd(), self.watch.fd()]);
        v
    }

    /// Sends `Started`, then relays until the process ended and its output is drained,
    /// then sends `Exited` (the session's exit code: 0, or 1 if the host went away).
    ///
    /// If the host connection drops (EOF, error, or a malformed frame) while the process
    /// runs, the process group is killed with SIGKILL: unlike `docker exec`, whose process
    /// outlives a vanished client, a VM has no other way to reach a process nobody waits
    /// for, so it would be left stuck (and an attached entrypoint would hold the VM forever).
    pub fn run(mut self) -> i32 {
        let conn = self.conn.as_raw_fd();
        sys::set_nonblocking(conn);
        let Ok(mut f) = Flow::new(&mut self) else {
            return self.host_gone(true);
        };
        if self.pump(&mut f).is_err() {
            return self.host_gone(f.status.is_none());
        }
        let st = f.status.map_or(0, |(st, _)| st);
        f.out
            .extend(Message::Exited(crate::spawn::exit_status(st)).encode());
        if sys::send_all(conn, &f.out[f.sent..], Instant::now() + FLUSH_TIMEOUT) {
            sys::linger(conn, LINGER);
        }
        0
    }

    /// The relay loop: until the process ended and its output is drained (`Ok`), or the
    /// host went away (`Err`).
    fn pump(&mut self, f: &mut Flow) -> Result<(), HostGone> {
        let conn = self.conn.as_raw_fd();
        loop {
            // Messages first: the handshake may have read some along with the request.
            self.take_messages(f)?;
            let Some(timeout) = f.poll_timeout() else {
                return Ok(());
            };
            let mut pfds = f.pollfds(conn, self.watch.fd());
            // SAFETY: a valid pollfd array of its length.
            unsafe {
                libc::poll(
                    pfds.as_mut_ptr(),
                    pfds.len() as libc::nfds_t,
                    sys::timeout_ms(timeout),
                )
            };
            // Output first, so what the process wrote before it ended precedes `Exited`.
            f.read_outputs(&pfds[1..]);
            f.conn_io(conn, pfds[0].revents)?;
            if pfds[pfds.len() - 2].revents != 0 {
                self.write_stdin(f);
            }
            if f.status.is_none() && pfds[pfds.len() - 1].revents != 0 {
                f.status = self.watch.status().map(|st| (st, Instant::now()));
                f.quiet_since = Instant::now();
            }
        }
    }

    /// Acts on every whole message received; a malformed one counts as the host gone.
    fn take_messages(&mut self, f: &mut Flow) -> Result<(), HostGone> {
        for m in std::mem::take(&mut f.pending) {
            self.on_message(m, f);
        }
        if f.close_stdin && f.stdin_buf.is_empty() && f.sink.is_some() {
            self.close_stdin();
            f.sink = None;
        }
        Ok(())
    }

    /// Writes buffered stdin to the process (its stdin became writable).
    fn write_stdin(&mut self, f: &mut Flow) {
        let Some(fd) = f.sink else { return };
        match sys::write(fd, &f.stdin_buf[f.stdin_sent..], false) {
            Ok(n) => {
                f.stdin_sent += n;
                if f.stdin_sent == f.stdin_buf.len() {
                    f.clear_stdin();
                }
            }
            Err(libc::EAGAIN) | Err(libc::EINTR) => {}
            Err(_) => {
                // The process closed its stdin: what it did not read is dropped.
                f.clear_stdin();
                f.sink = None;
                self.close_stdin();
            }
        }
    }

    /// Acts on one host message during the relay. `Hello` and requests are out of place
    /// here and ignored.
    fn on_message(&self, m: Message, f: &mut Flow) {
        match m {
            Message::StdinClosed => match f.master {
                Some(m) if f.sink.is_some() => f.stdin_buf.push(crate::pty::eof_char(m)),
                _ => f.close_stdin = true,
            },
            Message::Resize(w) => {
                if let Some(m) = f.master {
                    crate::pty::set_window(m, w);
                }
            }
            Message::Signal(sig) if (1..=64).contains(&sig) => {
                let target = if self.tty { -self.pid } else { self.pid };
                // SAFETY: kill has no memory effects; the process is still unreaped (its
                // status has not been seen), so the pid is not reused.
                unsafe { libc::kill(target, sig) };
            }
            _ => {}
        }
    }

    /// Closes the stdin pipe's write end (the process reads EOF); no-op with a tty.
    fn close_stdin(&mut self) {
        if let HostEnds::Pipes { stdin, .. } = &mut self.host {
            *stdin = None;
        }
    }

    /// The host went away: SIGKILL the process group while it runs (see [`Relay::run`]).
    fn host_gone(self, running: bool) -> i32 {
        if running {
            // SAFETY: kill has no memory effects; the process is unreaped, so the pid (and
            // its group id) is still its own.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
            if let ExitWatch::Child { .. } = self.watch {
                sys::poll_one(self.watch.fd(), libc::POLLIN, Some(Duration::from_secs(1)));
                self.watch.status();
            }
        }
        1
    }
}

/// A pollfd for `fd` (-1 = skipped by poll).
fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}
