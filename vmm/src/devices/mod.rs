//! The guest's devices and the two buses (port I/O and MMIO) the vCPU threads dispatch to.

pub mod boot_timer;
pub mod i8042;
pub mod serial;
pub mod virtio;

use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

/// An interrupt line or a notification as an eventfd (irqfd for KVM, or read by our main loop).
#[derive(Debug)]
pub struct EventTrigger(pub EventFd);

impl EventTrigger {
    /// A new non-blocking eventfd trigger.
    pub fn new() -> std::io::Result<Self> {
        Ok(EventTrigger(EventFd::new(libc::EFD_NONBLOCK)?))
    }
}

impl vm_superio::Trigger for EventTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Port-I/O address of COM1.
pub const COM1_BASE: u16 = 0x3f8;
/// Legacy IRQ of COM1.
pub const COM1_IRQ: u32 = 4;
/// i8042 data and command/status ports.
pub const I8042_DATA: u16 = 0x60;
/// i8042 command/status port.
pub const I8042_CMD: u16 = 0x64;

/// Everything a vCPU exit can be routed to. One mutex per device: exits to different
/// devices from different vCPUs do not serialise on each other.
pub struct Devices {
    /// COM1.
    pub serial: Mutex<serial::Console>,
    /// Reset line.
    pub i8042: Mutex<i8042::ResetDevice>,
    /// Phase marks and the guest's exit report.
    pub boot_timer: std::sync::Arc<boot_timer::BootTimer>,
    /// virtio-mmio devices in slot order (see [`crate::device_manager::MmioSlot`]).
    pub virtio: Vec<Mutex<virtio::mmio::MmioTransport>>,
}

impl Devices {
    /// A port read (`data.len()` is 1, 2 or 4). Unclaimed ports read as all ones.
    pub fn pio_read(&self, port: u16, data: &mut [u8]) {
        match port {
            COM1_BASE..=0x3ff if data.len() == 1 => {
                data[0] = self.serial.lock().unwrap().read((port - COM1_BASE) as u8);
            }
            I8042_DATA | I8042_CMD if data.len() == 1 => {
                data[0] = self.i8042.lock().unwrap().read(port);
            }
            _ => data.fill(0xff),
        }
    }

    /// A port write.
    pub fn pio_write(&self, port: u16, data: &[u8]) {
        match port {
            COM1_BASE..=0x3ff if data.len() == 1 => {
                self.serial
                    .lock()
                    .unwrap()
                    .write((port - COM1_BASE) as u8, data[0]);
            }
            I8042_DATA | I8042_CMD if data.len() == 1 => {
                self.i8042.lock().unwrap().write(port, data[0]);
            }
            vcompare_spec::guest::BOOT_TIMER_PORT => self.boot_timer.write(data),
            _ => {}
        }
    }

    /// An MMIO read; unclaimed addresses read as zero.
    pub fn mmio_read(&self, addr: u64, data: &mut [u8]) {
        if let Some((dev, off)) = self.virtio_at(addr) {
            dev.lock().unwrap().read(off, data);
        } else {
            data.fill(0);
        }
    }

    /// An MMIO write.
    pub fn mmio_write(&self, addr: u64, data: &[u8]) {
        if let Some((dev, off)) = self.virtio_at(addr) {
            dev.lock().unwrap().write(off, data);
        }
    }

    fn virtio_at(&self, addr: u64) -> Option<(&Mutex<virtio::mmio::MmioTransport>, u64)> {
        let (slot, offset) = crate::device_manager::MmioSlot::containing(addr)?;
        Some((self.virtio.get(slot.index())?, offset))
    }
}
