//! The container's process: argv, environment, working directory, user and group, the
//! `execve`, and the optional `--init` reaper that stays PID 1, reaps orphans and forwards
//! signals to the real command.
//!
//! As for mounts, the parent prepares a [`ProcessPlan`] (C strings, pointer arrays, the list of
//! `PATH` candidates for the command) and the child only executes it.

use std::ffi::CString;
use std::os::fd::RawFd;

use crate::error::{Error, Result};
use crate::mounts::Target;
use crate::sys::{self, SysResult};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed to start the command, prepared before clone.
#[derive(Debug)]
pub struct ProcessPlan {
    /// The command as given (for messages).
    pub command: String,
    argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// Paths to try with `execve`, in `PATH` order (one entry if argv[0] contains a `/`).
    candidates: Vec<CString>,
    /// Working directory inside the root (created if missing, like Docker's WORKDIR).
    pub cwd: Option<Target>,
    /// User inside the container.
    pub uid: u32,
    /// Group inside the container.
    pub gid: u32,
}

fn cstr(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidConfig(format!("{what} {s:?} contains a NUL byte")))
}

impl ProcessPlan {
    /// Validates and converts the process settings.
    pub fn new(args: &[String], env: &[String], cwd: &str, uid: u32, gid: u32) -> Result<ProcessPlan> {
        let Some(cmd) = args.first() else {
            return Err(Error::InvalidConfig("the command is empty (the image has no entrypoint or cmd and none was given)".into()));
        };
        if cmd.is_empty() {
            return Err(Error::InvalidConfig("the command name is empty".into()));
        }
        let argv = args.iter().map(|a| cstr(a, "argument")).collect::<Result<Vec<_>>>()?;
        let envp = env.iter().map(|e| cstr(e, "environment entry")).collect::<Result<Vec<_>>>()?;
        let path = env.iter().rev().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
        let candidates = if cmd.contains('/') {
            vec![cstr(cmd, "command")?]
        } else {
            path.split(':')
                .map(|d| if d.is_empty() { "." } else { d })
                .map(|d| cstr(&format!("{}/{}", d.trim_end_matches('/'), cmd), "command"))
                .collect::<Result<Vec<_>>>()?
        };
        let cwd = if cwd.trim_matches('/').is_empty() { None } else { Some(Target::new(cwd, false)?) };
        let mut p = ProcessPlan { command: cmd.clone(), argv, argv_ptrs: vec![], envp, envp_ptrs: vec![], candidates, cwd, uid, gid };
        p.argv_ptrs = p.argv.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        p.envp_ptrs = p.envp.iter().map(|c| c.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        Ok(p)
    }

    /// Child side: switches to the configured group and user (supplementary groups cleared).
    pub fn switch_user(&self) -> SysResult<()> {
        // SAFETY: plain credential syscalls.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0 && sys::last_errno() != libc::EPERM {
                return Err(sys::last_errno());
            }
            if libc::setresgid(self.gid, self.gid, self.gid) != 0 {
                return Err(sys::last_errno());
            }
            if libc::setresuid(self.uid, self.uid, self.uid) != 0 {
                return Err(sys::last_errno());
            }
        }
        Ok(())
    }

    /// Child side, after `pivot_root`: enters the working directory, creating it if needed;
    /// resolution stays inside the root even through `..` or symlinks.
    pub fn enter_cwd(&self) -> SysResult<()> {
        let Some(t) = &self.cwd else {
            // SAFETY: constant path.
            return if unsafe { libc::chdir(c"/".as_ptr()) } == 0 { Ok(()) } else { Err(sys::last_errno()) };
        };
        // SAFETY: constant path.
        let root = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        if root < 0 {
            return Err(sys::last_errno());
        }
        let r = t.resolve(root);
        sys::close(root);
        let fd = r?;
        // SAFETY: fd is an O_PATH directory fd, which fchdir accepts.
        let rc = unsafe { libc::fchdir(fd) };
        let e = sys::last_errno();
        sys::close(fd);
        if rc != 0 {
            return Err(e);
        }
        Ok(())
    }

    /// Child side: `execve` over the `PATH` candidates. Returns only on failure, with the most
    /// telling errno (`ENOENT` if the command exists nowhere).
    pub fn exec(&self) -> sys::Errno {
        let mut err = libc::ENOENT;
        for c in &self.candidates {
            // SAFETY: NULL-terminated pointer arrays into CStrings owned by self.
            unsafe { libc::execve(c.as_ptr(), self.argv_ptrs.as_ptr(), self.envp_ptrs.as_ptr()) };
            let e = sys::last_errno();
            if e != libc::ENOENT && e != libc::ENOTDIR {
                err = e;
            }
        }
        err
    }
}

/// Blocks every signal in the calling thread; returns the previous mask.
pub fn block_all_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on stack values.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, &mut old);
        old
    }
}

/// Restores a signal mask saved by [`block_all_signals`].
pub fn restore_signals(old: &libc::sigset_t) {
    // SAFETY: valid sigset.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// The `--init` reaper, run as PID 1 with every signal blocked: waits for signals, forwards
/// each one (except SIGCHLD) to `main`, reaps every child (orphans are reparented to PID 1) and
/// exits with `main`'s status once it is gone (128+N when `main` died of signal N). Never returns.
pub fn reaper(main: libc::pid_t) -> ! {
    // SAFETY: async-signal-safe calls only; all values on the stack.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        loop {
            let sig = libc::sigwaitinfo(&all, std::ptr::null_mut());
            if sig < 0 {
                continue;
            }
            if sig != libc::SIGCHLD {
                libc::kill(main, sig);
                continue;
            }
            loop {
                let mut status = 0;
                let pid = libc::waitpid(-1, &mut status, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == main {
                    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) };
                    libc::_exit(code);
                }
            }
        }
    }
}

/// Makes `fd` the child's stdin (used to give a non-interactive container /dev/null).
pub fn redirect_stdin(fd: RawFd) -> SysResult<()> {
    // SAFETY: dup2 on fds we own.
    if unsafe { libc::dup2(fd, 0) } < 0 {
        return Err(sys::last_errno());
    }
    Ok(())
}
