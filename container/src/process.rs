//! The container's process: argv, environment, working directory, user and group, the
//! `execve`, and the optional `--init` reaper that stays PID 1, reaps orphans and forwards
//! signals to the real command.
//!
//! As for mounts, the parent prepares a [`ProcessPlan`] (C strings, pointer arrays, the list of
//! `PATH` candidates for the command) and the child only executes it.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};

use vcompare_spec::ProcessSpec;

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
    pub fn new(spec: &ProcessSpec) -> Result<ProcessPlan> {
        let ProcessSpec {
            args,
            env,
            cwd,
            uid,
            gid,
        } = spec;
        let (uid, gid) = (*uid, *gid);
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
            return sys::chdir(c"/");
        };
        let root = sys::open_dir_path(c"/")?;
        let dir = t.resolve(root.as_fd())?;
        sys::fchdir(dir.as_fd())
    }

    /// Child side: `execve` over the `PATH` candidates. Returns only on failure, with the most
    /// telling errno (`ENOENT` if the command exists nowhere).
    pub fn exec(&self) -> sys::Errno {
        let mut err = libc::ENOENT;
        for c in &self.candidates {
            // SAFETY: NULL-terminated pointer arrays into CStrings owned by self.
            let e = unsafe { sys::execve(c, &self.argv_ptrs, &self.envp_ptrs) };
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
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        match sys::cap_bound_drop(cap) {
            Ok(()) => {}
            // EINVAL: beyond the kernel's last capability; we are done.
            Err(libc::EINVAL) => break,
            Err(e) => return Err(e),
        }
    }
    // Inheritable stays empty (the lesson of CVE-2022-24769: a non-empty inheritable set lets
    // file capabilities of an executable regain dropped privileges).
    sys::capset(keep)
}

/// The `--init` reaper, run as PID 1 with every signal blocked: waits for signals, forwards
/// each one (except SIGCHLD) to `main`, reaps every child (orphans are reparented to PID 1) and
/// exits with `main`'s status once it is gone (128+N when `main` died of signal N). Never returns.
/// Also the helper of `exec`, which relays the same way. Allocation-free.
pub fn reaper(main: libc::pid_t) -> ! {
    // Show up as "vcompare-init" in the container's `ps`, not as a copy of vcompare.
    sys::set_name(c"vcompare-init");
    loop {
        let sig = sys::wait_any_signal();
        if sig != libc::SIGCHLD {
            sys::kill(main, sig);
            continue;
        }
        while let Some((pid, how)) = sys::reap_any_nohang() {
            if pid == main {
                sys::exit_now(how.shell_code());
            }
        }
    }
}

/// Makes `fd` the child's stdin (used to give a non-interactive container /dev/null).
pub fn redirect_stdin(fd: BorrowedFd<'_>) -> SysResult<()> {
    sys::dup_onto(fd, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str], env: &[&str], cwd: &str) -> Result<ProcessPlan> {
        ProcessPlan::new(&ProcessSpec {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|e| e.to_string()).collect(),
            cwd: cwd.into(),
            uid: 0,
            gid: 0,
        })
    }

    #[test]
    fn command_lookup_follows_the_container_path() {
        let p = plan(&["ls", "-l"], &["PATH=/usr/bin:/bin"], "/").unwrap();
        let c: Vec<&str> = p.candidates.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(c, ["/usr/bin/ls", "/bin/ls"]);
        let p = plan(&["./run.sh"], &[], "/app").unwrap();
        assert_eq!(p.candidates.len(), 1);
        assert_eq!(p.cwd.as_ref().unwrap().display, "/app");
        let p = plan(&["sh"], &[], "/").unwrap();
        assert_eq!(p.candidates.len(), DEFAULT_PATH.split(':').count());
        assert!(p.cwd.is_none());
    }

    #[test]
    fn empty_or_nul_commands_are_refused() {
        assert!(matches!(plan(&[], &[], "/"), Err(Error::InvalidConfig(_))));
        assert!(matches!(
            plan(&["a\0b"], &[], "/"),
            Err(Error::InvalidConfig(_))
        ));
    }
}
