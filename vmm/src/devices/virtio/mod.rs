//! virtio over MMIO: the transport (register file, queues, interrupt) and the devices.

pub mod block;
#[doc(hidden)]
pub mod driver_model;
pub mod mmio;
pub mod net;
pub mod p9;
pub mod vsock;

use std::os::fd::RawFd;

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
    /// The driver set DRIVER_OK having acked `acked` features: the point where a device
    /// whose host side depends on the negotiation (virtio-net's TAP offloads) configures it.
    /// An error marks the device NEEDS_RESET instead of letting it run misconfigured.
    fn activate(&mut self, _acked: u64) -> Result<(), ActivateError> {
        Ok(())
    }
    /// The driver reset the device (status 0): forget the negotiation and any in-flight
    /// state, so a re-probing driver starts from scratch.
    fn reset(&mut self) {}
    /// A host fd that becomes readable when the device has work the guest did not ask for
    /// (a frame arriving on virtio-net's TAP). The main loop polls it and then calls
    /// [`VirtioDevice::process_host_event`]; devices driven only by the guest have none.
    fn host_event_fd(&self) -> Option<RawFd> {
        None
    }
    /// Handles the readiness of [`VirtioDevice::host_event_fd`] with all of the device's
    /// `queues`; returns true if buffers were used (the transport raises the interrupt). It
    /// must consume the readiness, or the main loop would wake again at once.
    fn process_host_event(&mut self, _queues: &mut [Queue], _mem: &GuestMem) -> bool {
        false
    }
}

/// Why a device refused DRIVER_OK: one variant per device that can refuse.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// virtio-net could not configure its TAP for the negotiated features.
    #[error(transparent)]
    Net(#[from] net::NetError),
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
