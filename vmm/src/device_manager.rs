//! The device manager: owns the order of the guest's devices. One call per virtio device
//! ([`DeviceManager::attach_virtio_device`]) picks its MMIO slot, which fixes its window and
//! IRQ line ([`MmioSlot`]), wires its interrupt eventfd to that IRQ and appends the matching
//! `virtio_mmio.device=` fragment to the kernel command line, so the three always agree. The
//! legacy devices (COM1, i8042 reset, boot timer) are set up when the manager is created.

use std::io::Write;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::EventFd;

use crate::cmdline::KernelCmdline;
use crate::devices::boot_timer::{BootTimer, InfoCallback};
use crate::devices::i8042::ResetDevice;
use crate::devices::serial::{Console, ConsoleSink};
use crate::devices::virtio::mmio::MmioTransport;
use crate::devices::virtio::VirtioDevice;
use crate::devices::{Devices, EventTrigger, COM1_IRQ};
use crate::error::{kvm_err, VmError};
use crate::memory::{GuestMem, VIRTIO_MMIO_BASE, VIRTIO_MMIO_SIZE};

/// First legacy IRQ line used by virtio-mmio devices (slot 0).
pub const VIRTIO_IRQ_BASE: u32 = 5;

/// The place of one virtio-mmio device: slot `i` has the window at
/// `VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE` and IRQ `VIRTIO_IRQ_BASE + i`. Every mapping
/// between slot, address, IRQ and command-line fragment is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioSlot(u32);

impl MmioSlot {
    /// Slot `index`.
    pub fn new(index: u32) -> Self {
        MmioSlot(index)
    }

    /// The first `n` slots, in order.
    pub fn first(n: usize) -> impl Iterator<Item = MmioSlot> {
        (0..n as u32).map(MmioSlot)
    }

    /// Position in device order.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// Guest-physical base of the device's register window.
    pub fn base(self) -> u64 {
        VIRTIO_MMIO_BASE + u64::from(self.0) * VIRTIO_MMIO_SIZE
    }

    /// The legacy IRQ line the device interrupts on.
    pub fn irq(self) -> u32 {
        VIRTIO_IRQ_BASE + self.0
    }

    /// What tells the guest kernel about the device (no PCI, no device tree).
    pub fn cmdline_fragment(self) -> String {
        format!(
            "virtio_mmio.device={}K@{:#x}:{}",
            VIRTIO_MMIO_SIZE / 1024,
            self.base(),
            self.irq()
        )
    }

    /// The slot whose window holds guest address `addr`, and the offset in it (the bus
    /// lookup; whether a device sits there is the caller's question).
    pub fn containing(addr: u64) -> Option<(MmioSlot, u64)> {
        let rel = addr.checked_sub(VIRTIO_MMIO_BASE)?;
        let index = u32::try_from(rel / VIRTIO_MMIO_SIZE).ok()?;
        Some((MmioSlot(index), rel % VIRTIO_MMIO_SIZE))
    }
}

/// Wires an interrupt eventfd to a guest IRQ line: KVM's irqfd for a real VM, a recorder in
/// tests (so device allocation is testable without /dev/kvm).
pub trait IrqRegistrar {
    /// Makes a write to `fd` raise guest IRQ `irq`.
    fn register_irqfd(&self, fd: &EventFd, irq: u32) -> Result<(), kvm_ioctls::Error>;
}

impl IrqRegistrar for kvm_ioctls::VmFd {
    fn register_irqfd(&self, fd: &EventFd, irq: u32) -> Result<(), kvm_ioctls::Error> {
        kvm_ioctls::VmFd::register_irqfd(self, fd, irq)
    }
}

/// Builds the device set of one VM, in order; [`DeviceManager::finish`] hands it to the
/// vCPUs.
pub struct DeviceManager {
    mem: GuestMem,
    serial: Console,
    i8042: ResetDevice,
    boot_timer: Arc<BootTimer>,
    reset_evt: EventFd,
    virtio: Vec<Mutex<MmioTransport>>,
}

/// The devices, ready for the vCPUs, and what the main loop waits on.
pub struct AttachedDevices {
    /// Everything a vCPU exit is routed to.
    pub devices: Arc<Devices>,
    /// Written when the guest resets through the i8042.
    pub reset_evt: EventFd,
}

impl DeviceManager {
    /// Creates the legacy devices: COM1 (IRQ 4) writing to `console` (the whole console if
    /// `boot_log`, else only from the entrypoint's start), the i8042 reset line and the boot
    /// timer (calling `on_guest_info` with the init's self-description); COM1 starts in
    /// `serial_state` when the VM is restored from a snapshot.
    pub fn new(
        vm: &dyn IrqRegistrar,
        mem: GuestMem,
        console: Box<dyn Write + Send>,
        boot_log: bool,
        on_guest_info: Option<InfoCallback>,
        serial_state: Option<&crate::snapshot::device_state::SerialSnapshot>,
    ) -> Result<Self, VmError> {
        let forward = Arc::new(AtomicBool::new(boot_log));
        let serial_irq = EventTrigger::new().map_err(VmError::Host)?;
        vm.register_irqfd(&serial_irq.0, COM1_IRQ)
            .map_err(kvm_err("serial irqfd"))?;
        let boot_timer =
            Arc::new(BootTimer::new(forward.clone(), boot_log).map_err(VmError::Host)?);
        if let Some(f) = on_guest_info {
            boot_timer.on_guest_info(f);
        }
        let sink = ConsoleSink::new(console, forward).with_boot_timer(boot_timer.clone());
        let serial = match serial_state {
            Some(s) => Console::from_snapshot(serial_irq, sink, s).map_err(VmError::Host)?,
            None => Console::new(serial_irq, sink),
        };
        let reset = EventTrigger::new().map_err(VmError::Host)?;
        let reset_evt = reset.0.try_clone().map_err(VmError::Host)?;
        Ok(DeviceManager {
            mem,
            serial,
            i8042: ResetDevice::new(reset),
            boot_timer,
            reset_evt,
            virtio: Vec::new(),
        })
    }

    /// Attaches `device` in the next MMIO slot: wires its interrupt to the slot's IRQ
    /// (`irq_what` names the step in errors) and appends the slot's fragment to `cmdline`.
    pub fn attach_virtio_device(
        &mut self,
        vm: &dyn IrqRegistrar,
        device: Box<dyn VirtioDevice>,
        irq_what: &'static str,
        cmdline: &mut KernelCmdline,
    ) -> Result<MmioSlot, VmError> {
        let slot = MmioSlot(self.virtio.len() as u32);
        let irq = EventFd::new(libc::EFD_NONBLOCK).map_err(VmError::Host)?;
        vm.register_irqfd(&irq, slot.irq())
            .map_err(kvm_err(irq_what))?;
        self.virtio.push(Mutex::new(MmioTransport::new(
            device,
            self.mem.clone(),
            irq,
        )));
        cmdline.push(slot.cmdline_fragment());
        Ok(slot)
    }

    /// The finished device set.
    pub fn finish(self) -> AttachedDevices {
        AttachedDevices {
            devices: Arc::new(Devices {
                serial: Mutex::new(self.serial),
                i8042: Mutex::new(self.i8042),
                boot_timer: self.boot_timer,
                virtio: self.virtio,
            }),
            reset_evt: self.reset_evt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use virtio_queue::Queue;

    #[derive(Default)]
    struct Irqs(RefCell<Vec<u32>>);

    impl IrqRegistrar for Irqs {
        fn register_irqfd(&self, _: &EventFd, irq: u32) -> Result<(), kvm_ioctls::Error> {
            self.0.borrow_mut().push(irq);
            Ok(())
        }
    }

    struct Dummy(u32);

    impl VirtioDevice for Dummy {
        fn device_type(&self) -> u32 {
            self.0
        }
        fn features(&self) -> u64 {
            0
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn read_config(&self, _: u64, data: &mut [u8]) {
            data.fill(0);
        }
        fn process_queue(&mut self, _: usize, _: &mut Queue, _: &GuestMem) -> bool {
            false
        }
    }

    #[test]
    fn slot_irq_window_and_cmdline_agree() {
        let s = MmioSlot::new(3);
        assert_eq!(s.base(), VIRTIO_MMIO_BASE + 3 * VIRTIO_MMIO_SIZE);
        assert_eq!(s.irq(), VIRTIO_IRQ_BASE + 3);
        assert_eq!(s.cmdline_fragment(), "virtio_mmio.device=4K@0xd0003000:8");
        assert_eq!(MmioSlot::containing(s.base() + 0x70), Some((s, 0x70)));
        assert_eq!(MmioSlot::containing(VIRTIO_MMIO_BASE - 1), None);
    }

    #[test]
    fn n_devices_get_consecutive_slots_in_attach_order() {
        let mem = crate::memory::create(32, false).unwrap();
        let irqs = Irqs::default();
        let mut dm =
            DeviceManager::new(&irqs, mem, Box::new(std::io::sink()), false, None, None).unwrap();
        let mut cmdline = KernelCmdline::default();
        let n = 4;
        let slots: Vec<MmioSlot> = (0..n)
            .map(|i| {
                dm.attach_virtio_device(&irqs, Box::new(Dummy(10 + i)), "test irqfd", &mut cmdline)
                    .unwrap()
            })
            .collect();
        assert_eq!(slots, MmioSlot::first(n as usize).collect::<Vec<_>>());
        // COM1 first, then one IRQ per device, each the one its fragment names.
        let irqs = irqs.0.into_inner();
        assert_eq!(irqs[0], COM1_IRQ);
        assert_eq!(
            &irqs[1..],
            slots.iter().map(|s| s.irq()).collect::<Vec<_>>()
        );
        let fragments: Vec<String> = slots.iter().map(|s| s.cmdline_fragment()).collect();
        assert_eq!(cmdline.args(), fragments);
        for (s, f) in slots.iter().zip(&fragments) {
            assert!(f.ends_with(&format!("@{:#x}:{}", s.base(), s.irq())));
        }
        // The bus finds each device at its slot's window.
        let attached = dm.finish();
        assert_eq!(attached.devices.virtio.len(), n as usize);
        for s in &slots {
            let mut id = [0u8; 4];
            attached.devices.mmio_read(s.base() + 0x8, &mut id); // DeviceID register
            assert_eq!(u32::from_le_bytes(id), 10 + s.index() as u32);
        }
    }
}
