//! Receive: frames from the TAP into the buffers the guest posted on queue 0, one frame per
//! chain (no mergeable buffers), read straight into guest RAM. When the guest has no buffer
//! left, reading stops and the frames stay queued in the TAP until the guest posts more and
//! notifies queue 0.

use std::sync::atomic::Ordering;

use virtio_queue::{Queue, QueueOwnedT, QueueT};

use super::iov::Segments;
use super::{Net, NetMetrics, VIRTIO_NET_F_GUEST_CSUM, VNET_HDR_LEN};
use crate::memory::GuestMem;

/// Offset of `num_buffers` (le16) in `virtio_net_hdr_v1`.
const NUM_BUFFERS_OFFSET: usize = 10;

impl Net {
    /// Moves frames from the TAP into the guest until the TAP is empty or the guest's RX
    /// buffers are used up; true if any chain was used.
    pub(super) fn rx(&mut self, queue: &mut Queue, mem: &GuestMem) -> bool {
        let m = &*self.metrics;
        let mut used = false;
        loop {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                // No buffer: whatever the TAP holds waits for the guest's next notify.
                NetMetrics::add(&m.rx_no_buffer, 1);
                break;
            };
            let head = chain.head_index();
            let segs = match Segments::gather(chain, mem, true) {
                Ok(s) => s,
                Err(fault) => {
                    NetMetrics::add(&m.rx_bad_chain, 1);
                    tracing::debug!(?fault, "virtio-net: unusable RX chain");
                    used |= queue.add_used(mem, head, 0).is_ok();
                    continue;
                }
            };
            match self.tap.readv(segs.iovecs()) {
                Ok(n) if n > segs.bytes() || n < VNET_HDR_LEN => {
                    // The TAP reports a frame's full length even when it did not fit: the
                    // frame is gone, the chain is still free for the next one.
                    NetMetrics::add(&m.rx_dropped_too_big, 1);
                    queue.go_to_previous_position();
                }
                Ok(n) => {
                    // virtio 1.x: num_buffers is 1 without mergeable buffers (the TAP leaves
                    // those two bytes alone); without GUEST_CSUM the flags must be zero.
                    segs.write_at(mem, NUM_BUFFERS_OFFSET, &1u16.to_le_bytes());
                    if self.acked & VIRTIO_NET_F_GUEST_CSUM == 0 {
                        segs.write_at(mem, 0, &[0]);
                    }
                    if queue.add_used(mem, head, n as u32).is_err() {
                        break;
                    }
                    used = true;
                    NetMetrics::add(&m.rx_frames, 1);
                    NetMetrics::add(&m.rx_bytes, (n - VNET_HDR_LEN) as u64);
                }
                Err(e) => {
                    queue.go_to_previous_position();
                    match e.raw_os_error() {
                        Some(libc::EAGAIN) => break, // empty: the next frame wakes us
                        Some(libc::EINTR) => continue,
                        _ => {
                            // Counted; the next arriving frame or notify tries again.
                            if m.rx_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                                tracing::warn!("virtio-net: reading the TAP: {e}");
                            }
                            break;
                        }
                    }
                }
            }
        }
        used
    }
}
