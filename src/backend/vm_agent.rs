//! The host end of the guest agent (the init's agent, [`vcompare_spec::agent`]): how `exec`,
//! `run -i/-t` and `stop` reach a microVM's guest. The VMM's virtio-vsock device serves a
//! Unix socket in the instance directory; [`Agent::connect`] asks it for the agent's port,
//! both sides say hello, and one request follows. The relay ([`Agent::exec`],
//! [`Agent::attach`]) moves our stdin, terminal size and signals in and the process's output
//! and exit status out, so a VM's `exec` behaves like a container's from the user's seat.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vcompare_container::sys::{install_handler, stdin_raw_mode, SavedAction, SavedTermios};
use vcompare_spec::agent::{
    ExecRequest, ExitStatus, Hello, Message, ProtocolError, StdioMode, WindowSize, AGENT_PORT,
    PROTOCOL_VERSION, STREAM_CHUNK,
};
use vcompare_vmm::devices::virtio::vsock::{self, VsockConnectError};

/// Why the agent could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The VMM's socket is missing or nothing listens on the agent's port yet.
    #[error("the guest agent of VM {id} is not up yet (the guest is still booting); try again in a few seconds")]
    NotUp {
        /// The instance's short id.
        id: String,
    },
    /// The VMM or the agent did not answer in time (a frozen or overloaded guest).
    #[error("the guest agent of VM {id} did not answer within {secs} s (the guest is booting, frozen or overloaded); try again")]
    NoAnswer {
        /// The instance's short id.
        id: String,
        /// How long we waited.
        secs: u64,
    },
    /// The guest's init is from another build.
    #[error("the guest agent speaks protocol v{theirs}, this vcompare v{PROTOCOL_VERSION}; remove the VM and run it again so its disk gets this build's init")]
    Version {
        /// The agent's version.
        theirs: u32,
    },
    /// The conversation broke a rule of the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The connection ended before the process's end was reported.
    #[error("the VM ended before the command finished (its entrypoint exited or it was stopped)")]
    Vanished,
    /// The agent refused the conversation, in its own words.
    #[error("{0}")]
    Refused(String),
    /// The agent answered with something other than what the request expects.
    #[error("the guest agent answered a {0} request with an unexpected message")]
    Unexpected(&'static str),
}

impl From<std::io::Error> for AgentError {
    fn from(e: std::io::Error) -> Self {
        AgentError::Protocol(ProtocolError::Io(e))
    }
}

/// One conversation with a VM's agent.
pub struct Agent {
    stream: UnixStream,
}

/// How a relayed process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It ran and ended with this status.
    Exited(ExitStatus),
    /// It did not start (or the request was refused): the agent's sentence and the exit
    /// code to return (127 not found, 126 not executable, 125 other).
    Failed {
        /// The agent's message.
        message: String,
        /// The exit code for the CLI.
        exit_code: i32,
    },
}

impl Ended {
    /// The exit code `vcompare` returns, printing the agent's sentence for a failure (as
    /// container `exec` prints its error).
    pub fn exit_code(&self) -> i32 {
        match self {
            Ended::Exited(s) => s.shell_code(),
            Ended::Failed { message, exit_code } => {
                eprintln!("vcompare: {message}");
                *exit_code
            }
        }
    }
}

impl Agent {
    /// Connects to the agent of the VM whose instance directory is `dir` (`id` names it in
    /// errors) and exchanges hellos, waiting at most `timeout` for each step.
    pub fn connect(dir: &Path, id: &str, timeout: Duration) -> Result<Agent, AgentError> {
        let socket = super::vm::agent_socket(dir);
        let no_answer = || AgentError::NoAnswer {
            id: id.to_string(),
            secs: timeout.as_secs().max(1),
        };
        let stream = vsock::connect(&socket, AGENT_PORT, timeout).map_err(|e| match e {
            VsockConnectError::Timeout { .. } => no_answer(),
            _ => AgentError::NotUp { id: id.to_string() },
        })?;
        let mut agent = Agent { stream };
        agent.stream.set_read_timeout(Some(timeout))?;
        Message::Hello(Hello::new("vcompare")).write_to(&mut agent.stream)?;
        let answer = Message::read_from(&mut agent.stream).map_err(|e| match e {
            ProtocolError::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                no_answer()
            }
            e => AgentError::Protocol(e),
        })?;
        match answer {
            Some(Message::Hello(h)) if h.version == PROTOCOL_VERSION => {}
            Some(Message::Hello(h)) => return Err(AgentError::Version { theirs: h.version }),
            Some(Message::Failed(f)) => return Err(AgentError::Refused(f.message)),
            Some(_) => return Err(AgentError::Unexpected("hello")),
            None => return Err(AgentError::NotUp { id: id.to_string() }),
        }
        agent.stream.set_read_timeout(None)?;
        Ok(agent)
    }

    /// Sends `sig` to the VM's entrypoint (`stop`, `kill -s`); true once the agent did.
    pub fn signal_entrypoint(mut self, sig: i32) -> Result<bool, AgentError> {
        Message::SignalEntrypoint(sig).write_to(&mut self.stream)?;
        match Message::read_from(&mut self.stream)? {
            Some(Message::Done) => Ok(true),
            Some(Message::Failed(_)) => Ok(false),
            Some(_) => Err(AgentError::Unexpected("signal")),
            None => Err(AgentError::Vanished),
        }
    }

    /// Runs `process` in the guest (`vcompare exec`) with our stdio, until it ends.
    pub fn exec(self, req: ExecRequest) -> Result<Ended, AgentError> {
        let stdio = req.stdio;
        self.relay(Message::Exec(req), stdio, true)
    }

    /// Starts the run's entrypoint with our stdio (`run -i/-t`) and relays until it ends.
    /// Signals are not forwarded here: the VMM process passes `run`'s signals to the
    /// entrypoint through the init, as without `-i`.
    pub fn attach(self, stdio: StdioMode) -> Result<Ended, AgentError> {
        self.relay(Message::Attach(stdio), stdio, false)
    }

    /// Sends `request`, then moves stdin, window size and (with `forward_signals`) our
    /// SIGINT/SIGTERM/SIGHUP/SIGQUIT in and output out until the agent reports the end. Our
    /// terminal is raw while a tty session runs. The connection is closed on return: that
    /// tells the agent its last message arrived.
    fn relay(
        mut self,
        request: Message,
        stdio: StdioMode,
        forward_signals: bool,
    ) -> Result<Ended, AgentError> {
        request.write_to(&mut self.stream)?;
        let writer = Arc::new(Mutex::new(self.stream.try_clone()?));
        let _terminal = TerminalGuard::enter(stdio.tty, forward_signals, writer.clone())?;
        if stdio.stdin {
            let w = writer.clone();
            // Detached: a read on our stdin cannot be cancelled; it ends with the process.
            std::thread::spawn(move || forward_stdin(&w, !stdio.tty));
        }
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr();
        loop {
            match Message::read_from(&mut self.stream)? {
                Some(Message::Started(_)) => {}
                Some(Message::Stdout(b)) => {
                    out.write_all(&b)?;
                    out.flush()?;
                }
                Some(Message::Stderr(b)) => {
                    let _ = out.flush();
                    err.write_all(&b)?;
                }
                Some(Message::Exited(s)) => return Ok(Ended::Exited(s)),
                Some(Message::Failed(f)) => {
                    return Ok(Ended::Failed {
                        message: f.message,
                        exit_code: f.exit_code,
                    })
                }
                Some(_) => return Err(AgentError::Unexpected("process")),
                None => return Err(AgentError::Vanished),
            }
        }
    }
}

/// Copies our stdin to the agent in chunks. At its end, tells the agent (`tell_end`: pipes)
/// or just stops (a terminal: as a container's pty relay does, so `run -dit … sh`, whose
/// stdin is /dev/null, keeps its shell).
fn forward_stdin(w: &Mutex<UnixStream>, tell_end: bool) {
    let mut buf = vec![0u8; STREAM_CHUNK];
    loop {
        // SAFETY: reading into a local buffer from fd 0.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        let msg = match n {
            n if n > 0 => Message::Stdin(buf[..n as usize].to_vec()),
            n if n < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted =>
            {
                continue
            }
            _ => Message::StdinClosed,
        };
        let end = msg == Message::StdinClosed;
        if end && !tell_end {
            return;
        }
        if msg.write_to(&mut *w.lock().unwrap()).is_err() || end {
            return;
        }
    }
}

/// The stdio of a request: `-t` brings our terminal's size along.
pub fn stdio_mode(tty: bool, stdin: bool) -> StdioMode {
    StdioMode {
        tty,
        stdin,
        window: tty.then(window_size).flatten(),
    }
}

/// Our terminal's size (stdin's), if stdin is a terminal.
pub fn window_size() -> Option<WindowSize> {
    // SAFETY: TIOCGWINSZ fills a stack winsize.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0).then_some(WindowSize {
            rows: ws.ws_row,
            cols: ws.ws_col,
        })
    }
}

/// The write end of the pipe the signal handlers write signal numbers to (-1 = none).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// Signals we pass on to the process in the guest, as container `exec` does.
const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Records a signal for the forwarding thread; async-signal-safe.
extern "C" fn on_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = sig as u8;
        // SAFETY: write(2) of one byte from the stack is async-signal-safe.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// While a relay runs: our terminal in raw mode (with a tty), and SIGINT/SIGTERM/SIGHUP/
/// SIGQUIT (and SIGWINCH with a tty) turned into messages to the agent by a thread that
/// reads the handlers' pipe. Dropping it restores the terminal and the handlers.
struct TerminalGuard {
    saved: Option<SavedTermios>,
    actions: Vec<SavedAction>,
    pipe_write: i32,
}

impl TerminalGuard {
    fn enter(
        tty: bool,
        forward_signals: bool,
        w: Arc<Mutex<UnixStream>>,
    ) -> Result<TerminalGuard, AgentError> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills two fds.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let (read, write) = (fds[0], fds[1]);
        SIGNAL_PIPE.store(write, Ordering::SeqCst);
        let mut signals: Vec<i32> = if forward_signals {
            FORWARDED.to_vec()
        } else {
            Vec::new()
        };
        if tty {
            signals.push(libc::SIGWINCH);
            if let Some(ws) = window_size() {
                Message::Resize(ws).write_to(&mut *w.lock().unwrap())?;
            }
        }
        let actions = signals
            .iter()
            .filter_map(|&s| install_handler(s, on_signal).ok())
            .collect();
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            // SAFETY: reading one byte into a local buffer; the loop ends when the write end
            // is closed (the guard dropped).
            while unsafe { libc::read(read, b.as_mut_ptr().cast(), 1) } == 1 {
                let sig = i32::from(b[0]);
                let msg = if sig == libc::SIGWINCH {
                    match window_size() {
                        Some(ws) => Message::Resize(ws),
                        None => continue,
                    }
                } else {
                    Message::Signal(sig)
                };
                if msg.write_to(&mut *w.lock().unwrap()).is_err() {
                    break;
                }
            }
            // SAFETY: closing our own fd.
            unsafe { libc::close(read) };
        });
        Ok(TerminalGuard {
            saved: if tty { stdin_raw_mode() } else { None },
            actions,
            pipe_write: write,
        })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        for a in &self.actions {
            a.restore();
        }
        SIGNAL_PIPE.store(-1, Ordering::SeqCst);
        // SAFETY: closing our own fd; the reader thread then sees the end.
        unsafe { libc::close(self.pipe_write) };
        if let Some(t) = &self.saved {
            t.restore();
        }
    }
}
