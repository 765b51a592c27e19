//! virtio over MMIO: the transport (register file, queues, interrupt) and the devices.

pub mod block;
#[doc(hidden)]
pub mod driver_model;
pub mod mmio;
pub mod p9;

use virtio_queue::Queue;

use crate::memory::GuestMem;

/// `VIRTIO_F_VERSION_1`: the modern (virtio 1.x) interface; mandatory for MMIO version 2.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// A virtio device behind the MMIO transport.
pub trait VirtioDevice: Send {
    /// virtio device id (2 = block).
    fn device_type(&self) -> u32;
    /// Feature bits offered to the driver.
    fn features(&self) -> u64;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads device-specific configuration space at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Handles the available buffers of queue `index`; returns true if any were used (the
    /// transport then raises the interrupt).
    fn process_queue(&mut self, index: usize, queue: &mut Queue, mem: &GuestMem) -> bool;
}

/// Pops every available chain of `queue`, lets `serve` handle it (returning the bytes it
/// wrote into the guest's buffers) and puts it on the used ring; true if any was used.
pub fn serve_chains(
    queue: &mut Queue,
    mem: &GuestMem,
    mut serve: impl FnMut(virtio_queue::DescriptorChain<&GuestMem>) -> u32,
) -> bool {
    use virtio_queue::QueueT;
    let mut used = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let len = serve(chain);
        if queue.add_used(mem, head, len).is_err() {
            break;
        }
        used = true;
    }
    used
}
