//! The one parent ↔ child protocol, used by both [`crate::run`] and [`crate::exec::exec`].
//!
//! Two channels connect the host side with the process it cloned:
//! * the **report pipe** (child → parent, close-on-exec): fixed-size [`Report`] records, either
//!   a phase timestamp or the [`Step`] that failed with its errno. EOF without a failure record
//!   means `execve` succeeded (the pipe closed on exec).
//! * the **setup socket** (`SOCK_SEQPACKET`, both ways): fds passed with `SCM_RIGHTS` (the
//!   overlay root to the child, the pty master back) and one-byte "go" messages. EOF instead of
//!   a message means the other side gave up.
//!
//! Everything the child calls here is allocation-free (see [`crate::sys`]): records are encoded
//! into a stack array, fds are borrowed.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::Error;
use crate::mounts::MountPlan;
use crate::phases::Phase;
use crate::process::ProcessPlan;
use crate::sys::{self, Errno, SysResult};

/// Declares [`Step`] with each variant's description next to it, plus the table used to decode
/// it, so the wire numbers, the names and the descriptions cannot drift apart.
macro_rules! steps {
    ($($(#[$doc:meta])* $name:ident => $desc:literal,)*) => {
        /// A setup step of the child (of `run`) or of the helper (of `exec`), for error reports.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Step {
            $($(#[$doc])* $name,)*
        }

        impl Step {
            /// Every step, in wire order (the wire number is the index).
            pub(crate) const ALL: &'static [Step] = &[$(Step::$name,)*];

            /// What the step does, as it appears in "container setup step "…" failed".
            pub(crate) fn description(self) -> &'static str {
                match self {
                    $(Step::$name => $desc,)*
                }
            }
        }
    };
}

steps! {
    /// run: receive the overlay fd over the setup socket.
    Go => "receive the root filesystem from the parent",
    /// run: unshare the cgroup namespace once in the cgroup.
    CgroupNs => "create the cgroup namespace",
    /// run: sethostname.
    Hostname => "set the hostname",
    /// run: MS_PRIVATE on every mount.
    Private => "make all mounts private",
    /// run: attach the overlay on the mountpoint and open it.
    AttachRoot => "attach the overlay root filesystem",
    /// run: bring up `lo`.
    Loopback => "bring up the loopback interface",
    /// run: one op of the mount plan (the description comes from the plan).
    Mount => "mount",
    /// run: pivot_root.
    Pivot => "pivot_root into the container's root filesystem",
    /// run: one masked or read-only path (the description comes from the plan).
    Mask => "mask",
    /// run: stdin from /dev/null.
    Stdin => "connect stdin to /dev/null",
    /// run: enter the working directory.
    Cwd => "enter the working directory",
    /// run: become the container user.
    User => "switch to the container user",
    /// run and exec: execve the command.
    Exec => "execute the command",
    /// run: fork the command under the `--init` reaper.
    InitFork => "fork the --init reaper's child",
    /// run: open the pty in the container's devpts.
    Pty => "create the pseudo-terminal (-t)",
    /// run: v1 self-attach to the cgroup.
    CgroupJoin => "join the container's cgroup",
    /// run: drop capabilities.
    Caps => "drop capabilities to the default set",
    /// exec: setns into the container's namespaces.
    ExecJoinNs => "join the container's namespaces",
    /// exec: fork the command inside the namespaces.
    ExecFork => "fork inside the container",
    /// exec: enter the working directory.
    ExecCwd => "enter the working directory",
    /// exec: drop capabilities and become the container user.
    ExecUser => "switch to the container user",
    /// exec: v1 self-attach to the container's cgroup.
    ExecCgroup => "join the container's cgroup",
    /// exec: open the pty in the container's devpts.
    ExecPty => "create the pseudo-terminal (-t)",
}

impl Step {
    /// The wire number.
    fn to_wire(self) -> u32 {
        self as u32
    }

    /// Decodes a wire number.
    fn from_wire(n: u32) -> Option<Step> {
        Step::ALL.get(n as usize).copied()
    }

    /// How to fix a failure of this step with `errno`.
    pub(crate) fn hint(self, errno: Errno) -> &'static str {
        match self {
            Step::User => "the -u uid/gid must be inside the user namespace's mapped range (0-65535)",
            Step::Cwd => "check the -w directory: it must be a directory path inside the image",
            Step::Mount if errno == libc::ENOENT => "a component of the target path is a symlink pointing to a missing directory inside the image; use a real directory path",
            Step::Mount if errno == libc::ENOTDIR => "a -v target conflicts with a file of another type in the image; pick another guest path",
            Step::Mount => "the kernel refused the mount; check -v paths, or run with --userns host to rule out user-namespace restrictions",
            // Overlayfs checks the layers with the container root's host uid (100000 by
            // default), which is "other" to every directory above the data root: a 0700
            // parent stops it.
            Step::AttachRoot if errno == libc::EACCES => "container root (an unprivileged host uid) cannot reach the image layers: every directory above the data root must be searchable by others (chmod o+x DIR), or use --root elsewhere or --userns host",
            Step::ExecJoinNs | Step::ExecCgroup => "the container may have just exited; check vcompare ps",
            Step::ExecCwd => "check the -w directory",
            Step::ExecPty => "the container needs /dev/ptmx and /dev/pts from its own devpts",
            Step::ExecUser => "the -u uid/gid must be mapped in the container",
            Step::ExecFork => "the container's pids limit may be reached",
            Step::Go
            | Step::CgroupNs
            | Step::Hostname
            | Step::Private
            | Step::AttachRoot
            | Step::Loopback
            | Step::Pivot
            | Step::Mask
            | Step::Stdin
            | Step::Exec
            | Step::InitFork
            | Step::Pty
            | Step::CgroupJoin
            | Step::Caps => "this is a host kernel restriction; check dmesg and that user namespaces and overlayfs are enabled",
        }
    }
}

/// The phases the child timestamps itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildPhase {
    /// v1: the child moved itself into its cgroup.
    Cgroup,
    /// Mounts and `pivot_root` done.
    Mounts,
}

impl From<ChildPhase> for Phase {
    fn from(p: ChildPhase) -> Phase {
        match p {
            ChildPhase::Cgroup => Phase::Cgroup,
            ChildPhase::Mounts => Phase::Mounts,
        }
    }
}

/// One record of the report pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// The child reached `phase` at this `CLOCK_MONOTONIC` time.
    Phase(ChildPhase, u64),
    /// `step` failed with `errno`; `index` says which mount op / mask, or which sub-step.
    Failed {
        /// The failed step.
        step: Step,
        /// Sub-step index (mount op, mask, or a call within the step).
        index: u32,
        /// The kernel's error.
        errno: Errno,
    },
}

const KIND_FAILED: u32 = 1;
const KIND_PHASE_MOUNTS: u32 = 2;
const KIND_PHASE_CGROUP: u32 = 3;

impl Report {
    /// Size of one encoded record: kind, step, index, errno (u32 each), value (u64).
    pub(crate) const SIZE: usize = 24;

    /// Encodes into a stack array (allocation-free).
    pub(crate) fn encode(&self) -> [u8; Self::SIZE] {
        let (kind, step, index, errno, value) = match *self {
            Report::Failed { step, index, errno } => (KIND_FAILED, step.to_wire(), index, errno, 0),
            Report::Phase(ChildPhase::Mounts, t) => (KIND_PHASE_MOUNTS, 0, 0, 0, t),
            Report::Phase(ChildPhase::Cgroup, t) => (KIND_PHASE_CGROUP, 0, 0, 0, t),
        };
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&kind.to_ne_bytes());
        b[4..8].copy_from_slice(&step.to_ne_bytes());
        b[8..12].copy_from_slice(&index.to_ne_bytes());
        b[12..16].copy_from_slice(&errno.to_ne_bytes());
        b[16..24].copy_from_slice(&value.to_ne_bytes());
        b
    }

    /// Decodes a record; `None` for an unknown kind or step.
    pub(crate) fn decode(b: &[u8; Self::SIZE]) -> Option<Report> {
        let u32_at = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let value = u64::from_ne_bytes(b[16..24].try_into().ok()?);
        match u32_at(0) {
            KIND_FAILED => Some(Report::Failed {
                step: Step::from_wire(u32_at(4))?,
                index: u32_at(8),
                errno: u32_at(12) as i32,
            }),
            KIND_PHASE_MOUNTS => Some(Report::Phase(ChildPhase::Mounts, value)),
            KIND_PHASE_CGROUP => Some(Report::Phase(ChildPhase::Cgroup, value)),
            _ => None,
        }
    }
}

/// Child side of the report pipe (owns the write end; dropping it closes the pipe).
pub(crate) struct Reporter(OwnedFd);

impl Reporter {
    /// Wraps the write end of the report pipe.
    pub(crate) fn new(fd: OwnedFd) -> Reporter {
        Reporter(fd)
    }

    /// Sends a phase timestamp taken now.
    pub(crate) fn phase(&self, phase: ChildPhase) {
        let _ = sys::write_all(
            self.0.as_fd(),
            &Report::Phase(phase, sys::monotonic_ns()).encode(),
        );
    }

    /// Reports `step` as failed and leaves the child with status 127.
    pub(crate) fn fail(&self, step: Step, index: u32, errno: Errno) -> ! {
        let r = Report::Failed { step, index, errno };
        let _ = sys::write_all(self.0.as_fd(), &r.encode());
        sys::exit_now(127)
    }

    /// `Err(errno)` → [`Reporter::fail`] with index 0.
    pub(crate) fn check<T>(&self, step: Step, r: SysResult<T>) -> T {
        self.check_at(step, 0, r)
    }

    /// `Err(errno)` → [`Reporter::fail`] with `index`.
    pub(crate) fn check_at<T>(&self, step: Step, index: u32, r: SysResult<T>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => self.fail(step, index, e),
        }
    }
}

/// Parent side of the report pipe: reads records until EOF, handing phase marks to `on_phase`;
/// returns the failure record if the child sent one. A read error counts as EOF (the child is
/// gone either way); unknown records are skipped.
pub(crate) fn read_reports(
    fd: BorrowedFd<'_>,
    mut on_phase: impl FnMut(Phase, u64),
) -> Result<(), FailedStep> {
    loop {
        let mut buf = [0u8; Report::SIZE];
        let mut got = 0;
        while got < buf.len() {
            match sys::read(fd, &mut buf[got..]) {
                Ok(0) | Err(_) => return Ok(()),
                Ok(n) => got += n,
            }
        }
        match Report::decode(&buf) {
            Some(Report::Phase(p, t)) => on_phase(p.into(), t),
            Some(Report::Failed { step, index, errno }) => {
                return Err(FailedStep { step, index, errno })
            }
            None => {}
        }
    }
}

/// A failure reported by the child, turned into the crate's [`Error`] by [`FailedStep::into_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FailedStep {
    /// The failed step.
    pub(crate) step: Step,
    /// Sub-step index.
    pub(crate) index: u32,
    /// The kernel's error.
    pub(crate) errno: Errno,
}

impl FailedStep {
    /// The typed error for the user: a missing or non-executable command gets its own variant;
    /// mount and mask steps are named after the plan's op (`mounts`, when there is one).
    pub(crate) fn into_error(self, mounts: Option<&MountPlan>, process: &ProcessPlan) -> Error {
        let errno = nix::errno::Errno::from_raw(self.errno);
        if self.step == Step::Exec {
            return if self.errno == libc::ENOENT {
                Error::CommandNotFound(process.command.clone())
            } else {
                Error::CommandNotExecutable {
                    cmd: process.command.clone(),
                    errno,
                }
            };
        }
        let step = match (self.step, mounts) {
            (Step::Mount, Some(m)) => m.op_desc(self.index as usize),
            (Step::Mask, Some(m)) => m.mask_desc(self.index as usize),
            (s, _) => s.description().to_string(),
        };
        Error::Setup {
            step,
            errno,
            hint: self.step.hint(self.errno).into(),
        }
    }
}

/// The setup socket, seen from either end.
pub(crate) struct SetupSocket(OwnedFd);

impl SetupSocket {
    /// Wraps one end of a [`sys::seqpacket_pair`].
    pub(crate) fn new(fd: OwnedFd) -> SetupSocket {
        SetupSocket(fd)
    }

    /// Passes `fd` to the other end.
    pub(crate) fn send_fd(&self, fd: BorrowedFd<'_>) -> SysResult<()> {
        sys::send_fd(self.0.as_fd(), fd)
    }

    /// Receives an fd from the other end (`EPIPE` if it closed instead).
    pub(crate) fn recv_fd(&self) -> SysResult<OwnedFd> {
        sys::recv_fd(self.0.as_fd())
    }

    /// Sends the one-byte "go on" message.
    pub(crate) fn release(&self) -> SysResult<()> {
        sys::write_all(self.0.as_fd(), &[1])
    }

    /// Waits for the "go on" message; `false` if the other end closed instead.
    pub(crate) fn wait_release(&self) -> bool {
        let mut b = [0u8; 1];
        matches!(sys::read(self.0.as_fd(), &mut b), Ok(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_and_has_a_description_and_hint() {
        for (i, s) in Step::ALL.iter().enumerate() {
            assert_eq!(s.to_wire() as usize, i);
            assert_eq!(Step::from_wire(s.to_wire()), Some(*s));
            assert!(!s.description().is_empty());
            assert!(!s.hint(0).is_empty());
            let r = Report::Failed {
                step: *s,
                index: 7,
                errno: libc::EPERM,
            };
            assert_eq!(Report::decode(&r.encode()), Some(r));
        }
        assert_eq!(Step::from_wire(Step::ALL.len() as u32), None);
    }

    #[test]
    fn phases_round_trip_and_unknown_records_are_skipped() {
        for p in [ChildPhase::Cgroup, ChildPhase::Mounts] {
            let r = Report::Phase(p, 123_456_789_012);
            assert_eq!(Report::decode(&r.encode()), Some(r));
        }
        assert_eq!(Report::decode(&[0xff; Report::SIZE]), None);
    }

    #[test]
    fn reports_cross_a_pipe_until_the_first_failure() {
        let (r, w) = sys::pipe_cloexec().unwrap();
        let rep = Reporter::new(w);
        rep.phase(ChildPhase::Cgroup);
        rep.phase(ChildPhase::Mounts);
        let fail = Report::Failed {
            step: Step::Pivot,
            index: 1,
            errno: libc::EINVAL,
        };
        sys::write_all(rep.0.as_fd(), &fail.encode()).unwrap();
        drop(rep);
        let mut seen = Vec::new();
        let got = read_reports(r.as_fd(), |p, _| seen.push(p));
        assert_eq!(seen, [Phase::Cgroup, Phase::Mounts]);
        let f = got.unwrap_err();
        assert_eq!((f.step, f.index, f.errno), (Step::Pivot, 1, libc::EINVAL));
    }
}
