//! virtio-blk (virtio 1.2 spec, 5.2) serving the VM's root disk from a host file: read,
//! write, flush and get-id requests on one queue, with pread/pwrite straight into guest RAM.

use std::fs::File;
use std::os::unix::fs::FileExt;

use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::VirtioDevice;
use crate::memory::GuestMem;

/// virtio device id of a block device.
pub const DEVICE_ID: u32 = 2;
/// Feature: the device is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Feature: the device understands flush requests.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Request type: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Request type: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Request type: flush.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Request type: device id string.
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
const SECTOR: u64 = 512;
pub(crate) const QUEUE_SIZE: u16 = 256;

/// A block device backed by a file.
pub struct Block {
    file: File,
    sectors: u64,
    read_only: bool,
    id: [u8; 20],
    max_sizes: [u16; 1],
}

/// Errors opening the backing file.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The disk file is missing or unreadable.
    #[error("cannot open disk image {path}: {source}")]
    Open {
        /// Disk path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Block {
    /// Serves `path`; `read_only` offers VIRTIO_BLK_F_RO and refuses writes.
    pub fn open(path: &std::path::Path, read_only: bool, id: &str) -> Result<Self, BlockError> {
        let err = |source| BlockError::Open {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        Ok(Self::from_file(file, len, read_only, id))
    }

    /// Serves an already open file of `len` bytes.
    pub fn from_file(file: File, len: u64, read_only: bool, id: &str) -> Self {
        let mut idb = [0u8; 20];
        let n = id.len().min(20);
        idb[..n].copy_from_slice(&id.as_bytes()[..n]);
        Block {
            file,
            sectors: len / SECTOR,
            read_only,
            id: idb,
            max_sizes: [QUEUE_SIZE],
        }
    }

    /// Executes one request chain; returns bytes written into guest buffers (incl. status).
    fn handle(&mut self, mem: &GuestMem, chain: virtio_queue::DescriptorChain<&GuestMem>) -> u32 {
        let descs: Vec<_> = chain.collect();
        let (Some(head), Some(status)) = (descs.first(), descs.last()) else {
            return 0;
        };
        if descs.len() < 2 || !status.is_write_only() || status.len() < 1 || head.len() < 16 {
            return 0;
        }
        let mut hdr = [0u8; 16];
        if mem.read_slice(&mut hdr, head.addr()).is_err() {
            return 0;
        }
        let kind = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
        let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap());
        let data = &descs[1..descs.len() - 1];
        let mut written = 0u32;
        let code = match kind {
            VIRTIO_BLK_T_IN | VIRTIO_BLK_T_OUT => {
                let is_read = kind == VIRTIO_BLK_T_IN;
                let total: u64 = data.iter().map(|d| u64::from(d.len())).sum();
                if (!is_read && self.read_only)
                    || sector
                        .checked_mul(SECTOR)
                        .and_then(|o| o.checked_add(total))
                        .is_none_or(|end| end > self.sectors * SECTOR)
                {
                    S_IOERR
                } else {
                    let mut off = sector * SECTOR;
                    let mut ok = true;
                    for d in data {
                        if d.is_write_only() != is_read {
                            ok = false;
                            break;
                        }
                        if let Err(()) =
                            self.transfer(mem, d.addr(), d.len() as usize, off, is_read)
                        {
                            ok = false;
                            break;
                        }
                        off += u64::from(d.len());
                        if is_read {
                            written += d.len();
                        }
                    }
                    if ok {
                        S_OK
                    } else {
                        S_IOERR
                    }
                }
            }
            VIRTIO_BLK_T_FLUSH => {
                if self.file.sync_data().is_ok() {
                    S_OK
                } else {
                    S_IOERR
                }
            }
            VIRTIO_BLK_T_GET_ID => match data.first() {
                Some(d) if d.is_write_only() => {
                    let n = (d.len() as usize).min(20);
                    if mem.write_slice(&self.id[..n], d.addr()).is_ok() {
                        written += n as u32;
                        S_OK
                    } else {
                        S_IOERR
                    }
                }
                _ => S_IOERR,
            },
            _ => S_UNSUPP,
        };
        let _ = mem.write_obj(code, status.addr());
        written + 1
    }

    /// Copies between the disk at byte `off` and guest RAM at `addr` without a bounce buffer.
    fn transfer(
        &self,
        mem: &GuestMem,
        addr: GuestAddress,
        len: usize,
        off: u64,
        is_read: bool,
    ) -> Result<(), ()> {
        let slice = mem.get_slice(addr, len).map_err(|_| ())?;
        let guard = slice.ptr_guard_mut();
        let ptr = guard.as_ptr();
        // SAFETY: `ptr..ptr+len` lies inside one mapped guest memory region (get_slice checked
        // the range) that outlives this call; the guest may race on it, which only affects the
        // guest's own data, as with a DMA-capable disk.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let r = if is_read {
            self.file.read_exact_at(buf, off)
        } else {
            self.file.write_all_at(buf, off)
        };
        r.map_err(|_| ())
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        VIRTIO_BLK_F_FLUSH | if self.read_only { VIRTIO_BLK_F_RO } else { 0 }
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // Config space: capacity (le64, in 512-byte sectors) is all the driver needs.
        let cfg = self.sectors.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = cfg.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn process_queue(&mut self, _index: usize, queue: &mut Queue, mem: &GuestMem) -> bool {
        super::serve_chains(queue, mem, |chain| self.handle(mem, chain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::driver_model::{BlockDriver, DATA, STATUS, USED};
    use std::io::Write;

    fn disk() -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "vcmp-blk-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut f = File::create(&path).unwrap();
        let mut content = vec![0u8; 8192];
        content[512..517].copy_from_slice(b"hello");
        f.write_all(&content).unwrap();
        path
    }

    #[test]
    fn read_then_write_through_queue() {
        let path = disk();
        let mut d = BlockDriver::new(&path).unwrap();
        d.request(VIRTIO_BLK_T_IN, 1, false);
        let mut buf = [0u8; 5];
        d.mem.read_slice(&mut buf, GuestAddress(DATA)).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(d.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), S_OK);
        assert_eq!(
            d.mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap(),
            1,
            "used idx"
        );
        assert_eq!(
            d.mem.read_obj::<u32>(GuestAddress(USED + 8)).unwrap(),
            513,
            "used len"
        );
        assert_eq!(d.irq.read().unwrap(), 1);
        assert_eq!(d.r32(0x60), 1);
        d.w32(0x64, 1);
        assert_eq!(d.r32(0x60), 0);

        d.mem.write_slice(b"world", GuestAddress(DATA)).unwrap();
        d.request(VIRTIO_BLK_T_OUT, 3, true);
        assert_eq!(d.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), S_OK);
        let disk = std::fs::read(&path).unwrap();
        assert_eq!(&disk[1536..1541], b"world");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_restored_transport_goes_on_where_the_snapshot_left_it() {
        let path = disk();
        let mut d = BlockDriver::new(&path).unwrap();
        d.request(VIRTIO_BLK_T_IN, 1, false);
        let _ = d.irq.read();
        let saved = d.transport.snapshot();
        assert_eq!(saved.status, 1 | 2 | 8 | 4);
        assert_eq!(
            (saved.queues[0].next_avail, saved.queues[0].next_used),
            (1, 1)
        );
        // A new device on the same guest memory (as after a restore), its transport put back.
        let dev = Block::open(&path, false, "vcmp-test").unwrap();
        let irq = vmm_sys_util::eventfd::EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut restored = super::super::mmio::MmioTransport::new(
            Box::new(dev),
            d.mem.clone(),
            irq.try_clone().unwrap(),
        );
        restored.restore(&saved).unwrap();
        assert_eq!(restored.snapshot(), saved);
        d.transport = restored;
        d.irq = irq;
        // The next request is served from where the queue stood, with no re-negotiation.
        d.request(VIRTIO_BLK_T_IN, 1, false);
        assert_eq!(d.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), S_OK);
        assert_eq!(
            d.mem.read_obj::<u16>(GuestAddress(USED + 2)).unwrap(),
            2,
            "used idx"
        );
        assert_eq!(d.irq.read().unwrap(), 1);
        // A snapshot of another device kind does not fit.
        let mut other = saved.clone();
        other.device_type = 19;
        assert!(d.transport.restore(&other).is_err());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn out_of_range_is_ioerr() {
        let path = disk();
        let mut d = BlockDriver::new(&path).unwrap();
        d.request(VIRTIO_BLK_T_IN, 16, false);
        assert_eq!(d.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), S_IOERR);
        d.request(99, 0, false);
        assert_eq!(
            d.mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(),
            S_UNSUPP
        );
        std::fs::remove_file(path).unwrap();
    }
}
