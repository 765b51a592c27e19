//! A minimal in-process model of the Linux virtio-mmio block driver: it negotiates features,
//! sets up one queue in guest memory and submits requests the way the guest does. The unit
//! tests and the criterion bench (`vmm/benches/virtio_queue.rs`) drive the real device and
//! transport through it, so queue handling is exercised without KVM. The register, queue
//! setup and descriptor helpers below serve the net and vsock device tests too.

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

/// Writes the 32-bit transport register at `off`.
pub fn write_reg(t: &mut MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

/// Reads the 32-bit transport register at `off`.
pub fn read_reg(t: &mut MmioTransport, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

/// Sets up queue `q` the way the Linux driver does: selects it, checks that the device offers
/// `max` entries, uses `size` of them with the rings at `(desc, avail, used)` and marks it
/// ready.
pub fn setup_queue(t: &mut MmioTransport, q: u32, max: u16, size: u16, rings: (u64, u64, u64)) {
    let (desc, avail, used) = rings;
    write_reg(t, 0x30, q);
    assert_eq!(read_reg(t, 0x34), u32::from(max), "queue {q} size offered");
    write_reg(t, 0x38, u32::from(size));
    write_reg(t, 0x80, desc as u32);
    write_reg(t, 0x90, avail as u32);
    write_reg(t, 0xa0, used as u32);
    write_reg(t, 0x44, 1);
}

/// Writes descriptor `i` of the table at `table`: buffer `addr`/`len`, `flags`, `next`.
pub fn write_desc(mem: &GuestMem, table: u64, i: u64, buf: (u64, u32), flags: u16, next: u16) {
    let at = GuestAddress(table + 16 * i);
    mem.write_obj(buf.0, at).unwrap();
    mem.write_obj(buf.1, at.unchecked_add(8)).unwrap();
    mem.write_obj(flags, at.unchecked_add(12)).unwrap();
    mem.write_obj(next, at.unchecked_add(14)).unwrap();
}

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
        setup_queue(&mut d.transport, 0, QUEUE_SIZE, 16, (DESC, AVAIL, USED));
        d.w32(0x70, 1 | 2 | 8 | 4);
        let mut cap = [0u8; 8];
        d.transport.read(0x100, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 16, "capacity in sectors");
        Ok(d)
    }

    /// Writes a 32-bit transport register.
    pub fn w32(&mut self, off: u64, v: u32) {
        write_reg(&mut self.transport, off, v);
    }

    /// Reads a 32-bit transport register.
    pub fn r32(&mut self, off: u64) -> u32 {
        read_reg(&mut self.transport, off)
    }

    /// Submits one request (header, 512-byte data buffer, status) and notifies the device,
    /// which processes it synchronously.
    pub fn request(&mut self, kind: u32, sector: u64, write_data: bool) {
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&kind.to_le_bytes());
        hdr[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem.write_slice(&hdr, GuestAddress(HDR)).unwrap();
        write_desc(&self.mem, DESC, 0, (HDR, 16), 1, 1);
        let data_flags = 1 | if write_data { 0 } else { 2 };
        write_desc(&self.mem, DESC, 1, (DATA, 512), data_flags, 2);
        write_desc(&self.mem, DESC, 2, (STATUS, 1), 2, 0);
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
