//! Starting a process in the guest: the one fork/exec path for the run's entrypoint (started
//! by PID 1) and for `vcompare exec` (started by a session process), so a user, working
//! directory, environment or `PATH` rule cannot reach one and miss the other.
//!
//! The child reports a failure before `execve` succeeds through a `CLOEXEC` pipe (the usual
//! trick: a successful exec closes the pipe, so the parent reads EOF; a failure writes the
//! step and errno first), which lets the agent answer `Failed` instead of `Started`. The
//! child still exits with the failure's code (127 not found, 126 otherwise), so the
//! entrypoint's boot-timer status is what it always was.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};

use vcompare_spec::agent::{ExitStatus, Failure};
use vcompare_spec::ProcessSpec;

/// Where the child's standard streams come from.
#[derive(Debug, Clone, Copy)]
pub enum ChildStdio {
    /// The non-attached entrypoint: stdin `/dev/null`, stdout/stderr stay on the console
    /// (the init's own fds 1 and 2), exactly as before the agent existed.
    Console,
    /// Given fds on 0/1/2 (`stdin: None` = `/dev/null`); `ctty`: fd 0 is a pty slave that
    /// becomes the controlling terminal of the child's new session.
    Fds {
        /// Read end of the stdin pipe or the pty slave; `None` for `/dev/null`.
        stdin: Option<RawFd>,
        /// Write end of the stdout pipe or the pty slave.
        stdout: RawFd,
        /// Write end of the stderr pipe or the pty slave.
        stderr: RawFd,
        /// Make fd 0 the controlling terminal (TIOCSCTTY).
        ctty: bool,
    },
}

/// The step of the child's setup that failed (sent through the error pipe as an `i32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Connecting stdin/stdout/stderr or the controlling terminal.
    Stdio = 1,
    /// setgroups/setgid/setuid.
    User = 2,
    /// chdir into the working directory.
    Cwd = 3,
    /// execve itself.
    Exec = 4,
}

impl Stage {
    /// The stage the child wrote (an unknown number cannot come from our child; it reads
    /// as the exec step).
    fn from_i32(n: i32) -> Stage {
        match n {
            1 => Stage::Stdio,
            2 => Stage::User,
            3 => Stage::Cwd,
            _ => Stage::Exec,
        }
    }
}

/// Why a process did not start. `pid` is set when the child was forked (it exits by itself
/// with [`SpawnError::exit_code`] and must still be reaped); `None` when the parent could not
/// even fork or make the error pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    /// The forked child, if any.
    pub pid: Option<libc::pid_t>,
    /// The failed step (`None`: the parent's own fork/pipe failed).
    pub stage: Option<Stage>,
    /// The kernel's error.
    pub errno: i32,
    /// `args[0]` as the request named it (for the messages).
    pub command: String,
    /// The process's uid:gid and working directory (for the messages).
    pub uid: u32,
    /// See `uid`.
    pub gid: u32,
    /// See `uid`.
    pub cwd: String,
}

impl SpawnError {
    /// The exit status the child ends with and the CLI returns: 127 when execve says ENOENT
    /// (the container's "command not found"), 126 for any other failure inside the child
    /// (not executable, and also the user switch or working directory: what the entrypoint
    /// always exited with, and what docker's exec returns for a bad `-w`), 125 when the
    /// parent could not fork (the request itself failed).
    pub fn exit_code(&self) -> i32 {
        match (self.stage, self.errno) {
            (None, _) => 125,
            (Some(Stage::Exec), libc::ENOENT) => 127,
            (Some(_), _) => 126,
        }
    }

    /// The agent's answer: the container's wording for a missing or non-executable command
    /// (container/src/error.rs), so `exec` fails the same way in both modes.
    pub fn failure(&self) -> Failure {
        let e = errno_text(self.errno);
        let cmd = &self.command;
        let message = match self.stage {
            Some(Stage::Exec) if self.errno == libc::ENOENT && cmd.contains('/') => format!(
                "command path {cmd:?} does not exist in the image; check the path, which is \
                 looked up in the image's root filesystem, not on the host"
            ),
            Some(Stage::Exec) if self.errno == libc::ENOENT => format!(
                "command {cmd:?} was not found in the image's PATH; check the command name or \
                 use an absolute path"
            ),
            Some(Stage::Exec) => format!(
                "command {cmd:?} cannot be executed ({e}); check its permissions and that it is \
                 a binary for this CPU"
            ),
            Some(Stage::User) => format!(
                "guest setup step \"switch to the user {}:{}\" failed: {e}; check the -u uid/gid",
                self.uid, self.gid
            ),
            Some(Stage::Cwd) => format!(
                "guest setup step \"enter the working directory {:?}\" failed: {e}; check the -w \
                 directory: it must be a directory path inside the image",
                self.cwd
            ),
            Some(Stage::Stdio) => format!(
                "guest setup step \"connect the standard streams\" failed: {e}; this is a bug in \
                 vcompare-init"
            ),
            None => format!(
                "starting {cmd:?} in the guest failed: {e}; the guest may be out of \
                 memory or processes"
            ),
        };
        Failure {
            message,
            exit_code: self.exit_code(),
        }
    }
}

/// `NAME: description` as the container's messages print an errno (nix's `Errno` display),
/// for the errors execve, chdir and the credential calls return; others as `errno N`.
pub fn errno_text(errno: i32) -> String {
    let (name, desc) = match errno {
        libc::EACCES => ("EACCES", "Permission denied"),
        libc::ENOEXEC => ("ENOEXEC", "Exec format error"),
        libc::EPERM => ("EPERM", "Operation not permitted"),
        libc::ENOENT => ("ENOENT", "No such file or directory"),
        libc::ETXTBSY => ("ETXTBSY", "Text file busy"),
        libc::ELOOP => ("ELOOP", "Too many symbolic links encountered"),
        libc::ENAMETOOLONG => ("ENAMETOOLONG", "File name too long"),
        libc::ENOTDIR => ("ENOTDIR", "Not a directory"),
        libc::EISDIR => ("EISDIR", "Is a directory"),
        libc::E2BIG => ("E2BIG", "Argument list too long"),
        libc::ENOMEM => ("ENOMEM", "Out of memory"),
        libc::EAGAIN => ("EAGAIN", "Try again"),
        libc::EIO => ("EIO", "I/O error"),
        libc::EINVAL => ("EINVAL", "Invalid argument"),
        libc::ELIBBAD => ("ELIBBAD", "Accessing a corrupted shared library"),
        libc::EMFILE => ("EMFILE", "Too many open files"),
        libc::ENFILE => ("ENFILE", "File table overflow"),
        _ => return format!("errno {errno}"),
    };
    format!("{name}: {desc}")
}

/// How a wait status ended: the exit code, or the killing signal (code 0), as both the
/// boot-timer report and the agent's `Exited` carry it.
pub fn exit_status(wait_status: i32) -> ExitStatus {
    if libc::WIFSIGNALED(wait_status) {
        ExitStatus {
            code: 0,
            signal: libc::WTERMSIG(wait_status),
        }
    } else {
        ExitStatus {
            code: libc::WEXITSTATUS(wait_status),
            signal: 0,
        }
    }
}

/// Resolves `prog` through PATH from the process's environment, as execvp would (the default
/// PATH when the environment has none); a name found nowhere is returned unchanged, so execve
/// fails with ENOENT (→ 127).
pub fn resolve(prog: &str, env: &[String]) -> String {
    if prog.contains('/') {
        return prog.to_string();
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let cand = format!("{dir}/{prog}");
        if let Ok(m) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return cand;
            }
        }
    }
    prog.to_string()
}

/// A C string for the exec arguments (an interior NUL cannot come from a shell, so it is
/// replaced rather than failing the start).
pub fn cstr(s: &str) -> CString {
    CString::new(s.as_bytes().to_vec()).unwrap_or_else(|_| CString::new("?").unwrap())
}

/// A NULL-terminated pointer array over `strings` (valid while `strings` lives).
fn ptrs(strings: &[CString]) -> Vec<*const libc::c_char> {
    let mut p: Vec<*const libc::c_char> = strings.iter().map(|c| c.as_ptr()).collect();
    p.push(std::ptr::null());
    p
}

/// Forks and execs `process` in a new session: argv[0] through PATH ([`resolve`]), the
/// environment with the init's inherited variables (`entrypoint_env`), supplementary groups
/// dropped, gid then uid, the working directory (`/` when empty), signal mask and dispositions
/// reset (PID 1 blocks SIGCHLD and the Rust runtime ignores SIGPIPE; an ignored signal would
/// survive execve), and `stdio`. Returns the pid once execve succeeded.
pub fn spawn(process: &ProcessSpec, stdio: ChildStdio) -> Result<libc::pid_t, SpawnError> {
    let command = process.args.first().cloned().unwrap_or_default();
    let path = cstr(&resolve(&command, &process.env));
    let argv: Vec<CString> = process.args.iter().map(|a| cstr(a)).collect();
    let env = vcompare_spec::guest::entrypoint_env(&process.env, |k| std::env::var(k).ok());
    let envp: Vec<CString> = env.iter().map(|a| cstr(a)).collect();
    let (argv_p, envp_p) = (ptrs(&argv), ptrs(&envp));
    let cwd = cstr(if process.cwd.is_empty() {
        "/"
    } else {
        &process.cwd
    });
    let devnull = cstr("/dev/null");
    let error = |pid, stage, errno| SpawnError {
        pid,
        stage,
        errno,
        command: command.clone(),
        uid: process.uid,
        gid: process.gid,
        cwd: process.cwd.clone(),
    };
    let (report_r, report_w) = crate::sys::pipe().map_err(|e| error(None, None, e))?;
    let (uid, gid) = (process.uid, process.gid);
    // SAFETY: after fork the child only calls async-signal-safe functions (no allocation, no
    // locks) on data prepared above, then execs or _exits; this is sound even if the caller
    // has threads (the host-side unit tests).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(error(None, None, crate::sys::errno()));
    }
    if pid == 0 {
        // SAFETY: see above; in the child, never returns.
        unsafe {
            child(
                stdio,
                &devnull,
                (uid, gid),
                &cwd,
                (&path, &argv_p, &envp_p),
                report_w.as_raw_fd(),
            )
        }
    }
    drop(report_w);
    let mut buf = [0u8; 8];
    let n = crate::sys::read_full(report_r.as_raw_fd(), &mut buf);
    if n == buf.len() {
        let stage = i32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
        let errno = i32::from_le_bytes(buf[4..].try_into().expect("4 bytes"));
        return Err(error(Some(pid), Some(Stage::from_i32(stage)), errno));
    }
    Ok(pid)
}

/// The child's failure path: `(stage, errno)` to the error pipe, then the exit code the
/// parent's [`SpawnError::exit_code`] predicts (the entrypoint's status relies on it).
fn fail(report: RawFd, stage: Stage) -> ! {
    let errno = crate::sys::errno();
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&(stage as i32).to_le_bytes());
    msg[4..].copy_from_slice(&errno.to_le_bytes());
    let code = if stage == Stage::Exec && errno == libc::ENOENT {
        127
    } else {
        126
    };
    // SAFETY: write of a local buffer, then _exit: both async-signal-safe.
    unsafe {
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(code)
    }
}

/// The forked child: stdio, credentials, directory, execve; on a failure it writes
/// `(stage, errno)` to `report` and exits with the matching code.
///
/// # Safety
/// Only in the child of `fork`; the pointers must stay valid (they point into the parent's
/// copy of the memory, which the child shares until exec).
unsafe fn child(
    stdio: ChildStdio,
    devnull: &CString,
    (uid, gid): (u32, u32),
    cwd: &CString,
    (path, argv, envp): (&CString, &[*const libc::c_char], &[*const libc::c_char]),
    report: RawFd,
) -> ! {
    // SAFETY: the whole block makes async-signal-safe calls on valid local data and fds.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        for sig in 1..65 {
            libc::sigaction(sig, &dfl, std::ptr::null_mut());
        }
        libc::setsid();
        let ok = match stdio {
            ChildStdio::Console => {
                let fd = libc::open(devnull.as_ptr(), libc::O_RDONLY);
                if fd >= 0 {
                    libc::dup2(fd, 0);
                    libc::close(fd);
                }
                true
            }
            ChildStdio::Fds {
                stdin,
                stdout,
                stderr,
                ctty,
            } => {
                let stdin = match stdin {
                    Some(fd) => fd,
                    None => libc::open(devnull.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC),
                };
                // The sources are ≥ 3 (0..2 are the console) and CLOEXEC, so dup2 cannot
                // clobber one before it is used, and exec closes them.
                stdin >= 0
                    && libc::dup2(stdin, 0) == 0
                    && libc::dup2(stdout, 1) == 1
                    && libc::dup2(stderr, 2) == 2
                    && (!ctty || libc::ioctl(0, libc::TIOCSCTTY, 0) == 0)
            }
        };
        if !ok {
            fail(report, Stage::Stdio);
        }
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            fail(report, Stage::User);
        }
        if libc::chdir(cwd.as_ptr()) != 0 {
            fail(report, Stage::Cwd);
        }
        libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
    }
    fail(report, Stage::Exec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::tests::process as spec;

    fn wait(pid: libc::pid_t) -> ExitStatus {
        let mut st = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
        exit_status(st)
    }

    #[test]
    fn path_resolution_is_execvp_like() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let sh = resolve("sh", &env);
        assert!(sh == "/bin/sh" || sh == "/usr/bin/sh", "{sh}");
        assert_eq!(resolve("./x", &env), "./x");
        assert_eq!(resolve("no-such-cmd-here", &env), "no-such-cmd-here");
        // Without PATH in the env the default PATH applies.
        assert!(resolve("sh", &[]).ends_with("/sh"));
    }

    #[test]
    fn a_started_process_reports_its_status() {
        let pid = spawn(&spec(&["sh", "-c", "exit 7"]), ChildStdio::Console).unwrap();
        assert_eq!(wait(pid), ExitStatus { code: 7, signal: 0 });
        let pid = spawn(&spec(&["sh", "-c", "kill -9 $$"]), ChildStdio::Console).unwrap();
        assert_eq!(wait(pid), ExitStatus { code: 0, signal: 9 });
    }

    #[test]
    fn failures_are_reported_before_start_with_the_containers_codes() {
        let e = spawn(&spec(&["no-such-cmd-here"]), ChildStdio::Console).unwrap_err();
        assert_eq!(
            (e.stage, e.errno, e.exit_code()),
            (Some(Stage::Exec), libc::ENOENT, 127)
        );
        assert_eq!(wait(e.pid.unwrap()).code, 127);
        assert_eq!(
            e.failure().message,
            "command \"no-such-cmd-here\" was not found in the image's PATH; check the command \
             name or use an absolute path"
        );
        let e = spawn(&spec(&["/no/such"]), ChildStdio::Console).unwrap_err();
        assert!(e.failure().message.contains("does not exist in the image"));
        wait(e.pid.unwrap());
        let e = spawn(&spec(&["/etc/passwd"]), ChildStdio::Console).unwrap_err();
        assert_eq!((e.errno, e.exit_code()), (libc::EACCES, 126));
        assert_eq!(
            e.failure().message,
            "command \"/etc/passwd\" cannot be executed (EACCES: Permission denied); check its \
             permissions and that it is a binary for this CPU"
        );
        assert_eq!(wait(e.pid.unwrap()).code, 126);
        let mut bad_cwd = spec(&["sh"]);
        bad_cwd.cwd = "/no/such/dir".into();
        let e = spawn(&bad_cwd, ChildStdio::Console).unwrap_err();
        assert_eq!((e.stage, e.exit_code()), (Some(Stage::Cwd), 126));
        assert!(e.failure().message.contains("/no/such/dir"));
        wait(e.pid.unwrap());
    }
}
