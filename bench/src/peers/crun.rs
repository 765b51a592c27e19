//! crun (C, Red Hat's OCI runtime) as a container peer: `crun run -b BUNDLE ID`.
//!
//! On a hybrid cgroup host (v1 controllers + an almost empty cgroup2 at
//! /sys/fs/cgroup/unified) crun refuses to start ("cgroups in hybrid mode not supported").
//! The child is therefore put, between fork and exec, into a private mount namespace without
//! that mount — three syscalls, well under a millisecond, and inside the measured time.

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

/// The command that runs `bundle` once as container `id`.
pub fn command(bundle: &Path, id: &str) -> Command {
    let mut c = Command::new("crun");
    c.arg("run")
        .arg("-b")
        .arg(bundle)
        .arg(id)
        .stdin(std::process::Stdio::null());
    if hybrid_cgroups() {
        // SAFETY: only async-signal-safe syscalls run between fork and exec.
        unsafe {
            c.pre_exec(|| {
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
                Ok(())
            });
        }
    }
    c
}
