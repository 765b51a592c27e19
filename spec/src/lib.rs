//! The data every part of vcompare agrees on, declared once.
//!
//! - [`process`]: what to run (argv, environment, working directory, user), embedded by the
//!   CLI's run spec, the container runtime's run and exec configurations and the guest spec.
//! - [`clock`]: the one clock of every phase timestamp.
//! - [`phase`]: the names of the startup phase marks of both modes.
//! - [`agent`]: the host ↔ guest-agent protocol over virtio-vsock (`exec`, `run -i/-t`, `stop`).
//! - [`volume`]: a host directory shown inside an instance (`-v`).
//! - [`guest`]: the VMM ↔ guest-init protocol (the spec area on the root disk, what the init is
//!   told to do, the boot-timer port and phase numbers, the console marker and signal byte).
//!
//! It depends on `serde`, `serde_json` and `libc` alone, because the guest init is a small static binary.

pub mod agent;
pub mod clock;
pub mod files;
pub mod guest;
pub mod phase;
pub mod process;
pub mod volume;

pub use guest::{GuestNetwork, GuestShare, GuestSpec};
pub use phase::StartupPhase;
pub use process::ProcessSpec;
pub use volume::Volume;
