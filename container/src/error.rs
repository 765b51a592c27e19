//! The runtime's typed errors. Each message is one plain sentence that names the cause and the
//! fix, because the person reading it is a student at a terminal, not a kernel developer.

use std::path::PathBuf;

/// Everything that can go wrong while creating, running, joining or inspecting a container.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work (empty command, relative path, bad limit…).
    #[error("invalid container configuration: {0}; fix the flag or image config that produced it")]
    InvalidConfig(String),

    /// Plumbing the container's network namespace (veth, address, route) failed; the message
    /// comes from the network layer and names the cause.
    #[error("connecting the container to its network: {0}")]
    Network(String),

    /// A `-v` host path does not exist.
    #[error(
        "volume source {0} does not exist on the host; create it or fix the -v HOST:GUEST path"
    )]
    VolumeSourceMissing(PathBuf),

    /// The image's root filesystem directory is missing.
    #[error(
        "image root filesystem {0} does not exist (the image was removed); import the image again"
    )]
    RootfsMissing(PathBuf),

    /// A host-side file operation failed (instance dir, cgroup file, /proc entry…).
    #[error("{what} {path}: {source}; check that vcompare runs as root and the path is usable")]
    Io {
        /// What was being done, e.g. "creating the overlay upper dir".
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A system call in the parent (host side) failed.
    #[error("{what} failed: {errno}; {hint}")]
    Sys {
        /// Which operation, e.g. "clone with new namespaces".
        what: String,
        /// The kernel's error.
        errno: nix::errno::Errno,
        /// How to fix it.
        hint: &'static str,
    },

    /// A setup step inside the new namespaces failed before the command could start.
    #[error("container setup step \"{step}\" failed: {errno}; {hint}")]
    Setup {
        /// The step, e.g. "mount proc on /proc".
        step: String,
        /// The kernel's error.
        errno: nix::errno::Errno,
        /// How to fix it.
        hint: String,
    },

    /// The command was not found in the image (exit code 127 by convention). The message
    /// depends on how it was named: a path (anything with a `/`) is used as is, a bare name is
    /// searched in `PATH`, so each gets its own cause and fix.
    #[error("{}", command_not_found(.0))]
    CommandNotFound(String),

    /// The command exists but cannot be executed (exit code 126 by convention).
    #[error("command {cmd:?} cannot be executed ({errno}); check its permissions and that it is a binary for this CPU")]
    CommandNotExecutable {
        /// The command.
        cmd: String,
        /// The kernel's error from execve.
        errno: nix::errno::Errno,
    },

    /// The cgroup hierarchy could not be used.
    #[error("cgroup {path}: {msg}; check that the cgroup controllers (memory, cpu, pids) are mounted and writable")]
    Cgroup {
        /// The cgroup directory or file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },

    /// The target of `exec`/`inspect` is not a running container.
    #[error(
        "process {0} is not running; start the container again or pick a running one (vcompare ps)"
    )]
    NotRunning(i32),
}

/// The message of [`Error::CommandNotFound`]. A command with a `/` is not searched in `PATH`
/// (as in a shell), so "not in PATH" would send the reader to the wrong place: say the path
/// itself is missing, and that it is resolved inside the image, not on the host.
fn command_not_found(cmd: &str) -> String {
    if cmd.contains('/') {
        format!(
            "command path {cmd:?} does not exist in the image; check the path, which is looked \
             up in the image's root filesystem, not on the host"
        )
    } else {
        format!(
            "command {cmd:?} was not found in the image's PATH; check the command name or use an \
             absolute path"
        )
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(
        what: impl Into<String>,
        errno: nix::errno::Errno,
        hint: &'static str,
    ) -> Self {
        Error::Sys {
            what: what.into(),
            errno,
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message is one sentence that names a fix (a `;` separates cause and fix).
    #[test]
    fn messages_name_cause_and_fix() {
        let errs = [
            Error::InvalidConfig("x".into()),
            Error::VolumeSourceMissing("/a".into()),
            Error::RootfsMissing("/r".into()),
            Error::CommandNotFound("c".into()),
            Error::CommandNotExecutable {
                cmd: "c".into(),
                errno: nix::errno::Errno::EACCES,
            },
            Error::NotRunning(5),
            Error::Cgroup {
                path: "/sys/fs/cgroup/x".into(),
                msg: "m".into(),
            },
        ];
        for e in errs {
            let m = e.to_string();
            assert!(m.contains(';'), "{m}");
            assert!(!m.contains('\n'), "{m}");
        }
    }

    /// A bare name is searched in PATH and the message says so; a name with a `/` is used as
    /// is, so its message names the missing path instead of PATH.
    #[test]
    fn command_not_found_tells_a_path_from_a_name() {
        let name = Error::CommandNotFound("no-such-cmd".into()).to_string();
        assert_eq!(
            name,
            "command \"no-such-cmd\" was not found in the image's PATH; check the command name \
             or use an absolute path"
        );
        for path in ["/no/such", "./run.sh", "bin/tool"] {
            let m = Error::CommandNotFound(path.into()).to_string();
            assert!(m.contains(&format!("{path:?}")), "{m}");
            assert!(m.contains("does not exist in the image"), "{m}");
            assert!(!m.contains("PATH"), "{m}");
            assert_eq!(m.matches(';').count(), 1, "{m}");
            assert!(!m.contains('\n'), "{m}");
        }
    }
}
