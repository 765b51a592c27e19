//! Networking: by default the container gets a new network namespace whose only interface is
//! the loopback `lo`, brought up here (a fresh namespace starts with `lo` down); with
//! `--network host` no namespace is created and the host's stack is shared.

use crate::sys::{self, SysResult};

/// Child side: sets `IFF_UP` on `lo` in the current network namespace (two `ioctl`s on a
/// throw-away datagram socket: cheaper than netlink, and allocation-free).
pub fn loopback_up() -> SysResult<()> {
    sys::loopback_up()
}
