//! Host-side network plumbing shared by both execution modes. A network is a Linux bridge
//! (`vcbr…`) with a /24 from [`ipam`]; an instance joins it by its last hop only: a veth pair
//! whose peer lives in the container's network namespace, or a TAP served by the VMM's
//! virtio-net device. Published ports (`-p`) and the isolation between networks are nftables
//! rules in a table of our own ([`firewall`]); user-defined networks get a small DNS
//! responder on the gateway address ([`dns`]) so instances find each other by name.
//!
//! Everything created here carries a tag (link alias, rule comment, IPAM owner) naming the
//! instance or network it belongs to, so a later command can remove what a crashed one left
//! behind, and only that.

pub mod attach;
pub mod definition;
pub mod dns;
pub mod error;
pub mod firewall;
pub mod ipam;
pub mod lock;
pub mod netlink;
pub mod netns;
pub mod ports;
pub mod sysctl;
pub mod tap;

pub use attach::{Attachment, LinkKind, Owner};
pub use definition::{NetworkDef, Networks, DEFAULT_NETWORK};
pub use error::{Error, Result};
