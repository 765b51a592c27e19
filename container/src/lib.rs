//! vcompare's namespace container runtime: the "shared kernel" half of the comparison.
//!
//! Entry points: [`run`], [`exec::exec`], [`inspect::inspect`], [`remove`].
//!
//! **File layout** — one place for each concept:
//! * `lib.rs` — this overview, the re-exports and [`remove`].
//! * `run.rs` — the `run` verb, host side: [`ContainerConfig`], [`ExitStatus`], orchestration.
//! * `exec.rs` — the `exec` verb, host side: joining a running container.
//! * `child.rs` — the child side of both verbs, from `clone` to `execve` (allocation-free).
//! * `channel.rs` — the one parent ↔ child protocol: `Step` (with description and hint),
//!   report records, the setup socket (fd passing, release).
//! * `parent.rs` — host-side guards shared by the verbs (kill+reap child, remove cgroup).
//! * `signals.rs` — forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT to the child.
//! * `watchdog.rs` — the `--timeout` pidfd watchdog.
//! * `namespaces.rs` — which namespaces, created by one `clone`; joining them for `exec`.
//! * `user_ns.rs` — id maps: root inside = unprivileged uid outside.
//! * `rootfs.rs` — overlayfs (idmapped lower, detached mount) + `pivot_root`.
//! * `mounts.rs` — /proc, /sys, /dev, volumes, masked paths, as a `MountPlan`.
//! * `cgroups/mod.rs` — limits, OOM detection, cleanup; `v1.rs` and `v2.rs` per interface;
//!   `tests.rs` its unit tests.
//! * `network.rs` — only `lo`.
//! * `process.rs` — argv/env/user/cwd, capabilities, `execve`, the `--init` reaper.
//! * `tty.rs` — `-t`: the pty in the container's devpts and the relay to our stdio.
//! * `inspect.rs` — host view vs container view.
//! * `phases.rs` — startup timestamps and the [`Observer`].
//! * `error.rs` — the typed [`Error`].
//! * `sys/` — the only code that calls `libc`: `mount.rs`, `fd.rs`, `proc.rs`, `signal.rs`,
//!   `tty.rs` wrappers taking `BorrowedFd` and returning `OwnedFd`.
//!
//! **Threading rules.** [`run`] and [`exec::exec`] fork with a raw `clone`/`clone3`; the child
//! never allocates and uses raw credential syscalls (glibc's `setuid` family would wait forever
//! for threads that do not exist in the child), so they are safe to call from multi-threaded
//! programs such as the test harness. Signal forwarding (SIGINT/SIGTERM/SIGHUP/SIGQUIT) installs
//! process-wide handlers for the duration of the call: with several concurrent calls in one
//! process a signal reaches the most recently started container.
//!
//! **Start path** (phases in brackets): cgroup dirs + limits → one `clone` with every namespace
//! flag (on v2 straight into the cgroup with `clone3`) → id maps (namespaces phase) → idmapped lower +
//! detached overlay handed over a socket (rootfs phase); meanwhile the child joins its v1 cgroups
//! itself (cgroup phase) → child: hostname, private mounts, attach root, `lo` up, /proc /sys /dev
//! volumes, `pivot_root`, masks (mounts phase) → cgroup namespace, pty, cwd, capabilities, user →
//! `execve` (exec phase).

#![warn(missing_docs)]

pub mod cgroups;
mod channel;
mod child;
pub mod error;
pub mod exec;
pub mod inspect;
pub mod mounts;
pub mod namespaces;
pub mod network;
mod parent;
pub mod phases;
pub mod process;
pub mod rootfs;
pub mod run;
mod signals;
pub mod sys;
pub mod tty;
pub mod user_ns;
mod watchdog;

pub use cgroups::Resources;
pub use error::{Error, Result};
pub use mounts::Volume;
pub use phases::{NoObserver, Observer, Phase};
pub use run::{run, ContainerConfig, ExitStatus};
pub use user_ns::IdMap;
pub use vcompare_spec::ProcessSpec;

/// Frees everything an instance owns on the host: any cgroup left by a crashed run (processes
/// in it are killed) and the copy-on-write layer. Idempotent; call it for `rm`.
pub fn remove(instance_dir: &std::path::Path) -> Result<()> {
    let record = instance_dir.join(parent::CGROUP_RECORD);
    if let Ok(text) = std::fs::read_to_string(&record) {
        for dir in text.lines().filter(|l| !l.is_empty()) {
            let dir = std::path::PathBuf::from(dir);
            if !dir.exists() {
                continue;
            }
            let cg = cgroups::Cgroup::adopt(dir);
            cg.destroy()?;
        }
        let _ = std::fs::remove_file(&record);
    }
    rootfs::remove_layer(instance_dir)
}
