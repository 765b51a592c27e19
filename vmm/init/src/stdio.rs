//! The two ends of a session's standard streams, made from the host's [`StdioMode`]: a pty
//! (`-t`) or pipes, the child's ends for [`spawn`](crate::spawn::spawn) and the agent's ends
//! for the relay. One constructor for `exec` and the attached entrypoint.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use vcompare_spec::agent::StdioMode;

use crate::spawn::ChildStdio;

/// The agent's ends: what the relay reads output from and writes stdin to.
#[derive(Debug)]
pub enum HostEnds {
    /// `-t`: the pty master (non-blocking) carries both directions.
    Pty {
        /// The master.
        master: OwnedFd,
    },
    /// Pipes: stdin's write end (only with `-i`), stdout's and stderr's read ends, all
    /// non-blocking.
    Pipes {
        /// Write end of the child's stdin, `None` when stdin is `/dev/null`.
        stdin: Option<OwnedFd>,
        /// Read end of the child's stdout.
        stdout: OwnedFd,
        /// Read end of the child's stderr.
        stderr: OwnedFd,
    },
}

impl HostEnds {
    /// Every fd held (to keep them open in a forked session process).
    pub fn fds(&self) -> Vec<RawFd> {
        match self {
            HostEnds::Pty { master } => vec![master.as_raw_fd()],
            HostEnds::Pipes {
                stdin,
                stdout,
                stderr,
            } => [stdin.as_ref(), Some(stdout), Some(stderr)]
                .into_iter()
                .flatten()
                .map(|f| f.as_raw_fd())
                .collect(),
        }
    }
}

/// The child's ends, owned until it was spawned (then dropped, so the agent sees EOF when
/// the child and its descendants are done with them).
#[derive(Debug)]
pub struct ChildEnds {
    /// Keeps the fds in `stdio` open.
    _owned: Vec<OwnedFd>,
    /// The same fds as `spawn` takes them.
    pub stdio: ChildStdio,
}

/// Makes both ends for `mode`; the pty slave is owned by `owner` (uid, gid).
pub fn open(mode: &StdioMode, owner: (u32, u32)) -> std::io::Result<(HostEnds, ChildEnds)> {
    if mode.tty {
        let (master, slave) = crate::pty::open(mode.window, owner)?;
        let s = slave.as_raw_fd();
        let stdio = ChildStdio::Fds {
            stdin: Some(s),
            stdout: s,
            stderr: s,
            ctty: true,
        };
        return Ok((
            HostEnds::Pty { master },
            ChildEnds {
                _owned: vec![slave],
                stdio,
            },
        ));
    }
    let pipe = || crate::sys::pipe().map_err(std::io::Error::from_raw_os_error);
    let stdin = if mode.stdin { Some(pipe()?) } else { None };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let stdio = ChildStdio::Fds {
        stdin: stdin.as_ref().map(|(r, _)| r.as_raw_fd()),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        ctty: false,
    };
    let (stdin_r, stdin_w) = match stdin {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let host = HostEnds::Pipes {
        stdin: stdin_w,
        stdout: out_r,
        stderr: err_r,
    };
    for fd in host.fds() {
        crate::sys::set_nonblocking(fd);
    }
    let owned = [stdin_r, Some(out_w), Some(err_w)]
        .into_iter()
        .flatten()
        .collect();
    Ok((
        host,
        ChildEnds {
            _owned: owned,
            stdio,
        },
    ))
}
