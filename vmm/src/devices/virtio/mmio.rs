//! The virtio-mmio transport, version 2 (virtio 1.2 spec, 4.2.2): the register file the guest
//! driver programs, the per-queue state (virtio-queue), and the interrupt via an irqfd.
//! Queue notifications are handled synchronously on the notifying vCPU's thread: one less
//! thread, and the exit already costs more than the I/O on PVM hosts.

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{VirtioDevice, VIRTIO_F_VERSION_1};
use crate::memory::GuestMem;
use crate::snapshot::device_state::TransportSnapshot;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VENDOR: u32 = 0x4d43_5056; // "VPCM"
/// Interrupt status bit: a used buffer was added.
pub const INT_USED_RING: u32 = 1;
/// Device status bit set by the driver when it accepted our features.
pub const STATUS_FEATURES_OK: u32 = 8;
/// Device status bit set by the driver when it is ready to drive the device.
pub const STATUS_DRIVER_OK: u32 = 4;
/// Device status bit: the device needs a reset (something went wrong).
pub const STATUS_NEEDS_RESET: u32 = 0x40;

/// One virtio-mmio device window.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMem,
    irq: EventFd,
    queues: Vec<Queue>,
    queue_sel: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    status: u32,
    interrupt_status: u32,
    config_generation: u32,
}

impl MmioTransport {
    /// Wraps `device`; `irq` is registered as the irqfd of its interrupt line.
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMem, irq: EventFd) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&n| Queue::new(n).expect("valid queue size"))
            .collect();
        MmioTransport {
            device,
            mem,
            irq,
            queues,
            queue_sel: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            status: 0,
            interrupt_status: 0,
            config_generation: 0,
        }
    }

    fn offered(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.queue_sel = 0;
        self.driver_features = 0;
        self.status = 0;
        self.interrupt_status = 0;
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// Register read at `offset` within the window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.device.read_config(offset - 0x100, data);
            return;
        }
        let v: u32 = match offset {
            0x00 => MAGIC,
            0x04 => 2,
            0x08 => self.device.device_type(),
            0x0c => VENDOR,
            0x10 => match self.device_features_sel {
                0 => self.offered() as u32,
                1 => (self.offered() >> 32) as u32,
                _ => 0,
            },
            0x34 => self
                .selected()
                .map(|q| u32::from(q.max_size()))
                .unwrap_or(0),
            0x44 => self.selected().map(|q| u32::from(q.ready())).unwrap_or(0),
            0x60 => self.interrupt_status,
            0x70 => self.status,
            0xfc => self.config_generation,
            _ => 0,
        };
        let b = v.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&b[..n]);
    }

    /// Register write at `offset` within the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() != 4 {
            return; // the spec requires 32-bit accesses to the register file
        }
        let v = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        match offset {
            0x14 => self.device_features_sel = v,
            0x20 => match self.driver_features_sel {
                0 => self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(v),
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | (u64::from(v) << 32)
                }
                _ => {}
            },
            0x24 => self.driver_features_sel = v,
            0x30 => self.queue_sel = v,
            0x38 => {
                if let Some(q) = self.selected() {
                    q.set_size(v as u16);
                }
            }
            0x44 => {
                if let Some(q) = self.selected() {
                    q.set_ready(v == 1);
                }
            }
            0x50 => self.notify(v as usize),
            0x64 => self.interrupt_status &= !v,
            0x70 => {
                if v == 0 {
                    self.reset();
                } else {
                    if v & STATUS_FEATURES_OK != 0 && self.driver_features & !self.offered() != 0 {
                        // The driver accepted features we did not offer: refuse FEATURES_OK.
                        self.status = v & !STATUS_FEATURES_OK;
                        return;
                    }
                    if v & STATUS_DRIVER_OK != 0 && self.status & STATUS_DRIVER_OK == 0 {
                        if let Err(e) = self.device.activate(self.driver_features) {
                            tracing::warn!(
                                device = self.device.device_type(),
                                "virtio device refused DRIVER_OK: {e}"
                            );
                            self.status = v | STATUS_NEEDS_RESET;
                            return;
                        }
                    }
                    self.status = v;
                }
            }
            0x80 | 0x84 | 0x90 | 0x94 | 0xa0 | 0xa4 => {
                let (lo, hi) = if offset & 4 == 0 {
                    (Some(v), None)
                } else {
                    (None, Some(v))
                };
                if let Some(q) = self.selected() {
                    match offset & !7 {
                        0x80 => q.set_desc_table_address(lo, hi),
                        0x90 => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            _ => {}
        }
    }

    fn notify(&mut self, index: usize) {
        let Some(q) = self.queues.get_mut(index) else {
            return;
        };
        if !q.ready() || !q.is_valid(&self.mem) {
            return;
        }
        if self.device.process_queue(index, q, &self.mem) {
            self.signal_used();
        }
    }

    /// Tells the driver that used buffers are waiting: interrupt status bit, then the irqfd.
    fn signal_used(&mut self) {
        self.interrupt_status |= INT_USED_RING;
        let _ = self.irq.write(1);
    }

    /// The device's host-side event fd, if it has one (see [`VirtioDevice::host_event_fd`]):
    /// what the main loop polls for this device.
    pub fn host_event_fd(&self) -> Option<std::os::fd::RawFd> {
        self.device.host_event_fd()
    }

    /// Called by the main loop when [`MmioTransport::host_event_fd`] is readable: lets the
    /// device move host-side work into the guest's queues, and interrupts if it used any.
    pub fn process_host_event(&mut self) {
        if self.device.process_host_event(&mut self.queues, &self.mem) {
            self.signal_used();
        }
    }

    /// The transport's registers and queues, for a snapshot (the vCPUs are paused, so no
    /// request is in flight: every device here finishes a request within the exit).
    pub fn snapshot(&self) -> TransportSnapshot {
        TransportSnapshot {
            device_type: self.device.device_type(),
            queue_sel: self.queue_sel,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            driver_features: self.driver_features,
            status: self.status,
            interrupt_status: self.interrupt_status,
            config_generation: self.config_generation,
            queues: self.queues.iter().map(|q| q.state().into()).collect(),
        }
    }

    /// Puts the registers and queues of a snapshot back, onto a device recreated for this
    /// run; a device the driver had started is activated again with the acked features (so
    /// virtio-net configures its new TAP).
    pub fn restore(&mut self, s: &TransportSnapshot) -> Result<(), String> {
        if s.device_type != self.device.device_type() || s.queues.len() != self.queues.len() {
            return Err(format!(
                "device type {} with {} queues in the snapshot, {} with {} now",
                s.device_type,
                s.queues.len(),
                self.device.device_type(),
                self.queues.len()
            ));
        }
        self.queues = s
            .queues
            .iter()
            .map(|q| Queue::try_from(virtio_queue::QueueState::from(*q)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("queue state: {e}"))?;
        self.queue_sel = s.queue_sel;
        self.device_features_sel = s.device_features_sel;
        self.driver_features_sel = s.driver_features_sel;
        self.driver_features = s.driver_features;
        self.status = s.status;
        self.interrupt_status = s.interrupt_status;
        self.config_generation = s.config_generation;
        if self.status & STATUS_DRIVER_OK != 0 {
            self.device
                .activate(self.driver_features)
                .map_err(|e| format!("activating device type {}: {e}", s.device_type))?;
        }
        Ok(())
    }

    /// Current device status (for tests and diagnostics).
    pub fn status(&self) -> u32 {
        self.status
    }
}
