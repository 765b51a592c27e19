//! One agent conversation after the handshake, run in its own process (forked by PID 1, see
//! [`crate::sys::fork_process`]) so a slow host never stalls the init: `exec` (spawn the
//! process, then [`Relay`] it to its end), or a single reply. (The attached entrypoint's
//! session is a [`Relay`] too, set up by PID 1: see `supervise.rs`.)

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use vcompare_spec::agent::{ExecRequest, Failure, FrameBuffer, Message};

use crate::relay::{ExitWatch, Relay, FLUSH_TIMEOUT, LINGER};
use crate::sys;

/// Sends one last message (`Failed` or `Done`) and ends the conversation.
pub fn reply(conn: &OwnedFd, m: &Message) -> i32 {
    let fd = conn.as_raw_fd();
    sys::set_nonblocking(fd);
    if sys::send_all(fd, &m.encode(), Instant::now() + FLUSH_TIMEOUT) {
        sys::linger(fd, LINGER);
    }
    0
}

/// A request failure (exit code 125, as docker's own errors).
pub fn failure(message: String) -> Message {
    Message::Failed(Failure {
        message,
        exit_code: 125,
    })
}

/// `vcompare exec` in the session process: spawn `req.process` with its stdio mode, answer
/// `Failed` if it did not start, else relay it to its end.
pub fn exec(conn: OwnedFd, frames: FrameBuffer, req: ExecRequest) -> i32 {
    let p = &req.process;
    let (host, child) = match crate::stdio::open(&req.stdio, (p.uid, p.gid)) {
        Ok(ends) => ends,
        Err(e) => {
            let what = if req.stdio.tty {
                "a pseudo-terminal (-t)"
            } else {
                "pipes"
            };
            return reply(
                &conn,
                &failure(format!(
                "creating {what} for exec in the guest failed: {e}; the guest may be out of file \
                 descriptors or memory"
            )),
            );
        }
    };
    let pid = match crate::spawn::spawn(p, child.stdio) {
        Ok(pid) => pid,
        Err(e) => {
            if let Some(pid) = e.pid {
                let mut st = 0;
                // SAFETY: reaping our own failed child with a valid status pointer.
                unsafe { libc::waitpid(pid, &mut st, 0) };
            }
            return reply(&conn, &Message::Failed(e.failure()));
        }
    };
    drop(child);
    let watch = match ExitWatch::child(pid) {
        Ok(w) => w,
        Err(e) => {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            return reply(
                &conn,
                &failure(format!(
                    "watching the exec'd process failed (pidfd_open: {e}); the guest kernel needs \
                 Linux 5.3 or newer"
                )),
            );
        }
    };
    Relay {
        conn,
        host,
        watch,
        pid,
        tty: req.stdio.tty,
        frames,
    }
    .run()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;
    use vcompare_spec::agent::{ExitStatus, StdioMode, WindowSize};
    use vcompare_spec::ProcessSpec;

    /// `args` as root in `/` with a minimal PATH: the process the init's tests run.
    pub(crate) fn process(args: &[&str]) -> ProcessSpec {
        ProcessSpec {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/usr/bin:/bin".into()],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
        }
    }

    /// Runs an exec session on one end of a socketpair (as the vsock connection) in a thread;
    /// the test is the host on the other end (Hello is PID 1's part, so it is skipped).
    fn start(args: &[&str], stdio: StdioMode) -> (UnixStream, std::thread::JoinHandle<i32>) {
        let (host, agent) = UnixStream::pair().unwrap();
        let req = ExecRequest {
            process: process(args),
            stdio,
        };
        let t = std::thread::spawn(move || exec(OwnedFd::from(agent), FrameBuffer::default(), req));
        (host, t)
    }

    /// Reads until the last message; (stdout, stderr, last).
    fn collect(host: &mut UnixStream) -> (Vec<u8>, Vec<u8>, Message) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        loop {
            match Message::read_from(host).unwrap().expect("a last message") {
                Message::Started(_) => {}
                Message::Stdout(b) => out.extend(b),
                Message::Stderr(b) => err.extend(b),
                last => return (out, err, last),
            }
        }
    }

    /// Runs `args` with `stdio` to its end — if it has stdin, once started it gets `input`
    /// and then EOF: (stdout, stderr, last message, the session's exit code once the host has
    /// hung up).
    fn run(args: &[&str], stdio: StdioMode, input: &[u8]) -> (Vec<u8>, Vec<u8>, Message, i32) {
        let stdin = stdio.stdin;
        let (mut host, t) = start(args, stdio);
        if stdin {
            started(&mut host);
            Message::Stdin(input.to_vec()).write_to(&mut host).unwrap();
            Message::StdinClosed.write_to(&mut host).unwrap();
        }
        let (out, err, last) = collect(&mut host);
        drop(host);
        (out, err, last, t.join().unwrap())
    }

    fn started(host: &mut UnixStream) -> u32 {
        match Message::read_from(host).unwrap() {
            Some(Message::Started(pid)) => pid,
            other => panic!("expected Started, got {other:?}"),
        }
    }

    #[test]
    fn pipes_carry_stdout_stderr_and_the_exit_code() {
        let (out, err, last, code) = run(
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            StdioMode::default(),
            b"",
        );
        assert_eq!((&out[..], &err[..]), (&b"out\n"[..], &b"err\n"[..]));
        assert_eq!(last, Message::Exited(ExitStatus { code: 3, signal: 0 }));
        assert_eq!(code, 0);
    }

    #[test]
    fn stdin_is_relayed_and_closed() {
        let stdio = StdioMode {
            tty: false,
            stdin: true,
            window: None,
        };
        let (out, _, last, _) = run(&["cat"], stdio, b"hello");
        assert_eq!(out, b"hello");
        assert_eq!(last, Message::Exited(ExitStatus { code: 0, signal: 0 }));
    }

    #[test]
    fn a_large_output_arrives_whole_in_chunks() {
        let (out, _, last, _) = run(
            &["sh", "-c", "head -c 3000000 /dev/zero"],
            StdioMode::default(),
            b"",
        );
        assert_eq!(out.len(), 3_000_000);
        assert_eq!(last, Message::Exited(ExitStatus { code: 0, signal: 0 }));
    }

    #[test]
    fn a_tty_has_the_window_and_takes_eof() {
        if crate::pty::open(None, (0, 0)).is_err() {
            eprintln!("no /dev/pts/ptmx on this host; skipped");
            return;
        }
        let stdio = StdioMode {
            tty: true,
            stdin: true,
            window: Some(WindowSize { rows: 33, cols: 77 }),
        };
        let (out, err, last, _) = run(
            &["sh", "-c", "stty size; test -t 0 && echo tty; cat"],
            stdio,
            b"abc\n",
        );
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.contains("33 77") && out.contains("tty") && out.contains("abc"),
            "{out:?}"
        );
        assert!(err.is_empty());
        assert_eq!(last, Message::Exited(ExitStatus { code: 0, signal: 0 }));
    }

    #[test]
    fn signals_reach_the_process() {
        let (mut host, t) = start(&["sleep", "100"], StdioMode::default());
        started(&mut host);
        Message::Signal(libc::SIGTERM).write_to(&mut host).unwrap();
        let (_, _, last) = collect(&mut host);
        assert_eq!(
            last,
            Message::Exited(ExitStatus {
                code: 0,
                signal: libc::SIGTERM
            })
        );
        drop(host);
        t.join().unwrap();
    }

    #[test]
    fn a_missing_command_fails_with_127_instead_of_starting() {
        let (_, _, last, _) = run(&["no-such-cmd-here"], StdioMode::default(), b"");
        let Message::Failed(f) = last else {
            panic!("{last:?}")
        };
        assert_eq!(f.exit_code, 127);
        assert!(
            f.message.contains("was not found in the image's PATH"),
            "{}",
            f.message
        );
    }

    #[test]
    fn a_background_grandchild_does_not_hold_up_exited() {
        let t0 = Instant::now();
        let (mut host, t) = start(&["sh", "-c", "sleep 3 & echo hi"], StdioMode::default());
        let (out, _, last) = collect(&mut host);
        assert_eq!(out, b"hi\n");
        assert_eq!(last, Message::Exited(ExitStatus { code: 0, signal: 0 }));
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        drop(host);
        t.join().unwrap();
    }

    #[test]
    fn a_vanished_host_kills_the_process() {
        let (mut host, t) = start(&["sleep", "100"], StdioMode::default());
        let pid = started(&mut host) as libc::pid_t;
        drop(host);
        assert_eq!(t.join().unwrap(), 1);
        // SAFETY: probing a pid with signal 0.
        assert_ne!(unsafe { libc::kill(pid, 0) }, 0, "the process was reaped");
    }
}
