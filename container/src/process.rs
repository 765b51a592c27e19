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
    pub fn new(
        args: &[String],
        env: &[String],
        cwd: &str,
        uid: u32,
        gid: u32,
    ) -> Result<ProcessPlan> {
        let Some(cmd) = args.first() else {
            return Err(Error::InvalidConfig(
                "the command is empty (the image has no entrypoint or cmd and none was given)"
                    .into(),
            ));
        };
        if cmd.is_empty() {
            return Err(Error::InvalidConfig("the command name is empty".into()));
        }
        let argv = args
            .iter()
            .map(|a| cstr(a, "argument"))
            .collect::<Result<Vec<_>>>()?;
        let envp = env
            .iter()
            .map(|e| cstr(e, "environment entry"))
            .collect::<Result<Vec<_>>>()?;
        let path = env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        let candidates = if cmd.contains('/') {
            vec![cstr(cmd, "command")?]
        } else {
            path.split(':')
                .map(|d| if d.is_empty() { "." } else { d })
                .map(|d| cstr(&format!("{}/{}", d.trim_end_matches('/'), cmd), "command"))
                .collect::<Result<Vec<_>>>()?
        };
        let cwd = if cwd.trim_matches('/').is_empty() {
            None
        } else {
            Some(Target::new(cwd, false)?)
        };
        let mut p = ProcessPlan {
            command: cmd.clone(),
            argv,
            argv_ptrs: vec![],
            envp,
            envp_ptrs: vec![],
            candidates,
            cwd,
            uid,
            gid,
        };
        p.argv_ptrs = p
            .argv
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        p.envp_ptrs = p
            .envp
            .iter()
            .map(|c| c.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Ok(p)
    }

    /// Child side: switches to the configured group and user (supplementary groups cleared).
    pub fn switch_user(&self) -> SysResult<()> {
        match sys::set_ids(self.uid, self.gid, true) {
            // setgroups is refused when the user namespace was set up with "deny"; then the
            // group list is already empty, so only the ids need to change.
            Err(libc::EPERM) => sys::set_ids(self.uid, self.gid, false),
            r => r,
        }
    }

    /// Child side, after `pivot_root`: enters the working directory, creating it if needed;
    /// resolution stays inside the root even through `..` or symlinks.
    pub fn enter_cwd(&self) -> SysResult<()> {
        let Some(t) = &self.cwd else {
            // SAFETY: constant path.
            return if unsafe { libc::chdir(c"/".as_ptr()) } == 0 {
                Ok(())
            } else {
                Err(sys::last_errno())
            };
        };
        // SAFETY: constant path.
        let root = unsafe {
            libc::open(
                c"/".as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
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

/// The capabilities a container process keeps: Docker's default set. Everything else
/// (CAP_SYS_ADMIN, CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_NET_ADMIN…) is dropped from the bounding,
/// effective, permitted and inheritable sets before `execve`. This matters most with
/// `--userns host`, where container root is real host root: without it a `mount` or a module
/// load would escape the container.
pub const DEFAULT_CAPS: [u32; 14] = [
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// Child side: restricts the capability sets to [`DEFAULT_CAPS`]. Must run after the mounts
/// (they need CAP_SYS_ADMIN) and before switching user.
pub fn drop_capabilities() -> SysResult<()> {
    let mut keep: u64 = 0;
    for c in DEFAULT_CAPS {
        keep |= 1 << c;
    }
    // SAFETY: prctl/capset with stack values; no allocation.
    unsafe {
        for cap in 0..64u32 {
            if keep & (1 << cap) != 0 {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                // EINVAL: beyond the kernel's last capability; we are done.
                if sys::last_errno() == libc::EINVAL {
                    break;
                }
                return Err(sys::last_errno());
            }
        }
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const VERSION_3: u32 = 0x2008_0522;
        let hdr = Header {
            version: VERSION_3,
            pid: 0,
        };
        let lo = keep as u32;
        let hi = (keep >> 32) as u32;
        // Inheritable stays empty (the lesson of CVE-2022-24769: a non-empty inheritable set
        // lets file capabilities of an executable regain dropped privileges).
        let data = [
            Data {
                effective: lo,
                permitted: lo,
                inheritable: 0,
            },
            Data {
                effective: hi,
                permitted: hi,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) != 0 {
            return Err(sys::last_errno());
        }
    }
    Ok(())
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
        // Show up as "vcompare-init" in the container's `ps`, not as a copy of vcompare.
        libc::prctl(libc::PR_SET_NAME, c"vcompare-init".as_ptr());
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
                    let code = if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        128 + libc::WTERMSIG(status)
                    };
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

/// `-t`, child side: opens a pseudo-terminal pair on the container's **own** devpts instance
/// (`/dev/ptmx` after `pivot_root`), makes the slave the controlling terminal of a new session
/// and stdin/stdout/stderr, and returns the master fd for the parent to relay. The slave is
/// opened with `TIOCGPTPEER` (no path formatting, allocation-free). Inside the container `tty`
/// therefore names a /dev/pts entry that really exists there.
pub fn setup_pty_child() -> SysResult<RawFd> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    // SAFETY: plain fd syscalls with constant arguments.
    unsafe {
        let master = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if master < 0 {
            return Err(sys::last_errno());
        }
        let fail = |m: RawFd| {
            let e = sys::last_errno();
            libc::close(m);
            Err(e)
        };
        let mut unlock: libc::c_int = 0;
        if libc::ioctl(master, libc::TIOCSPTLCK, &mut unlock) != 0 {
            return fail(master);
        }
        let slave = libc::ioctl(master, TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
        if slave < 0 {
            return fail(master);
        }
        if libc::setsid() < 0 || libc::ioctl(slave, libc::TIOCSCTTY, 0) != 0 {
            return fail(master);
        }
        for fd in 0..3 {
            if libc::dup2(slave, fd) < 0 {
                return fail(master);
            }
        }
        if slave > 2 {
            libc::close(slave);
        }
        Ok(master)
    }
}

/// `-t`, parent side: relays between our stdin/stdout and the container's pty master until the
/// container side closes. Puts our terminal (if stdin is one) in raw mode and copies its window
/// size; both are restored/stopped by dropping the returned handle after the container exits.
pub struct PtyRelay {
    saved: Option<libc::termios>,
    out: Option<std::thread::JoinHandle<()>>,
    old_winch: libc::sigaction,
}

/// The pty master the SIGWINCH handler resizes (-1 = none).
static WINCH_MASTER: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// Copies our terminal's size to the container's pty; `ioctl` is async-signal-safe.
extern "C" fn on_winch(_: libc::c_int) {
    let m = WINCH_MASTER.load(std::sync::atomic::Ordering::SeqCst);
    if m >= 0 {
        // SAFETY: ioctls with a stack winsize.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(m, libc::TIOCSWINSZ, &ws);
            }
        }
    }
}

impl PtyRelay {
    /// Starts the relay threads for `master` (takes ownership).
    pub fn start(master: std::os::fd::OwnedFd) -> PtyRelay {
        use std::os::fd::AsRawFd;
        let m = master.as_raw_fd();
        // SAFETY: termios/ioctl on fds we own or stdin; zeroed structs are valid out-buffers.
        let saved = unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(m, libc::TIOCSWINSZ, &ws);
            }
            let mut t: libc::termios = std::mem::zeroed();
            if libc::isatty(0) == 1 && libc::tcgetattr(0, &mut t) == 0 {
                let mut raw = t;
                libc::cfmakeraw(&mut raw);
                libc::tcsetattr(0, libc::TCSANOW, &raw);
                Some(t)
            } else {
                None
            }
        };
        // Window resizes follow the user's terminal (SIGWINCH), until the relay is dropped.
        WINCH_MASTER.store(m, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: installing a handler that only uses async-signal-safe calls.
        let old_winch = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_winch as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGWINCH, &sa, &mut old);
            old
        };
        let master = std::sync::Arc::new(master);
        let m_in = master.clone();
        // stdin -> master: detached; it ends when stdin does or the process exits.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reading into a stack buffer.
                let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 || sys::write_all(m_in.as_raw_fd(), &buf[..n as usize]).is_err() {
                    break;
                }
            }
        });
        let out = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // SAFETY: reading into a stack buffer.
                let n =
                    unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n < 0 && sys::last_errno() == libc::EINTR {
                    continue;
                }
                // EIO = every slave fd is closed: the container is gone.
                if n <= 0 || sys::write_all(1, &buf[..n as usize]).is_err() {
                    break;
                }
            }
        });
        PtyRelay {
            saved,
            out: Some(out),
            old_winch,
        }
    }
}

impl Drop for PtyRelay {
    fn drop(&mut self) {
        WINCH_MASTER.store(-1, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: restoring the saved SIGWINCH disposition.
        unsafe { libc::sigaction(libc::SIGWINCH, &self.old_winch, std::ptr::null_mut()) };
        if let Some(h) = self.out.take() {
            let _ = h.join();
        }
        if let Some(t) = self.saved {
            // SAFETY: restoring the saved terminal mode of stdin.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lookup_follows_the_container_path() {
        let p = ProcessPlan::new(
            &["ls".into(), "-l".into()],
            &["PATH=/usr/bin:/bin".into()],
            "/",
            0,
            0,
        )
        .unwrap();
        let c: Vec<&str> = p.candidates.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(c, ["/usr/bin/ls", "/bin/ls"]);
        let p = ProcessPlan::new(&["./run.sh".into()], &[], "/app", 0, 0).unwrap();
        assert_eq!(p.candidates.len(), 1);
        assert_eq!(p.cwd.as_ref().unwrap().display, "/app");
        let p = ProcessPlan::new(&["sh".into()], &[], "/", 0, 0).unwrap();
        assert_eq!(p.candidates.len(), DEFAULT_PATH.split(':').count());
        assert!(p.cwd.is_none());
    }

    #[test]
    fn empty_or_nul_commands_are_refused() {
        assert!(matches!(
            ProcessPlan::new(&[], &[], "/", 0, 0),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            ProcessPlan::new(&["a\0b".into()], &[], "/", 0, 0),
            Err(Error::InvalidConfig(_))
        ));
    }
}
