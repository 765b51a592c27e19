//! The guest agent's front door, run inside PID 1's poll loop: the AF_VSOCK listener, the
//! handshake of each connection (read without blocking: a connection is polled like the
//! console until its request has arrived) and the decision what a request gets. Carrying a
//! request out takes a session process ([`crate::session`]), so nothing here ever waits for
//! the host.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use vcompare_spec::agent::{
    ExecRequest, FrameBuffer, Hello, Message, StdioMode, AGENT_PORT, PROTOCOL_VERSION,
};

use crate::session::failure;
use crate::sys;

/// Opens the listener on VMADDR_CID_ANY:[`AGENT_PORT`]. `Ok(None)`: the guest kernel has no
/// vsock (EAFNOSUPPORT), the VM runs without an agent.
pub fn listen() -> Result<Option<OwnedFd>, String> {
    // SAFETY: socket() returns a new fd or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_VSOCK,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return match sys::errno() {
            libc::EAFNOSUPPORT => Ok(None),
            _ => Err(format!("vsock socket: {}", std::io::Error::last_os_error())),
        };
    }
    // SAFETY: a new fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_vm is valid; the fields are set below.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = AGENT_PORT;
    addr.svm_cid = libc::VMADDR_CID_ANY;
    // SAFETY: bind/listen with a valid sockaddr_vm of its size.
    let ok = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        ) == 0
            && libc::listen(fd, 16) == 0
    };
    if !ok {
        return Err(format!(
            "vsock listen on port {AGENT_PORT}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(Some(sock))
}

/// Accepts one connection (non-blocking, CLOEXEC) and sends our [`Hello`] at once (a few
/// bytes into an empty socket buffer: never blocks). `None` if there was none or it already
/// failed.
pub fn accept(listener: RawFd) -> Option<Handshake> {
    // SAFETY: accept4 without an address; returns a new fd or -1.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: a new fd nobody else owns.
    let conn = unsafe { OwnedFd::from_raw_fd(fd) };
    let hello = Message::Hello(Hello::new("vcompare-init")).encode();
    match sys::write(fd, &hello, true) {
        Ok(n) if n == hello.len() => Some(Handshake::new(conn)),
        _ => None,
    }
}

/// A connection whose request has not arrived yet.
#[derive(Debug)]
pub struct Handshake {
    /// The connection.
    pub conn: OwnedFd,
    /// Bytes received so far, split into frames; what follows the request (stdin sent
    /// right behind it) stays here for the session.
    pub frames: FrameBuffer,
    /// The host's Hello arrived (with our version): the next message is the request.
    hello: bool,
}

/// What became of a handshake after more bytes arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Still waiting.
    More,
    /// The host closed before its request: drop the connection.
    Closed,
    /// The request (or the `Failed` the host gets instead, e.g. for a version mismatch).
    Request(Message),
}

impl Handshake {
    /// Starts the handshake on `conn` (our Hello was sent).
    pub fn new(conn: OwnedFd) -> Handshake {
        Handshake {
            conn,
            frames: FrameBuffer::default(),
            hello: false,
        }
    }

    /// Reads what arrived (the connection was readable).
    pub fn read(&mut self) -> Step {
        let mut buf = [0u8; 4096];
        match sys::read(self.conn.as_raw_fd(), &mut buf) {
            Ok(0) => Step::Closed,
            Ok(n) => self.feed(&buf[..n]),
            Err(libc::EAGAIN) | Err(libc::EINTR) => Step::More,
            Err(_) => Step::Closed,
        }
    }

    /// Takes received bytes: Hello first (its version must be ours), then the request.
    pub fn feed(&mut self, bytes: &[u8]) -> Step {
        self.frames.push(bytes);
        loop {
            let m = match self.frames.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => return Step::More,
                Err(e) => {
                    return Step::Request(failure(format!(
                        "{e}; the host sent a malformed request"
                    )))
                }
            };
            match (self.hello, m) {
                (false, Message::Hello(h)) if h.version == PROTOCOL_VERSION => self.hello = true,
                (false, Message::Hello(h)) => {
                    return Step::Request(failure(format!(
                        "the guest agent speaks protocol v{PROTOCOL_VERSION}, vcompare v{}: the \
                         VM's init comes from another vcompare build; recreate the instance so \
                         its disk gets this build's init",
                        h.version
                    )))
                }
                (false, m) => {
                    return Step::Request(failure(format!(
                        "the host sent {:?} before Hello; the client does not speak the agent \
                         protocol",
                        m.kind()
                    )))
                }
                (true, m) => return Step::Request(m),
            }
        }
    }
}

/// Where the entrypoint stands, as far as requests care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entrypoint {
    /// `run -i/-t`: waiting for the Attach connection.
    AwaitingAttach,
    /// Running as this pid (attached or on the console).
    Running(libc::pid_t),
    /// Ended (the VM is powering off).
    Ended,
}

/// What PID 1 does with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Fork an exec session.
    Exec(ExecRequest),
    /// Start the entrypoint with this stdio and fork its relay session.
    Attach(StdioMode),
    /// Send the entrypoint this signal, then answer `Done` (or `Failed` if kill fails).
    Signal(libc::pid_t, i32),
    /// Answer with this message only.
    Reply(Message),
}

/// The decision for `request` given the entrypoint's state: the rules of which request is
/// allowed when, kept apart from the system calls so they are unit-tested.
pub fn decide(request: Message, ep: Entrypoint) -> Action {
    match (request, ep) {
        (Message::Exec(r), _) if r.process.args.is_empty() => Action::Reply(failure(
            "exec needs a command; give the command to run after the instance name".into(),
        )),
        (Message::Exec(r), _) => Action::Exec(r),
        (Message::Attach(s), Entrypoint::AwaitingAttach) => Action::Attach(s),
        (Message::Attach(_), Entrypoint::Running(_)) => Action::Reply(failure(
            "the entrypoint was already started (without -i/-t, or attached by another \
             connection); use exec for a new process"
                .into(),
        )),
        (Message::SignalEntrypoint(sig), _) if !(1..=64).contains(&sig) => Action::Reply(failure(
            format!("signal {sig} is not a valid signal number (1-64)"),
        )),
        (Message::SignalEntrypoint(sig), Entrypoint::Running(pid)) => Action::Signal(pid, sig),
        (Message::SignalEntrypoint(_), Entrypoint::AwaitingAttach) => Action::Reply(failure(
            "the entrypoint has not started yet (it waits for run -i/-t to attach)".into(),
        )),
        (Message::Attach(_) | Message::SignalEntrypoint(_), Entrypoint::Ended) => Action::Reply(
            failure("the entrypoint has ended; the VM is stopping".into()),
        ),
        (m @ Message::Failed(_), _) => Action::Reply(m),
        (m, _) => Action::Reply(failure(format!(
            "{:?} is not a request (expected Exec, Attach or SignalEntrypoint)",
            m.kind()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vcompare_spec::agent::Kind;
    use vcompare_spec::ProcessSpec;

    fn hs() -> (Handshake, OwnedFd) {
        let mut fds = [0; 2];
        assert_eq!(
            // SAFETY: socketpair fills two fds.
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) },
            0
        );
        // SAFETY: two new fds.
        unsafe {
            (
                Handshake::new(OwnedFd::from_raw_fd(fds[0])),
                OwnedFd::from_raw_fd(fds[1]),
            )
        }
    }

    fn code(m: &Message) -> i32 {
        match m {
            Message::Failed(f) => f.exit_code,
            other => panic!("not a failure: {other:?}"),
        }
    }

    #[test]
    fn hello_then_request_in_any_split() {
        let req = Message::SignalEntrypoint(15);
        let bytes: Vec<u8> = [
            Message::Hello(Hello::new("vcompare")).encode(),
            req.encode(),
        ]
        .concat();
        let (mut h, _peer) = hs();
        let mut last = Step::More;
        for b in &bytes {
            assert_eq!(last, Step::More);
            last = h.feed(std::slice::from_ref(b));
        }
        assert_eq!(last, Step::Request(req));
    }

    #[test]
    fn version_mismatch_and_missing_hello_fail_with_125() {
        let (mut h, _peer) = hs();
        let old = Hello {
            version: PROTOCOL_VERSION + 1,
            peer: "vcompare".into(),
        };
        let Step::Request(m) = h.feed(&Message::Hello(old).encode()) else {
            panic!()
        };
        assert_eq!(code(&m), 125);
        let Message::Failed(f) = m else { panic!() };
        assert!(f.message.starts_with(&format!(
            "the guest agent speaks protocol v{PROTOCOL_VERSION}, vcompare v{}: ",
            PROTOCOL_VERSION + 1
        )));
        let (mut h, _peer) = hs();
        let Step::Request(m) = h.feed(&Message::Done.encode()) else {
            panic!()
        };
        assert_eq!(code(&m), 125);
        let (mut h, _peer) = hs();
        let Step::Request(m) = h.feed(&[0, 0, 0, 0, 200]) else {
            panic!()
        };
        assert_eq!(code(&m), 125);
    }

    #[test]
    fn a_closed_connection_ends_the_handshake() {
        let (mut h, peer) = hs();
        drop(peer);
        assert_eq!(h.read(), Step::Closed);
    }

    #[test]
    fn requests_are_allowed_by_the_entrypoints_state() {
        let exec = ExecRequest {
            process: ProcessSpec {
                args: vec!["sh".into()],
                ..Default::default()
            },
            stdio: StdioMode::default(),
        };
        assert_eq!(
            decide(Message::Exec(exec.clone()), Entrypoint::AwaitingAttach),
            Action::Exec(exec.clone())
        );
        assert_eq!(
            decide(Message::Exec(exec.clone()), Entrypoint::Running(5)),
            Action::Exec(exec)
        );
        let Action::Reply(m) = decide(
            Message::Exec(ExecRequest::default()),
            Entrypoint::Running(5),
        ) else {
            panic!()
        };
        assert_eq!(code(&m), 125);
        let tty = StdioMode {
            tty: true,
            stdin: true,
            window: None,
        };
        assert_eq!(
            decide(Message::Attach(tty), Entrypoint::AwaitingAttach),
            Action::Attach(tty)
        );
        for ep in [Entrypoint::Running(5), Entrypoint::Ended] {
            let Action::Reply(m) = decide(Message::Attach(tty), ep) else {
                panic!()
            };
            assert_eq!(code(&m), 125);
        }
        assert_eq!(
            decide(Message::SignalEntrypoint(15), Entrypoint::Running(5)),
            Action::Signal(5, 15)
        );
        for (sig, ep) in [
            (15, Entrypoint::AwaitingAttach),
            (15, Entrypoint::Ended),
            (0, Entrypoint::Running(5)),
            (99, Entrypoint::Running(5)),
        ] {
            let Action::Reply(m) = decide(Message::SignalEntrypoint(sig), ep) else {
                panic!()
            };
            assert_eq!(code(&m), 125);
        }
        let Action::Reply(m) = decide(Message::Stdin(vec![1]), Entrypoint::Running(5)) else {
            panic!()
        };
        assert_eq!(code(&m), 125);
        assert_eq!(Message::Done.kind(), Kind::Done);
    }
}
