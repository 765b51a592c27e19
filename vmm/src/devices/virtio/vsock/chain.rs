//! A descriptor chain as a list of guest ranges, read or written at any byte offset: the
//! guest may split a packet's header and payload over buffers however it likes (Linux uses
//! one 4 KiB buffer per RX packet; older kernels a 44-byte header buffer plus a data one).
//! The `virtio-vsock` crate's `VsockPacket` handles those two usual layouts; this is for the
//! others, which it refuses (see [`packet`](super::packet)), and checks every chain against
//! our policy first.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::memory::GuestMem;

/// Longest chain accepted; more is malformed for vsock (a packet is at most 64 KiB + 44).
const MAX_SEGMENTS: usize = 32;

/// The chain is unusable: wrong direction, outside guest RAM or too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadChain;

/// The buffers of one chain, in order.
pub struct GuestBuf {
    segs: Vec<(GuestAddress, usize)>,
    len: usize,
}

impl GuestBuf {
    /// Collects the buffers of `chain`: all device-writable (RX) if `writable`, else all
    /// device-readable (TX); each must lie inside guest RAM.
    pub fn gather(
        chain: virtio_queue::DescriptorChain<&GuestMem>,
        mem: &GuestMem,
        writable: bool,
    ) -> Result<GuestBuf, BadChain> {
        let mut b = GuestBuf {
            segs: Vec::new(),
            len: 0,
        };
        for d in chain {
            let len = d.len() as usize;
            if d.is_write_only() != writable || b.segs.len() == MAX_SEGMENTS {
                return Err(BadChain);
            }
            if len == 0 {
                continue;
            }
            if mem.get_slice(d.addr(), len).is_err() {
                return Err(BadChain);
            }
            b.segs.push((d.addr(), len));
            b.len += len;
        }
        Ok(b)
    }

    /// Total bytes of the chain.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Calls `f(guest address, range within data)` for each piece of `[offset, offset+n)`;
    /// false if the range runs past the chain.
    fn pieces(
        &self,
        mut offset: usize,
        n: usize,
        mut f: impl FnMut(GuestAddress, std::ops::Range<usize>) -> bool,
    ) -> bool {
        let mut done = 0;
        for &(addr, len) in &self.segs {
            if done == n {
                break;
            }
            if offset >= len {
                offset -= len;
                continue;
            }
            let k = (len - offset).min(n - done);
            if !f(GuestAddress(addr.0 + offset as u64), done..done + k) {
                return false;
            }
            done += k;
            offset = 0;
        }
        done == n
    }

    /// Copies `out.len()` bytes from byte `offset` of the chain; false if out of range.
    pub fn read_at(&self, mem: &GuestMem, offset: usize, out: &mut [u8]) -> bool {
        let n = out.len();
        self.pieces(offset, n, |a, r| mem.read_slice(&mut out[r], a).is_ok())
    }

    /// Copies `data` to byte `offset` of the chain; false if out of range.
    pub fn write_at(&self, mem: &GuestMem, offset: usize, data: &[u8]) -> bool {
        self.pieces(offset, data.len(), |a, r| {
            mem.write_slice(&data[r], a).is_ok()
        })
    }
}
