//! A minimal in-process model of the Linux virtio-mmio block driver: it negotiates features,
//! sets up one queue in guest memory and submits requests the way the guest does. The unit
//! tests and the criterion bench (`vmm/benches/virtio_queue.rs`) drive the real device and
//! transport through it, so queue handling is exercised without KVM.

use std::path::Path;

use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::block::{Block, BlockError, DEVICE_ID, QUEUE_SIZE};
use super::mmio::MmioTransport;
use crate::memory::GuestMem;

/// Guest-physical address of the descriptor table.
pub const DESC: u64 = 0x1000;
/// Guest-physical address of the available ring.
pub const AVAIL: u64 = 0x2000;
/// Guest-physical address of the used ring.
pub const USED: u64 = 0x3000;
/// Guest-physical address of the request header.
pub const HDR: u64 = 0x4000;
/// Guest-physical address of the 512-byte data buffer.
pub const DATA: u64 = 0x5000;
/// Guest-physical address of the status byte.
pub const STATUS: u64 = 0x6000;

/// A virtio-blk device behind its MMIO transport, with 32 MiB of guest memory and the queue
/// already set up (status DRIVER_OK).
pub struct BlockDriver {
    /// Guest memory holding the rings and buffers.
    pub mem: GuestMem,
    /// The transport under test.
    pub transport: MmioTransport,
    /// The interrupt the device raises.
    pub irq: EventFd,
    next_avail: u16,
}

impl BlockDriver {
    /// Opens `disk` as a virtio-blk device and negotiates it like the guest driver; panics if
    /// the device answers something the driver would reject (this is test and bench code).
    pub fn new(disk: &Path) -> Result<BlockDriver, BlockError> {
        let mem = crate::memory::create(32, false).expect("32 MiB of test guest memory");
        let irq = EventFd::new(libc::EFD_NONBLOCK).expect("eventfd");
        let dev = Block::open(disk, false, "vcmp-test")?;
        let transport = MmioTransport::new(
            Box::new(dev),
            mem.clone(),
            irq.try_clone().expect("eventfd clone"),
        );
        let mut d = BlockDriver {
            mem,
            transport,
            irq,
            next_avail: 1,
        };
        assert_eq!(d.r32(0), 0x7472_6976, "magic");
        assert_eq!(d.r32(4), 2, "virtio-mmio version");
        assert_eq!(d.r32(8), DEVICE_ID);
        d.w32(0x14, 1);
        assert_eq!(d.r32(0x10), 1, "VERSION_1 offered");
        d.w32(0x70, 1 | 2);
        d.w32(0x24, 1);
        d.w32(0x20, 1);
        d.w32(0x70, 1 | 2 | 8);
        assert_eq!(d.transport.status() & 8, 8, "FEATURES_OK accepted");
        d.w32(0x30, 0);
        assert_eq!(d.r32(0x34), u32::from(QUEUE_SIZE));
        d.w32(0x38, 16);
        d.w32(0x80, DESC as u32);
        d.w32(0x90, AVAIL as u32);
        d.w32(0xa0, USED as u32);
        d.w32(0x44, 1);
        d.w32(0x70, 1 | 2 | 8 | 4);
        let mut cap = [0u8; 8];
        d.transport.read(0x100, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 16, "capacity in sectors");
        Ok(d)
    }

    /// Writes a 32-bit transport register.
    pub fn w32(&mut self, off: u64, v: u32) {
        self.transport.write(off, &v.to_le_bytes());
    }

    /// Reads a 32-bit transport register.
    pub fn r32(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.transport.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn desc(&self, i: u64, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(DESC + 16 * i);
        self.mem.write_obj(addr, at).unwrap();
        self.mem.write_obj(len, at.unchecked_add(8)).unwrap();
        self.mem.write_obj(flags, at.unchecked_add(12)).unwrap();
        self.mem.write_obj(next, at.unchecked_add(14)).unwrap();
    }

    /// Submits one request (header, 512-byte data buffer, status) and notifies the device,
    /// which processes it synchronously.
    pub fn request(&mut self, kind: u32, sector: u64, write_data: bool) {
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&kind.to_le_bytes());
        hdr[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&hdr, GuestAddress(HDR)).unwrap();
        self.desc(0, HDR, 16, 1, 1);
        self.desc(1, DATA, 512, 1 | if write_data { 0 } else { 2 }, 2);
        self.desc(2, STATUS, 1, 2, 0);
        let idx = self.next_avail;
        let slot = u64::from(idx.wrapping_sub(1) % 16);
        self.mem
            .write_obj(0u16, GuestAddress(AVAIL + 4 + 2 * slot))
            .unwrap();
        self.mem.write_obj(idx, GuestAddress(AVAIL + 2)).unwrap();
        self.next_avail = idx.wrapping_add(1);
        self.w32(0x50, 0);
    }
}
