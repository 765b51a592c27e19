//! A descriptor chain as an iovec list into guest RAM, so a frame moves between the TAP and
//! the guest's buffers in one readv/writev with no bounce buffer. On the stack: a chain is
//! at most [`MAX_SEGMENTS`] long (Linux uses up to MAX_SKB_FRAGS + 2 = 19 per frame).

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::memory::GuestMem;

/// Longest chain accepted (longer ones are malformed for virtio-net).
pub const MAX_SEGMENTS: usize = 64;

/// Why a chain cannot carry a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainFault {
    /// A buffer the device must write is read-only (RX) or the other way round (TX).
    Direction,
    /// More than [`MAX_SEGMENTS`] buffers.
    TooLong,
    /// A buffer lies outside guest RAM (or across the MMIO hole).
    OutOfRange,
    /// Shorter than the 12-byte virtio-net header.
    TooShort,
}

/// The buffers of one chain, in order, as host iovecs and as guest ranges.
pub struct Segments {
    iov: [libc::iovec; MAX_SEGMENTS],
    guest: [(GuestAddress, u32); MAX_SEGMENTS],
    len: usize,
    bytes: usize,
}

impl Segments {
    /// Maps every buffer of `chain` (all device-writable if `writable`, else all readable);
    /// zero-length buffers are skipped.
    pub fn gather(
        chain: virtio_queue::DescriptorChain<&GuestMem>,
        mem: &GuestMem,
        writable: bool,
    ) -> Result<Segments, ChainFault> {
        let mut s = Segments {
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_SEGMENTS],
            guest: [(GuestAddress(0), 0); MAX_SEGMENTS],
            len: 0,
            bytes: 0,
        };
        for d in chain {
            if d.is_write_only() != writable {
                return Err(ChainFault::Direction);
            }
            if d.len() == 0 {
                continue;
            }
            if s.len == MAX_SEGMENTS {
                return Err(ChainFault::TooLong);
            }
            let slice = mem
                .get_slice(d.addr(), d.len() as usize)
                .map_err(|_| ChainFault::OutOfRange)?;
            s.iov[s.len] = libc::iovec {
                iov_base: slice.ptr_guard_mut().as_ptr().cast(),
                iov_len: d.len() as usize,
            };
            s.guest[s.len] = (d.addr(), d.len());
            s.len += 1;
            s.bytes += d.len() as usize;
        }
        if s.bytes < super::VNET_HDR_LEN {
            return Err(ChainFault::TooShort);
        }
        Ok(s)
    }

    /// The host iovecs (valid while guest RAM is mapped, i.e. for the VM's lifetime).
    pub fn iovecs(&self) -> &[libc::iovec] {
        &self.iov[..self.len]
    }

    /// Total bytes of the chain.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Writes `data` at byte `offset` of the chain, across buffer boundaries (the header the
    /// device patches after a read may be split however the driver chose).
    pub fn write_at(&self, mem: &GuestMem, mut offset: usize, mut data: &[u8]) {
        for &(addr, len) in &self.guest[..self.len] {
            let len = len as usize;
            if data.is_empty() {
                return;
            }
            if offset >= len {
                offset -= len;
                continue;
            }
            let n = (len - offset).min(data.len());
            // In range: `gather` checked every buffer against guest RAM.
            let _ = mem.write_slice(&data[..n], GuestAddress(addr.0 + offset as u64));
            data = &data[n..];
            offset = 0;
        }
    }
}
