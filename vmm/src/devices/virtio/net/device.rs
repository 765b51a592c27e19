//! virtio-net's face to the driver: the features it offers, its config space (the MAC), and
//! what activation and reset do to the TAP. Queue work is in `rx.rs` and `tx.rs`.

use std::os::fd::{AsRawFd, RawFd};

use virtio_queue::{Queue, QueueT};

use super::{tun_offload_flags, Net, DEVICE_ID, OFFERED_FEATURES, RX_QUEUE, TX_QUEUE};
use crate::devices::virtio::{ActivateError, VirtioDevice};
use crate::memory::GuestMem;

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        OFFERED_FEATURES
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // Config space: `mac[6]` only (no STATUS, MQ or MTU features are offered, so the
        // fields after it are not there for the driver).
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.mac.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn process_queue(&mut self, index: usize, queue: &mut Queue, mem: &GuestMem) -> bool {
        if !self.active {
            return false; // a driver must not notify before DRIVER_OK
        }
        match index {
            RX_QUEUE => self.rx(queue, mem),
            TX_QUEUE => self.tx(queue, mem),
            _ => false,
        }
    }

    fn activate(&mut self, acked: u64) -> Result<(), ActivateError> {
        self.tap.set_offload(tun_offload_flags(acked))?;
        self.acked = acked;
        self.active = true;
        Ok(())
    }

    fn reset(&mut self) {
        self.active = false;
        self.acked = 0;
        // Until the next activation the host must not hand us offloaded frames that the
        // next driver may not accept.
        if let Err(e) = self.tap.set_offload(0) {
            tracing::warn!("virtio-net reset: {e}");
        }
    }

    fn host_event_fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn process_host_event(&mut self, queues: &mut [Queue], mem: &GuestMem) -> bool {
        self.drain_epoll();
        if !self.active {
            return false; // frames wait in the TAP until the driver is up
        }
        match queues.get_mut(RX_QUEUE) {
            Some(q) if q.ready() && q.is_valid(mem) => self.rx(q, mem),
            _ => false,
        }
    }
}
