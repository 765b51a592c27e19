//! PID 1's life after the boot steps: one poll loop over the console (the VMM's signal
//! requests), a signalfd for SIGCHLD (reaping every child; the entrypoint's status is kept)
//! and the agent (listener and handshakes), until the entrypoint ended.
//!
//! Design of the attached entrypoint (`run -i/-t`): PID 1 itself starts it (same
//! [`spawn`](crate::spawn::spawn) as without attach), so it stays PID 1's direct child —
//! the console's signal requests reach it by pid, its wait status (and with it the
//! boot-timer report and the OOM rule) is exactly what it was before the agent existed.
//! Only its relay runs in a session process, which holds the agent's stdio ends; PID 1
//! writes the entrypoint's wait status into a pipe to it, then waits (bounded) for that
//! session to send `Exited` and end before the VM powers off.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use vcompare_spec::agent::{FrameBuffer, Message, StdioMode};
use vcompare_spec::guest::{GuestSpec, Phase, SIGNAL_BYTE};

use crate::agent::{self, Action, Entrypoint, Handshake, Step};
use crate::relay::{ExitWatch, Relay};
use crate::session::{self, failure};
use crate::spawn::{spawn, ChildStdio};
use crate::sys;

/// How long PID 1 waits, after the attached entrypoint ended, for its session to deliver
/// the last output and `Exited` (the session's own drain and linger limits are shorter; this
/// only bounds a host that stopped reading).
const ATTACH_FLUSH: Duration = Duration::from_secs(10);
/// Connections accepted per wake-up, so a flood cannot starve the console.
const ACCEPT_BURST: usize = 16;

/// The attached entrypoint's session process.
struct AttachSession {
    /// The session process (0 once reaped).
    pid: libc::pid_t,
    /// Where the entrypoint's wait status goes (`None` when the session only reports a
    /// failed start).
    status_tx: Option<OwnedFd>,
}

/// PID 1's state while the entrypoint runs or is awaited.
pub struct Supervisor<'a> {
    /// The boot-timer port (the attached entrypoint's EntrypointExec is reported here).
    port: u16,
    /// The run's spec: the entrypoint to start.
    spec: &'a GuestSpec,
    /// signalfd for SIGCHLD (blocked in PID 1).
    sfd: RawFd,
    /// The agent's listener; `None` without vsock.
    listener: Option<OwnedFd>,
    /// Connections whose request has not fully arrived.
    pending: Vec<Handshake>,
    /// Where the entrypoint stands (decides which requests are allowed).
    entrypoint: Entrypoint,
    /// The attached entrypoint's session, waited for before the VM powers off.
    attach: Option<AttachSession>,
    /// The console is still readable (a hang-up stops polling it).
    console: bool,
}

impl<'a> Supervisor<'a> {
    /// Takes over after the boot steps: SIGCHLD arrives on `sfd`, requests on `listener`.
    pub fn new(port: u16, spec: &'a GuestSpec, sfd: RawFd, listener: Option<OwnedFd>) -> Self {
        Supervisor {
            port,
            spec,
            sfd,
            listener,
            pending: Vec::new(),
            entrypoint: Entrypoint::AwaitingAttach,
            attach: None,
            console: true,
        }
    }

    /// Starts the entrypoint with stdout/stderr on the console (no attach), as always: a
    /// start that fails inside the child is logged and ends with the child's 126/127.
    pub fn start_on_console(&mut self) {
        crate::report(self.port, Phase::EntrypointExec, 0);
        self.entrypoint =
            Entrypoint::Running(match spawn(&self.spec.process, ChildStdio::Console) {
                Ok(pid) => pid,
                Err(e) => match e.pid {
                    Some(pid) => {
                        crate::log(&e.failure().message);
                        pid
                    }
                    None => crate::fail(self.port, &e.failure().message),
                },
            });
    }

    /// Runs until the entrypoint ended; its wait status. A stop request (console) before
    /// an attached entrypoint started ends the run as if the entrypoint had been killed by
    /// that signal, so `stop` works on a VM nobody attached to.
    pub fn run(mut self) -> i32 {
        let status = loop {
            if let Some(st) = self.wait_once() {
                break st;
            }
        };
        self.entrypoint = Entrypoint::Ended;
        self.finish_attach(status);
        status
    }

    /// One poll round; the entrypoint's wait status once it ended.
    fn wait_once(&mut self) -> Option<i32> {
        let mut pfds = vec![
            pollfd(if self.console { 0 } else { -1 }),
            pollfd(self.sfd),
            pollfd(sys::raw(self.listener.as_ref())),
        ];
        pfds.extend(self.pending.iter().map(|h| pollfd(h.conn.as_raw_fd())));
        // SAFETY: a valid pollfd array of its length.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, -1) };
        if pfds[0].revents & libc::POLLIN != 0 {
            if let Some(st) = self.console_input() {
                return Some(st);
            }
        } else if pfds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            self.console = false;
        }
        // Handshakes before accepting: the indices of `pfds` match `pending` as it was.
        let ready: Vec<bool> = pfds[3..].iter().map(|p| p.revents != 0).collect();
        let mut i = 0;
        let mut idx = 0;
        while i < self.pending.len() {
            let step = if ready[idx] {
                self.pending[i].read()
            } else {
                Step::More
            };
            idx += 1;
            match step {
                Step::More => i += 1,
                Step::Closed => drop(self.pending.remove(i)),
                Step::Request(m) => {
                    let h = self.pending.remove(i);
                    self.dispatch(h, m);
                }
            }
        }
        if pfds[2].revents != 0 {
            if let Some(l) = self.listener.as_ref().map(|l| l.as_raw_fd()) {
                self.pending
                    .extend((0..ACCEPT_BURST).map_while(|_| agent::accept(l)));
            }
        }
        self.reap()
    }

    /// The console's bytes: SIGNAL_BYTE + signal number → that signal to the entrypoint.
    fn console_input(&mut self) -> Option<i32> {
        let mut b = [0u8; 64];
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(0, b.as_mut_ptr().cast(), b.len()) };
        let got = &b[..n.max(0) as usize];
        for (i, _) in got.iter().enumerate().filter(|(_, &c)| c == SIGNAL_BYTE) {
            let sig = got.get(i + 1).map_or(libc::SIGTERM, |&s| i32::from(s));
            let sig = if (1..=64).contains(&sig) {
                sig
            } else {
                libc::SIGTERM
            };
            match self.entrypoint {
                // SAFETY: signalling our own child.
                Entrypoint::Running(pid) => unsafe {
                    libc::kill(pid, sig);
                },
                Entrypoint::AwaitingAttach => return Some(sig & 0x7f),
                Entrypoint::Ended => {}
            }
        }
        None
    }

    /// Reaps every child that ended (the entrypoint, sessions, orphans); the entrypoint's
    /// status if it was among them.
    fn reap(&mut self) -> Option<i32> {
        let mut info = [0u8; 128];
        // SAFETY: draining the signalfd into a local buffer.
        while unsafe { libc::read(self.sfd, info.as_mut_ptr().cast(), info.len()) } > 0 {}
        let mut done = None;
        loop {
            let mut st = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if Entrypoint::Running(pid) == self.entrypoint {
                done = Some(st);
            }
            if let Some(a) = self.attach.as_mut().filter(|a| a.pid == pid) {
                a.pid = 0;
            }
        }
        done
    }

    /// Carries out a request whose handshake completed.
    fn dispatch(&mut self, handshake: Handshake, request: Message) {
        let Handshake { conn, frames, .. } = handshake;
        match agent::decide(request, self.entrypoint) {
            Action::Exec(req) => {
                self.fork("exec", vec![conn.as_raw_fd()], move || {
                    session::exec(conn, frames, req)
                });
            }
            Action::Reply(m) => {
                self.reply(conn, m);
            }
            Action::Signal(pid, sig) => {
                // SAFETY: signalling our own child (still unreaped: it is `Running`).
                let m = if unsafe { libc::kill(pid, sig) } == 0 {
                    Message::Done
                } else {
                    failure(format!(
                        "signal {sig} to the entrypoint failed: {}",
                        std::io::Error::last_os_error()
                    ))
                };
                self.reply(conn, m);
            }
            Action::Attach(mode) => self.attach(conn, frames, mode),
        }
    }

    /// Starts the entrypoint on `conn` with `mode` and forks its relay session.
    fn attach(&mut self, conn: OwnedFd, frames: FrameBuffer, mode: StdioMode) {
        let spec = self.spec;
        let p = &spec.process;
        let ends = crate::stdio::open(&mode, (p.uid, p.gid)).map_err(|e| e.to_string());
        let pipe = sys::pipe().map_err(|e| std::io::Error::from_raw_os_error(e).to_string());
        let ((host, child), (status_rx, status_tx)) = match ends.and_then(|e| Ok((e, pipe?))) {
            Ok(v) => v,
            Err(e) => {
                let m = format!("setting up the entrypoint's stdio in the guest failed: {e}; the guest may be out of memory");
                self.reply(conn, failure(m));
                return;
            }
        };
        crate::report(self.port, Phase::EntrypointExec, 0);
        let pid = match spawn(p, child.stdio) {
            Ok(pid) => pid,
            Err(e) => {
                crate::log(&e.failure().message);
                if let Some(pid) = e.pid {
                    // It exits with 126/127 by itself: that is the run's status.
                    self.entrypoint = Entrypoint::Running(pid);
                    let session = self.reply(conn, Message::Failed(e.failure()));
                    self.attach = session.map(|pid| AttachSession {
                        pid,
                        status_tx: None,
                    });
                } else {
                    self.reply(conn, Message::Failed(e.failure()));
                }
                return;
            }
        };
        drop(child);
        self.entrypoint = Entrypoint::Running(pid);
        let relay = Relay {
            conn,
            host,
            watch: ExitWatch::Reported { pipe: status_rx },
            pid,
            tty: mode.tty,
            frames,
        };
        match self.fork("attach", relay.fds(), move || relay.run()) {
            Some(session) => {
                self.attach = Some(AttachSession {
                    pid: session,
                    status_tx: Some(status_tx),
                })
            }
            // SAFETY: signalling our own child: without a relay nobody could reach it.
            None => unsafe {
                libc::kill(pid, libc::SIGKILL);
            },
        }
    }

    /// Forks a session process that sends `m` and ends the conversation; its pid.
    fn reply(&self, conn: OwnedFd, m: Message) -> Option<libc::pid_t> {
        self.fork("reply", vec![conn.as_raw_fd()], move || {
            session::reply(&conn, &m)
        })
    }

    /// Forks a session process keeping `keep`; logs a failure (the host then sees its
    /// connection close without an answer).
    fn fork(&self, what: &str, keep: Vec<RawFd>, f: impl FnOnce() -> i32) -> Option<libc::pid_t> {
        match sys::fork_process(&keep, f) {
            Ok(pid) => Some(pid),
            Err(e) => {
                crate::log(&format!(
                    "agent: fork for {what} failed: {}",
                    std::io::Error::from_raw_os_error(e)
                ));
                None
            }
        }
    }

    /// After the entrypoint ended: hands its status to its relay session and waits (at
    /// most [`ATTACH_FLUSH`]) until that session delivered `Exited` and ended.
    fn finish_attach(&mut self, status: i32) {
        let Some(a) = self.attach.as_mut() else {
            return;
        };
        if let Some(tx) = a.status_tx.take() {
            let b = status.to_le_bytes();
            // SAFETY: writing 4 bytes into an empty pipe we own (never blocks).
            unsafe { libc::write(tx.as_raw_fd(), b.as_ptr().cast(), b.len()) };
        }
        let deadline = Instant::now() + ATTACH_FLUSH;
        while self.attach.as_ref().is_some_and(|a| a.pid != 0) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                crate::log(
                    "the attached session did not finish in time; its last output may be lost",
                );
                return;
            }
            sys::poll_one(self.sfd, libc::POLLIN, Some(left));
            self.reap();
        }
    }
}

/// A pollfd waiting for input on `fd` (-1 = skipped).
fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::{UnixListener, UnixStream};
    use vcompare_spec::agent::{ExitStatus, Hello};
    use vcompare_spec::ProcessSpec;

    /// Runs a whole [`Supervisor`] as if it were PID 1 — in a forked process, so its
    /// `waitpid(-1)` and signalfd see only its own children — with a Unix listener standing in
    /// for the vsock one and a pipe as the console. The process exits with the entrypoint's
    /// exit code, or 100 + signal. Returns (pid, socket path, console write end).
    fn boot(args: &[&str], attach: bool) -> (libc::pid_t, std::path::PathBuf, std::fs::File) {
        let path =
            std::env::temp_dir().join(format!("vcinit-{}-{}", std::process::id(), rand_suffix()));
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (console_r, console_w) = sys::pipe().unwrap();
        let spec = GuestSpec {
            process: crate::session::tests::process(args),
            attach,
            ..Default::default()
        };
        // SAFETY: the child runs the supervisor and _exits; glibc makes malloc usable after
        // fork even though the test harness has threads.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: console on fd 0, markers to /dev/null, SIGCHLD into a signalfd.
            unsafe {
                libc::dup2(console_r.as_raw_fd(), 0);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                libc::dup2(null, 1);
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGCHLD);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                let sfd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
                let mut s = Supervisor::new(0, &spec, sfd, Some(OwnedFd::from(listener)));
                if !attach {
                    s.start_on_console();
                }
                let st = crate::spawn::exit_status(s.run());
                libc::_exit(if st.signal != 0 {
                    100 + st.signal
                } else {
                    st.code
                });
            }
        }
        drop(listener);
        (pid, path, std::fs::File::from(console_w))
    }

    fn rand_suffix() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        N.fetch_add(1, Ordering::Relaxed)
    }

    /// Connects, says Hello and sends `request`.
    fn request(path: &std::path::Path, request: Message) -> UnixStream {
        request_and(path, request, &[])
    }

    /// Connects, says Hello and sends `request` and `more` in one write (so the handshake
    /// reads them together).
    fn request_and(path: &std::path::Path, request: Message, more: &[Message]) -> UnixStream {
        let mut s = UnixStream::connect(path).unwrap();
        let mut bytes = Message::Hello(Hello::new("vcompare")).encode();
        bytes.extend(request.encode());
        bytes.extend(more.iter().flat_map(|m| m.encode()));
        s.write_all(&bytes).unwrap();
        match Message::read_from(&mut s).unwrap() {
            Some(Message::Hello(h)) => assert_eq!(h.peer, "vcompare-init"),
            other => panic!("{other:?}"),
        }
        s
    }

    fn next(s: &mut UnixStream) -> Message {
        Message::read_from(s).unwrap().expect("a message")
    }

    /// The supervisor process's exit code; removes its socket.
    fn wait(pid: libc::pid_t, path: &std::path::Path) -> i32 {
        let _ = std::fs::remove_file(path);
        let mut st = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        libc::WEXITSTATUS(st)
    }

    #[test]
    fn attach_starts_the_entrypoint_on_the_connection() {
        let (pid, path, _console) = boot(&["sh", "-c", "read x; echo got $x; exit 5"], true);
        // Signals before the attach are refused: there is no entrypoint yet.
        let mut early = request(&path, Message::SignalEntrypoint(15));
        assert!(matches!(next(&mut early), Message::Failed(f) if f.exit_code == 125));
        let stdio = StdioMode {
            tty: false,
            stdin: true,
            window: None,
        };
        let mut s = request(&path, Message::Attach(stdio));
        assert!(matches!(next(&mut s), Message::Started(_)));
        // A second attach is refused.
        let mut second = request(&path, Message::Attach(stdio));
        assert!(matches!(next(&mut second), Message::Failed(f) if f.exit_code == 125));
        Message::Stdin(b"hi\n".to_vec()).write_to(&mut s).unwrap();
        assert_eq!(next(&mut s), Message::Stdout(b"got hi\n".to_vec()));
        assert_eq!(
            next(&mut s),
            Message::Exited(ExitStatus { code: 5, signal: 0 })
        );
        drop(s);
        assert_eq!(wait(pid, &path), 5);
    }

    #[test]
    fn the_console_stop_reaches_the_attached_entrypoint() {
        let (pid, path, mut console) = boot(&["sleep", "100"], true);
        let mut s = request(&path, Message::Attach(StdioMode::default()));
        assert!(matches!(next(&mut s), Message::Started(_)));
        let mut sig = request(&path, Message::SignalEntrypoint(0));
        assert!(matches!(next(&mut sig), Message::Failed(_)));
        console
            .write_all(&[SIGNAL_BYTE, libc::SIGTERM as u8])
            .unwrap();
        assert_eq!(
            next(&mut s),
            Message::Exited(ExitStatus {
                code: 0,
                signal: libc::SIGTERM
            })
        );
        drop(s);
        assert_eq!(wait(pid, &path), 100 + libc::SIGTERM);
    }

    #[test]
    fn without_attach_exec_and_signal_entrypoint_work_and_attach_is_refused() {
        let (pid, path, _console) = boot(&["sleep", "100"], false);
        let mut a = request(&path, Message::Attach(StdioMode::default()));
        assert!(matches!(next(&mut a), Message::Failed(f) if f.exit_code == 125));
        let exec = vcompare_spec::agent::ExecRequest {
            process: ProcessSpec {
                args: vec!["echo".into(), "x".into()],
                ..Default::default()
            },
            stdio: StdioMode::default(),
        };
        let mut e = request(&path, Message::Exec(exec));
        assert!(matches!(next(&mut e), Message::Started(_)));
        assert_eq!(next(&mut e), Message::Stdout(b"x\n".to_vec()));
        assert_eq!(
            next(&mut e),
            Message::Exited(ExitStatus { code: 0, signal: 0 })
        );
        // Stdin sent right behind the request reaches the process.
        let cat = vcompare_spec::agent::ExecRequest {
            process: ProcessSpec {
                args: vec!["cat".into()],
                ..Default::default()
            },
            stdio: StdioMode {
                tty: false,
                stdin: true,
                window: None,
            },
        };
        let more = [Message::Stdin(b"early".to_vec()), Message::StdinClosed];
        let mut c = request_and(&path, Message::Exec(cat), &more);
        assert!(matches!(next(&mut c), Message::Started(_)));
        assert_eq!(next(&mut c), Message::Stdout(b"early".to_vec()));
        assert_eq!(
            next(&mut c),
            Message::Exited(ExitStatus { code: 0, signal: 0 })
        );
        let mut k = request(&path, Message::SignalEntrypoint(libc::SIGKILL));
        assert_eq!(next(&mut k), Message::Done);
        assert_eq!(wait(pid, &path), 100 + libc::SIGKILL);
    }

    #[test]
    fn an_attached_entrypoint_that_cannot_start_fails_with_127() {
        let (pid, path, _console) = boot(&["no-such-cmd-here"], true);
        let mut s = request(&path, Message::Attach(StdioMode::default()));
        assert!(matches!(next(&mut s), Message::Failed(f) if f.exit_code == 127));
        drop(s);
        assert_eq!(wait(pid, &path), 127);
    }

    #[test]
    fn a_stop_before_attach_ends_the_run() {
        let (pid, path, mut console) = boot(&["sleep", "100"], true);
        console
            .write_all(&[SIGNAL_BYTE, libc::SIGTERM as u8])
            .unwrap();
        assert_eq!(wait(pid, &path), 100 + libc::SIGTERM);
    }
}
