//! virtio-net (virtio 1.2 spec, 5.1) on a TAP: the VM's one network interface (`--network`).
//!
//! Two queues, receive (0) and transmit (1), no control queue, no mergeable RX buffers. Every
//! frame carries the 12-byte `virtio_net_hdr_v1` in front, on both sides: the TAP is set to
//! the same header size, so TX is one `writev` of the guest's chain (header + data) and RX one
//! `readv` of a frame straight into the guest's posted buffers.
//!
//! Who runs what: TX and "the guest posted RX buffers" are handled on the notifying vCPU's
//! thread (like block and 9p); frames arriving on the TAP are noticed by the VMM's main loop,
//! which polls this device's [`VirtioDevice::host_event_fd`](super::VirtioDevice) (an epoll fd
//! watching the TAP edge-triggered) and calls back into it under the transport's lock. When
//! the guest has no RX buffer, the frame stays queued in the TAP (the host kernel's queue,
//! which drops with its own counter when full) until the guest posts buffers and notifies;
//! edge-triggering means a stalled device costs no wake-ups beyond one per arriving frame.
//!
//! Offloads: `CSUM`/`HOST_TSO4` (the guest may send partial checksums and 64 KiB TCP
//! segments; the TAP accepts them as they are) and `GUEST_CSUM`/`GUEST_TSO4` (the host may
//! deliver such frames to the guest: enabled with `TUNSETOFFLOAD` at activation, only for what
//! the guest acked). Module split: `device.rs` (negotiation, config space, activation),
//! `rx.rs`, `tx.rs`, `tap.rs` (the fd and its ioctls), `iov.rs` (chains as iovecs).

mod device;
mod iov;
mod rx;
pub mod tap;
mod tx;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_net as vn;

pub use tap::Tap;

/// virtio device id of a network card.
pub const DEVICE_ID: u32 = 1;
/// Feature: the guest may send frames with a partial checksum (the host completes it).
pub const VIRTIO_NET_F_CSUM: u64 = 1 << vn::VIRTIO_NET_F_CSUM;
/// Feature: the guest accepts frames with a partial or already-validated checksum.
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << vn::VIRTIO_NET_F_GUEST_CSUM;
/// Feature: the config space holds the MAC address (so the guest does not invent one and
/// the host's ARP/bridge state matches what the CLI allocated).
pub const VIRTIO_NET_F_MAC: u64 = 1 << vn::VIRTIO_NET_F_MAC;
/// Feature: the guest accepts TCPv4 segments up to 64 KiB (host GRO/TSO reaches it whole).
pub const VIRTIO_NET_F_GUEST_TSO4: u64 = 1 << vn::VIRTIO_NET_F_GUEST_TSO4;
/// Feature: the guest may send TCPv4 segments up to 64 KiB (segmented by the host, if at all).
pub const VIRTIO_NET_F_HOST_TSO4: u64 = 1 << vn::VIRTIO_NET_F_HOST_TSO4;
/// Every feature offered (plus VERSION_1, which the transport adds). UFO is left out: Linux
/// guests no longer send UFO, and the TAP ignores `TUN_F_UFO`, so it would buy nothing.
pub const OFFERED_FEATURES: u64 = VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_CSUM
    | VIRTIO_NET_F_GUEST_CSUM
    | VIRTIO_NET_F_GUEST_TSO4
    | VIRTIO_NET_F_HOST_TSO4;
/// Length of `virtio_net_hdr_v1` (virtio 1.x always has `num_buffers`): on every frame, in
/// the guest's buffers and on the TAP alike.
pub const VNET_HDR_LEN: usize = 12;
/// Index of the receive queue.
pub const RX_QUEUE: usize = 0;
/// Index of the transmit queue.
pub const TX_QUEUE: usize = 1;
/// Descriptors per queue. Without mergeable buffers a 64 KiB RX buffer is a chain of ~19
/// descriptors, so 256 keeps a dozen of them posted.
pub const QUEUE_SIZE: u16 = 256;

/// Why the network device cannot be created or activated.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The job's TAP fd is not open in this process (the CLI must pass it across exec).
    #[error("network: TAP fd {fd} is not open in the VMM process: {source}")]
    TapFd {
        /// The fd number from the job.
        fd: RawFd,
        /// The OS error.
        source: std::io::Error,
    },
    /// The fd is not a TAP with the framing the device expects.
    #[error("network: fd {fd} is not a TAP opened with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR ({why})")]
    NotTap {
        /// The fd number from the job.
        fd: RawFd,
        /// What did not match.
        why: String,
    },
    /// A TAP or epoll setup call failed.
    #[error("network: {what} on the TAP failed: {source}")]
    Ioctl {
        /// The call.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Counters of the device's traffic and of every frame it did not pass on, so nothing is
/// lost silently. Shared (atomics) so they can be read while the VM runs; logged when the
/// device is dropped.
#[derive(Debug, Default)]
pub struct NetMetrics {
    /// Frames delivered to the guest.
    pub rx_frames: AtomicU64,
    /// Bytes delivered to the guest (without the vnet header).
    pub rx_bytes: AtomicU64,
    /// Times RX found no buffer posted (any frames wait in the TAP for the guest's notify).
    pub rx_no_buffer: AtomicU64,
    /// Frames read from the TAP but dropped: larger than the guest's buffer.
    pub rx_dropped_too_big: AtomicU64,
    /// RX chains the guest posted that cannot hold a frame (returned empty).
    pub rx_bad_chain: AtomicU64,
    /// TAP read errors other than "nothing to read".
    pub rx_errors: AtomicU64,
    /// Frames the guest sent that reached the TAP.
    pub tx_frames: AtomicU64,
    /// Bytes sent (without the vnet header).
    pub tx_bytes: AtomicU64,
    /// Frames the TAP refused for lack of room (EAGAIN): dropped, as a congested link would.
    pub tx_dropped_full: AtomicU64,
    /// TX chains that are malformed (returned unsent).
    pub tx_bad_chain: AtomicU64,
    /// TAP write errors (e.g. EIO: the host side of the TAP is down; EINVAL: bad header).
    pub tx_errors: AtomicU64,
}

impl NetMetrics {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Frames lost or refused, either direction (a number worth a warning if not zero).
    pub fn losses(&self) -> u64 {
        [
            &self.rx_dropped_too_big,
            &self.rx_bad_chain,
            &self.rx_errors,
            &self.tx_dropped_full,
            &self.tx_bad_chain,
            &self.tx_errors,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }
}

/// The virtio-net device: a TAP, the MAC, the negotiated state.
pub struct Net {
    tap: Tap,
    /// Epoll fd watching the TAP edge-triggered: the main loop's wake-up for arriving frames.
    epoll: OwnedFd,
    mac: [u8; 6],
    max_sizes: [u16; 2],
    /// Features the driver acked, valid while `active`.
    acked: u64,
    /// DRIVER_OK seen and the TAP configured for it.
    active: bool,
    metrics: Arc<NetMetrics>,
}

impl Net {
    /// The device on the job's TAP `tap_fd` (duplicated: the job's fd stays the caller's)
    /// with MAC `mac`.
    pub fn new(tap_fd: RawFd, mac: [u8; 6]) -> Result<Net, NetError> {
        Net::with_tap(Tap::from_job_fd(tap_fd)?, mac)
    }

    /// The device on an already checked [`Tap`].
    pub fn with_tap(tap: Tap, mac: [u8; 6]) -> Result<Net, NetError> {
        let os_err = |what| NetError::Ioctl {
            what,
            source: std::io::Error::last_os_error(),
        };
        // SAFETY: epoll_create1 returns a new fd (or -1) and touches no memory of ours.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(os_err("epoll_create1"));
        }
        // SAFETY: `raw` is the fresh epoll fd, owned by nobody else.
        let epoll = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: registers the TAP fd we own with the epoll fd we own; `ev` is only read.
        let rc = unsafe {
            libc::epoll_ctl(
                epoll.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                tap.as_raw_fd(),
                &mut ev,
            )
        };
        if rc < 0 {
            return Err(os_err("epoll_ctl"));
        }
        Ok(Net {
            tap,
            epoll,
            mac,
            max_sizes: [QUEUE_SIZE; 2],
            acked: 0,
            active: false,
            metrics: Arc::new(NetMetrics::default()),
        })
    }

    /// The device's counters (shared: they stay readable after the device moved into the
    /// transport).
    pub fn metrics(&self) -> Arc<NetMetrics> {
        self.metrics.clone()
    }

    /// Consumes the epoll readiness (edge-triggered: one wait empties it), so the main loop
    /// sleeps until the next frame arrives.
    fn drain_epoll(&self) {
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `ev` has room for the 4 events asked for; timeout 0 never blocks.
        unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), ev.as_mut_ptr(), 4, 0) };
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let m = &self.metrics;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let losses = m.losses();
        if losses > 0 {
            tracing::warn!(?m, "virtio-net lost {losses} frames");
        } else {
            tracing::debug!(
                rx_frames = l(&m.rx_frames),
                tx_frames = l(&m.tx_frames),
                rx_no_buffer = l(&m.rx_no_buffer),
                "virtio-net counters"
            );
        }
    }
}

/// The `TUNSETOFFLOAD` flags for the features the guest acked: what the host may deliver to
/// it. TSO needs checksum offload (a segment's checksum is always partial), both in virtio's
/// feature rules and in the TAP's, so TSO4 without GUEST_CSUM is left off.
pub fn tun_offload_flags(acked: u64) -> libc::c_uint {
    let mut f = 0;
    if acked & VIRTIO_NET_F_GUEST_CSUM != 0 {
        f |= libc::TUN_F_CSUM;
        if acked & VIRTIO_NET_F_GUEST_TSO4 != 0 {
            f |= libc::TUN_F_TSO4;
        }
    }
    f
}

#[cfg(test)]
mod tests;
