//! crun (C, Red Hat's OCI runtime) as a container peer: `crun run -b BUNDLE ID`.
//!
//! On a hybrid cgroup host (v1 controllers + an almost empty cgroup2 at
//! /sys/fs/cgroup/unified) crun refuses to start ("cgroups in hybrid mode not supported").
//! The child is therefore put, between fork and exec, into a private mount namespace without
//! that mount (three syscalls). That step is the harness's, not crun's: the child times it
//! itself and reports the duration through a pipe ([`Workaround`]), and the startup suite
//! subtracts it, so crun's figure holds exactly what every other subject's holds.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Whether crun is on PATH.
pub fn available() -> bool {
    super::which("crun").is_some()
}

/// `crun --version` first line.
pub fn version() -> Option<String> {
    super::version("crun", &["--version"])
}

/// Whether this host mounts a cgroup2 hierarchy at /sys/fs/cgroup/unified (hybrid mode).
pub fn hybrid_cgroups() -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/cgroup/unified"))
        })
        .unwrap_or(false)
}

/// The hybrid-cgroup workaround's own duration, measured in the child between fork and exec
/// (CLOCK_MONOTONIC before `unshare` and after `umount2`) and handed back through a pipe.
pub struct Workaround {
    read: OwnedFd,
    _write: OwnedFd,
}

impl Workaround {
    /// The workaround's duration in ns, once the child has exec'd (or exited); `None` if the
    /// child never got that far.
    pub fn duration_ns(&self) -> Option<u64> {
        let mut b = [0u8; 8];
        // SAFETY: reading into a local 8-byte buffer from our own non-blocking pipe.
        let n = unsafe { libc::read(self.read.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
        (n == 8).then(|| u64::from_ne_bytes(b))
    }
}

/// The command that runs `bundle` once as container `id`, and, on a hybrid cgroup host, the
/// handle that reports how long the workaround took (to subtract from the wall time).
pub fn command(bundle: &Path, id: &str) -> (Command, Option<Workaround>) {
    let mut c = Command::new("crun");
    c.arg("run")
        .arg("-b")
        .arg(bundle)
        .arg(id)
        .stdin(std::process::Stdio::null());
    if !hybrid_cgroups() {
        return (c, None);
    }
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills two fds on success; both are owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return (c, None);
    }
    // SAFETY: fresh fds from pipe2, owned by nobody else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wfd = write.as_raw_fd();
    // SAFETY: only async-signal-safe calls (clock_gettime, unshare, mount, umount2, write)
    // run between fork and exec; the pipe's write end closes at exec (O_CLOEXEC).
    unsafe {
        c.pre_exec(move || {
            let t0 = crate::harness::monotonic_ns();
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let root = b"/\0";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr().cast(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let unified = b"/sys/fs/cgroup/unified\0";
            libc::umount2(unified.as_ptr().cast(), libc::MNT_DETACH);
            let d = crate::harness::monotonic_ns()
                .saturating_sub(t0)
                .to_ne_bytes();
            libc::write(wfd, d.as_ptr().cast(), 8);
            Ok(())
        });
    }
    (
        c,
        Some(Workaround {
            read,
            _write: write,
        }),
    )
}
