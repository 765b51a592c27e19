//! Transmit: each chain the guest puts on queue 1 is a vnet header and a frame; the whole
//! chain goes to the TAP in one `writev` (the TAP takes the same 12-byte header), then back
//! to the guest as used. Handled on the notifying vCPU's thread, synchronously.

use std::sync::atomic::Ordering;

use virtio_queue::{Queue, QueueT};

use super::iov::Segments;
use super::{Net, NetMetrics, VNET_HDR_LEN};
use crate::memory::GuestMem;

impl Net {
    /// Sends every frame the guest queued; true if any chain was used.
    pub(super) fn tx(&mut self, queue: &mut Queue, mem: &GuestMem) -> bool {
        let m = &*self.metrics;
        let mut used = false;
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match Segments::gather(chain, mem, false) {
                Ok(segs) => loop {
                    match self.tap.writev(segs.iovecs()) {
                        Ok(_) => {
                            NetMetrics::add(&m.tx_frames, 1);
                            NetMetrics::add(&m.tx_bytes, (segs.bytes() - VNET_HDR_LEN) as u64);
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                        // The TAP's queue is full: a congested link drops, and so do we
                        // (TCP retransmits); blocking the vCPU would stall the whole guest.
                        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                            NetMetrics::add(&m.tx_dropped_full, 1);
                        }
                        Err(e) => {
                            if m.tx_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                tracing::warn!("virtio-net: writing to the TAP: {e}");
                            }
                        }
                    }
                    break;
                },
                Err(fault) => {
                    NetMetrics::add(&m.tx_bad_chain, 1);
                    tracing::debug!(?fault, "virtio-net: unusable TX chain");
                }
            }
            // TX buffers are only read: the used length is 0.
            if queue.add_used(mem, head, 0).is_err() {
                break;
            }
            used = true;
        }
        used
    }
}
