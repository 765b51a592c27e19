//! virtio-vsock (virtio 1.2 spec, 5.10) served in user space, Firecracker's "hybrid vsock":
//! the guest agent's channel to the host CLI, on hosts without `/dev/vhost-vsock`.
//!
//! Host → guest: a host process connects to the Unix socket at `uds_path`, writes
//! `CONNECT <port>\n`, and once the guest accepted reads `OK <host port>\n`; from then on
//! the stream is the connection ([`connect`] does this for the CLI). Guest → host: a guest
//! connection to host (cid 2) port P reaches a listener at `<uds_path>_P`.
//!
//! Three queues: RX (0, packets for the guest), TX (1, packets from it), event (2, unused:
//! it only carries transport resets after migration). TX is served on the notifying vCPU's
//! thread; nothing there blocks (streams are non-blocking, guest data beyond a full host
//! socket waits in a bounded per-connection buffer). Packets for the guest are written when
//! the guest posts RX buffers, or by the main loop, which polls the muxer's epoll fd
//! ([`VirtioDevice::host_event_fd`]) for host streams and for the TX path's "packets ready"
//! eventfd. Module split: `packet.rs` (header and checks, on the `virtio-vsock` crate's
//! `VsockPacket`), `chain.rs` (guest buffers in layouts that crate does not take),
//! `connection.rs` (state machine, credit), `muxer.rs` (host side), `uds.rs` (socket
//! paths), `client.rs` (the CLI's handshake).

mod chain;
mod client;
mod connection;
mod muxer;
pub mod packet;
mod uds;

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use virtio_queue::{Queue, QueueOwnedT, QueueT};
use virtio_vsock::packet::VsockPacket;
use vm_memory::Bytes;

use self::chain::GuestBuf;
use self::muxer::Muxer;
use self::packet::{PacketFault, HDR_LEN};
use super::{VirtioDevice, VIRTIO_F_VERSION_1};
use crate::memory::GuestMem;

pub use client::{connect, VsockConnectError};
pub use connection::{CONNECT_TIMEOUT, CONN_BUF, SHUTDOWN_TIMEOUT};
pub use muxer::CONNECT_LINE_TIMEOUT;
pub use uds::MAX_SUN_PATH;

/// virtio device id of a socket device.
pub const DEVICE_ID: u32 = 19;
/// Index of the receive queue (host → guest).
pub const RX_QUEUE: usize = 0;
/// Index of the transmit queue (guest → host).
pub const TX_QUEUE: usize = 1;
/// Index of the event queue.
pub const EVENT_QUEUE: usize = 2;
/// Descriptors per queue (Linux posts one 4 KiB buffer per RX packet).
pub const QUEUE_SIZE: u16 = 256;

/// Why the vsock device cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The guest cid is reserved (0–2) or does not fit the 32 bits guests use.
    #[error("vsock: guest cid {0} is invalid (it must be between 3 and 4294967294)")]
    BadCid(u64),
    /// The listening socket cannot be created.
    #[error("vsock: cannot listen on {}: {source}", .path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An epoll, eventfd or timerfd call failed.
    #[error("vsock: {what} failed: {source}")]
    Setup {
        /// The call.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Counters of the device, so nothing it refuses or drops goes unnoticed. Shared (atomics)
/// so they stay readable after the device moved into its transport.
#[derive(Debug, Default)]
pub struct VsockMetrics {
    /// Valid packets from the guest.
    pub tx_packets: AtomicU64,
    /// Packets delivered to the guest.
    pub rx_packets: AtomicU64,
    /// TX chains unusable or shorter than a header (dropped).
    pub tx_bad_chain: AtomicU64,
    /// TX packets with a foreign source or destination cid (dropped).
    pub tx_bad_cid: AtomicU64,
    /// TX packets of a type other than STREAM (answered with RST).
    pub tx_bad_type: AtomicU64,
    /// TX packets with an unknown op (answered with RST).
    pub tx_unknown_op: AtomicU64,
    /// TX packets whose `len` exceeds their chain or 64 KiB (answered with RST).
    pub tx_bad_len: AtomicU64,
    /// RX chains the guest posted that cannot hold a header (returned empty).
    pub rx_bad_chain: AtomicU64,
    /// Times packets waited because the guest had no RX buffer.
    pub rx_no_buffer: AtomicU64,
    /// Control packets dropped because the guest left too many unanswered.
    pub ctl_dropped: AtomicU64,
    /// Host `CONNECT`s forwarded to the guest.
    pub host_connects: AtomicU64,
    /// Host streams closed for a malformed or missing `CONNECT` line.
    pub host_connects_bad: AtomicU64,
    /// Host streams closed because the connection limits were reached.
    pub host_connects_refused: AtomicU64,
    /// Guest connections that reached a host listener.
    pub guest_connects: AtomicU64,
    /// Guest connections refused (no listener at `<uds_path>_<port>`).
    pub guest_connects_refused: AtomicU64,
}

impl VsockMetrics {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Malformed packets from the guest, all kinds.
    pub fn malformed(&self) -> u64 {
        [
            &self.tx_bad_chain,
            &self.tx_bad_cid,
            &self.tx_bad_type,
            &self.tx_unknown_op,
            &self.tx_bad_len,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    fn count_fault(&self, f: PacketFault) {
        Self::add(match f {
            PacketFault::BadChain => &self.tx_bad_chain,
            PacketFault::BadCid => &self.tx_bad_cid,
            PacketFault::BadType => &self.tx_bad_type,
            PacketFault::UnknownOp => &self.tx_unknown_op,
            PacketFault::BadLen => &self.tx_bad_len,
        });
    }
}

/// The virtio-vsock device.
pub struct Vsock {
    guest_cid: u64,
    muxer: Muxer,
    max_sizes: [u16; 3],
    /// DRIVER_OK seen since the last reset.
    active: bool,
    metrics: Arc<VsockMetrics>,
}

impl Vsock {
    /// The device for guest cid `guest_cid`, listening at `uds_path` (a stale socket file
    /// there is replaced; the file is removed when the device is dropped).
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Vsock, VsockError> {
        if !(3..u64::from(u32::MAX)).contains(&guest_cid) {
            return Err(VsockError::BadCid(guest_cid));
        }
        let metrics = Arc::new(VsockMetrics::default());
        let muxer = Muxer::new(guest_cid, uds_path.to_path_buf(), metrics.clone())?;
        Ok(Vsock {
            guest_cid,
            muxer,
            max_sizes: [QUEUE_SIZE; 3],
            active: false,
            metrics,
        })
    }

    /// The device's counters.
    pub fn metrics(&self) -> Arc<VsockMetrics> {
        self.metrics.clone()
    }

    /// Number of live connections (for tests and diagnostics).
    pub fn connections(&self) -> usize {
        self.muxer.connections()
    }

    /// Serves every TX chain; true if any was used.
    fn tx(&mut self, queue: &mut Queue, mem: &GuestMem) -> bool {
        let (muxer, metrics, cid) = (&mut self.muxer, &*self.metrics, self.guest_cid);
        let used = super::serve_chains(queue, mem, |chain| {
            match packet::read_guest_packet(chain, mem, cid) {
                Ok(pkt) => {
                    VsockMetrics::add(&metrics.tx_packets);
                    muxer.on_guest_packet(&pkt);
                }
                Err((fault, hdr)) => {
                    metrics.count_fault(fault);
                    tracing::debug!(?fault, ?hdr, "vsock: malformed packet from the guest");
                    if let (true, Some(h)) = (fault.answer_rst(), hdr) {
                        muxer.refuse(&h);
                    }
                }
            }
            0 // TX buffers are only read
        });
        self.muxer.after_guest_packets();
        used
    }

    /// Moves packets for the guest into its RX buffers; true if any chain was used.
    fn rx(&mut self, queue: &mut Queue, mem: &GuestMem) -> bool {
        let m = self.metrics.clone();
        let mut used = false;
        while self.muxer.has_rx_work() {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                VsockMetrics::add(&m.rx_no_buffer);
                break;
            };
            let head = chain.head_index();
            let len = match self.fill_rx_chain(chain, mem) {
                RxFill::Used(len) => len,
                RxFill::BadChain => {
                    VsockMetrics::add(&m.rx_bad_chain);
                    used |= queue.add_used(mem, head, 0).is_ok();
                    continue;
                }
                RxFill::NothingFits => {
                    queue.go_to_previous_position();
                    break;
                }
            };
            if queue.add_used(mem, head, len).is_err() {
                break;
            }
            used = true;
            VsockMetrics::add(&m.rx_packets);
        }
        used
    }
}

impl Vsock {
    /// Writes the next packet for the guest into the RX chain `chain`: through the crate's
    /// `VsockPacket` when the chain is laid out its way, through [`GuestBuf`] otherwise (a
    /// lone header-sized buffer, a header split over buffers; see [`packet`]).
    fn fill_rx_chain(
        &mut self,
        chain: virtio_queue::DescriptorChain<&GuestMem>,
        mem: &GuestMem,
    ) -> RxFill {
        let buf = match GuestBuf::gather(chain.clone(), mem, true) {
            Ok(b) if b.len() >= HDR_LEN => b,
            _ => return RxFill::BadChain,
        };
        if packet::crate_framing(&chain) {
            let mut chain = chain;
            // No limit of our own on RX buffer sizes: the muxer fills what the guest posts.
            if let Ok(mut pkt) = VsockPacket::from_rx_virtq_chain(mem, &mut chain, u32::MAX) {
                let cap = pkt.data_slice().map_or(0, |d| d.len());
                let Some((hdr, data)) = self.muxer.next_rx_packet(cap) else {
                    return RxFill::NothingFits;
                };
                if let Some(d) = pkt.data_slice() {
                    // In range: `data` is at most `cap` bytes.
                    let _ = d.write_slice(&data, 0);
                }
                hdr.store(&mut pkt);
                return RxFill::Used((HDR_LEN + data.len()) as u32);
            }
            // Otherwise a framing the crate does not take (e.g. a lone 44-byte buffer).
        }
        let Some((hdr, data)) = self.muxer.next_rx_packet(buf.len() - HDR_LEN) else {
            return RxFill::NothingFits;
        };
        // In range: `gather` checked the buffers and the packet fits their total.
        buf.write_at(mem, 0, &hdr.to_bytes());
        buf.write_at(mem, HDR_LEN, &data);
        RxFill::Used((HDR_LEN + data.len()) as u32)
    }
}

/// What became of an RX chain.
enum RxFill {
    /// A packet of this many bytes (header included) was written.
    Used(u32),
    /// The chain cannot hold a header (returned empty).
    BadChain,
    /// No pending packet fits the chain; it was not touched.
    NothingFits,
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // Config space: `le64 guest_cid`.
        let cid = self.guest_cid.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = cid.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn process_queue(&mut self, index: usize, queue: &mut Queue, mem: &GuestMem) -> bool {
        if !self.active {
            return false; // a driver must not notify before DRIVER_OK
        }
        match index {
            RX_QUEUE => self.rx(queue, mem),
            TX_QUEUE => self.tx(queue, mem),
            _ => false, // the event queue only holds buffers for events we never send
        }
    }

    fn activate(&mut self, _acked: u64) -> Result<(), super::ActivateError> {
        self.active = true;
        Ok(())
    }

    fn reset(&mut self) {
        self.active = false;
        self.muxer.reset();
    }

    fn host_event_fd(&self) -> Option<RawFd> {
        Some(self.muxer.epoll_fd())
    }

    fn process_host_event(&mut self, queues: &mut [Queue], mem: &GuestMem) -> bool {
        self.muxer.process_events();
        if !self.active {
            return false; // packets wait until the driver is up and posts RX buffers
        }
        match queues.get_mut(RX_QUEUE) {
            Some(q) if q.ready() && q.is_valid(mem) => self.rx(q, mem),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
