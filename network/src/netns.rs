//! Network namespaces as file descriptors. A namespace is entered per *thread*, so work that
//! must happen inside one (creating a netlink socket there, opening a TAP) runs on a
//! short-lived helper thread: the caller's thread, and every other thread of the process, keep
//! the namespace they had.

use std::fs::File;
use std::os::fd::{BorrowedFd, OwnedFd};

use nix::sched::{setns, unshare, CloneFlags};

use crate::{Error, Result};

/// Runs `f` inside `netns` without moving the calling thread there: a helper thread enters the
/// namespace, runs `f` and exits, so no thread is ever left in the wrong namespace. Sockets
/// and devices `f` creates stay bound to `netns` after it returns.
pub fn in_netns<T: Send>(netns: BorrowedFd<'_>, f: impl FnOnce() -> T + Send) -> Result<T> {
    let joined = std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(netns, CloneFlags::CLONE_NEWNET).map_err(|e| {
                    Error::sys(
                        "entering a network namespace (setns CLONE_NEWNET); this needs root \
                         (CAP_SYS_ADMIN) and a network-namespace file descriptor",
                        e.into(),
                    )
                })?;
                Ok(f())
            })
            .join()
    });
    joined.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The network namespace of process `pid`, as a descriptor that keeps it alive and can be
/// handed to [`in_netns`] or to netlink (`IFLA_NET_NS_FD`).
pub fn open_netns_of(pid: i32) -> Result<OwnedFd> {
    open_ns(
        &format!("/proc/{pid}/ns/net"),
        "opening the network namespace of a process (does it still run?)",
    )
}

/// The calling thread's own network namespace, so it can be named to the kernel or re-entered
/// from another thread.
pub fn current_netns() -> Result<OwnedFd> {
    open_ns(
        "/proc/thread-self/ns/net",
        "opening this thread's network namespace (is /proc mounted?)",
    )
}

/// A fresh, empty network namespace that lives as long as the returned descriptor (or anything
/// moved into it). Created on a helper thread, so the caller stays where it is.
pub fn create_netns() -> Result<OwnedFd> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
                    Error::sys(
                        "creating a network namespace (unshare CLONE_NEWNET); this needs root",
                        e.into(),
                    )
                })?;
                current_netns()
            })
            .join()
    })
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Moves the calling thread into a new network namespace with `lo` up, so a test can create
/// and delete links freely without ever touching the machine's interfaces.
#[doc(hidden)]
pub fn private_netns_for_test() -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| {
        Error::sys("creating a private network namespace for a test (unshare CLONE_NEWNET); run the tests as root", e.into())
    })?;
    let mut nl = crate::netlink::Netlink::open()?;
    let lo = nl
        .link_by_name("lo")?
        .ok_or_else(|| Error::Invalid("a new network namespace has no `lo` link".into()))?;
    nl.set_up(lo.index)
}

fn open_ns(path: &str, what: &str) -> Result<OwnedFd> {
    // std opens with O_CLOEXEC, so the namespace never leaks into a child we exec.
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(what, path, e))
}
