//! vcompare's namespace container runtime: the "shared kernel" half of the comparison.
//!
//! One module per kernel concept, as a reader of the lecture would look for them:
//! [`namespaces`] (which ones, created by one `clone`), [`user_ns`] (root inside = unprivileged
//! uid outside), [`rootfs`] (overlayfs + `pivot_root`), [`mounts`] (/proc, /sys, /dev, volumes,
//! masked paths), [`cgroups`] (limits, OOM detection; v1 and v2), [`network`] (only `lo`),
//! [`process`] (argv/env/user/exec, `--init` reaper), [`exec`] (joining a running container),
//! [`inspect`] (host view vs container view) and [`phases`] (startup timestamps).
//!
//! Entry points: [`run`], [`exec::exec`], [`inspect::inspect`], [`remove`].
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
pub mod error;
pub mod exec;
pub mod inspect;
pub mod mounts;
pub mod namespaces;
pub mod network;
pub mod phases;
pub mod process;
pub mod rootfs;
pub mod runtime;
pub mod sys;
pub mod user_ns;

pub use cgroups::Resources;
pub use error::{Error, Result};
pub use mounts::Volume;
pub use phases::{NoObserver, Observer, Phase};
pub use runtime::{run, ContainerConfig, ExitStatus};
pub use user_ns::IdMap;

/// Frees everything an instance owns on the host: any cgroup left by a crashed run (processes
/// in it are killed) and the copy-on-write layer. Idempotent; call it for `rm`.
pub fn remove(instance_dir: &std::path::Path) -> Result<()> {
    let record = instance_dir.join(runtime::CGROUP_RECORD);
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
