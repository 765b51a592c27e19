//! The virtio-vsock packet header (virtio 1.2 spec, 5.10.6): 44 little-endian bytes in front
//! of every packet, both directions, and the checks a packet from the guest must pass before
//! the muxer acts on it. A packet that fails them is counted and dropped, or answered with
//! RST when its ports are trustworthy enough to name a connection.
//!
//! The wire format is rust-vmm's `virtio-vsock` crate: TX chains are parsed with
//! [`VsockPacket::from_tx_virtq_chain`], RX chains filled through
//! [`VsockPacket::from_rx_virtq_chain`] and its setters, and [`Header`] (a plain copy the
//! muxer can queue, since a `VsockPacket` borrows guest memory) is decoded and encoded only
//! through `VsockPacket`'s accessors and setters; the crate's errors are mapped onto our
//! counters and RST policy in [`read_guest_packet`].
//!
//! Not on the crate: chains it cannot frame as the spec does. It needs the header in the head
//! descriptor and the payload in that descriptor or exactly one more (each in one host
//! mapping), but the virtio spec's message-framing rule lets a driver split a packet over
//! descriptors any way it likes (Linux's `MSG_ZEROCOPY` sends do), so those chains, a lone
//! header-sized RX buffer and a head buffer longer than the header with more buffers after it
//! are still read and written at byte offsets by `chain::GuestBuf`, which also applies our
//! chain policy (every buffer's direction, at most 32 buffers) to buffers the crate skips.

use virtio_vsock::packet::{Error as VsockPacketError, VsockPacket, PKT_HEADER_SIZE};
use vm_memory::bitmap::BitmapSlice;
use vm_memory::Bytes;

use super::chain::GuestBuf;
use crate::memory::GuestMem;

/// Length of `struct virtio_vsock_hdr`.
pub const HDR_LEN: usize = PKT_HEADER_SIZE;
/// The host's context id: every packet the guest sends must be addressed to it.
pub const HOST_CID: u64 = 2;
/// `VIRTIO_VSOCK_TYPE_STREAM`, the only socket type offered (no SEQPACKET feature).
pub const TYPE_STREAM: u16 = 1;
/// `VIRTIO_VSOCK_SHUTDOWN_RCV`: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// `VIRTIO_VSOCK_SHUTDOWN_SEND`: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;
/// Largest payload accepted from the guest in one packet (Linux sends at most 64 KiB).
pub const MAX_PAYLOAD: u32 = 64 * 1024;

/// The operations of a stream packet (`VIRTIO_VSOCK_OP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Connection request.
    Request = 1,
    /// Connection accepted.
    Response = 2,
    /// Connection refused or aborted.
    Rst = 3,
    /// One or both directions closed (see `SHUTDOWN_*` flags).
    Shutdown = 4,
    /// Data.
    Rw = 5,
    /// The sender's receive buffer state changed (its `buf_alloc`/`fwd_cnt`).
    CreditUpdate = 6,
    /// The sender asks for a credit update.
    CreditRequest = 7,
}

impl Op {
    /// The op for wire value `v`, `None` if unknown.
    pub fn from_wire(v: u16) -> Option<Op> {
        Some(match v {
            1 => Op::Request,
            2 => Op::Response,
            3 => Op::Rst,
            4 => Op::Shutdown,
            5 => Op::Rw,
            6 => Op::CreditUpdate,
            7 => Op::CreditRequest,
            _ => return None,
        })
    }
}

/// `struct virtio_vsock_hdr`, decoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    /// Sender's context id.
    pub src_cid: u64,
    /// Receiver's context id.
    pub dst_cid: u64,
    /// Sender's port.
    pub src_port: u32,
    /// Receiver's port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type (`TYPE_STREAM`).
    pub type_: u16,
    /// Operation (see [`Op`]).
    pub op: u16,
    /// Op-specific flags (shutdown directions).
    pub flags: u32,
    /// Sender's receive buffer size for this connection.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer, ever (wrapping).
    pub fwd_cnt: u32,
}

impl Header {
    /// The header `pkt` carries (as the crate read it from guest memory, once).
    pub fn of<B: BitmapSlice>(pkt: &VsockPacket<'_, B>) -> Header {
        Header {
            src_cid: pkt.src_cid(),
            dst_cid: pkt.dst_cid(),
            src_port: pkt.src_port(),
            dst_port: pkt.dst_port(),
            len: pkt.len(),
            type_: pkt.type_(),
            op: pkt.op(),
            flags: pkt.flags(),
            buf_alloc: pkt.buf_alloc(),
            fwd_cnt: pkt.fwd_cnt(),
        }
    }

    /// Writes this header into `pkt`'s header buffer.
    pub fn store<B: BitmapSlice>(&self, pkt: &mut VsockPacket<'_, B>) {
        pkt.set_src_cid(self.src_cid)
            .set_dst_cid(self.dst_cid)
            .set_src_port(self.src_port)
            .set_dst_port(self.dst_port)
            .set_len(self.len)
            .set_type(self.type_)
            .set_op(self.op)
            .set_flags(self.flags)
            .set_buf_alloc(self.buf_alloc)
            .set_fwd_cnt(self.fwd_cnt);
    }

    /// Decodes the wire layout (for headers framed over several descriptors).
    pub fn parse(b: &[u8; HDR_LEN]) -> Header {
        let mut scratch = *b;
        let mut pkt = header_packet(&mut scratch);
        pkt.set_header_from_raw(b)
            .expect("a HDR_LEN input fits a HDR_LEN header buffer");
        Header::of(&pkt)
    }

    /// Encodes the wire layout (for headers framed over several descriptors).
    pub fn to_bytes(&self) -> [u8; HDR_LEN] {
        let mut b = [0u8; HDR_LEN];
        self.store(&mut header_packet(&mut b));
        b
    }
}

/// A header-only `VsockPacket` over `buf`, to use the crate's codec on host bytes.
fn header_packet(buf: &mut [u8; HDR_LEN]) -> VsockPacket<'_, ()> {
    // SAFETY: `buf` is mutably borrowed for the packet's whole lifetime, so the memory stays
    // valid and nothing else accesses it while the packet's volatile slice exists.
    unsafe { VsockPacket::new(buf, None) }.expect("HDR_LEN is the crate's header size")
}

/// Why a packet from the guest was not acted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketFault {
    /// The chain is unusable (a device-writable buffer, outside guest RAM, too many buffers)
    /// or shorter than a header.
    BadChain,
    /// `src_cid` is not the guest's or `dst_cid` not the host's: not ours to answer.
    BadCid,
    /// A socket type other than STREAM.
    BadType,
    /// An op code outside 1..=7.
    UnknownOp,
    /// `len` is larger than the chain's payload or than [`MAX_PAYLOAD`].
    BadLen,
}

impl PacketFault {
    /// Whether the sender gets an RST: only when the header itself was addressed correctly,
    /// so the RST reaches a real socket and never answers a forged address.
    pub fn answer_rst(self) -> bool {
        matches!(
            self,
            PacketFault::BadType | PacketFault::UnknownOp | PacketFault::BadLen
        )
    }
}

/// A validated packet from the guest.
#[derive(Debug)]
pub struct GuestPacket {
    /// The header (cids, type and len checked).
    pub hdr: Header,
    /// The decoded op.
    pub op: Op,
    /// The payload (`hdr.len` bytes for RW, empty otherwise).
    pub payload: Vec<u8>,
}

/// Reads and validates one TX chain of a guest whose cid is `guest_cid`. On a fault the
/// header is returned too when one could be read, so the caller can answer RST.
pub fn read_guest_packet(
    chain: virtio_queue::DescriptorChain<&GuestMem>,
    mem: &GuestMem,
    guest_cid: u64,
) -> Result<GuestPacket, (PacketFault, Option<Header>)> {
    // Our chain policy (direction of every buffer, inside guest RAM, at most 32 buffers)
    // covers the whole chain; the crate only looks at the buffers it uses.
    let buf =
        GuestBuf::gather(chain.clone(), mem, false).map_err(|_| (PacketFault::BadChain, None))?;
    if crate_framing(&chain) {
        let mut chain = chain;
        match VsockPacket::from_tx_virtq_chain(mem, &mut chain, MAX_PAYLOAD) {
            Ok(pkt) => {
                let hdr = Header::of(&pkt);
                let op = check(&hdr, guest_cid).map_err(|f| (f, Some(hdr)))?;
                let mut payload = Vec::new();
                if let (Op::Rw, Some(data)) = (op, pkt.data_slice()) {
                    payload.resize(hdr.len as usize, 0);
                    data.read_slice(&mut payload, 0)
                        .map_err(|_| (PacketFault::BadChain, Some(hdr)))?;
                }
                return Ok(GuestPacket { hdr, op, payload });
            }
            Err(e) => match tx_error_class(&e) {
                TxErrorClass::Unusable => return Err((PacketFault::BadChain, None)),
                // The header (and so our verdict) is on the byte-offset path below.
                TxErrorClass::Length | TxErrorClass::Layout => {}
            },
        }
    }
    read_framed_anyhow(&buf, mem, guest_cid)
}

/// How the crate's refusal of a TX chain maps onto our policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxErrorClass {
    /// The chain cannot be used at all: [`PacketFault::BadChain`], no RST.
    Unusable,
    /// `len` exceeds [`MAX_PAYLOAD`] or the chain: [`PacketFault::BadLen`] (RST) once the
    /// header's cids, type and op have passed, else the fault they show.
    Length,
    /// A framing the crate does not handle (header or payload split across descriptors or
    /// host mappings): decided by the byte-offset path, which may well accept it.
    Layout,
}

fn tx_error_class(e: &VsockPacketError) -> TxErrorClass {
    match e {
        VsockPacketError::UnexpectedWriteOnlyDescriptor
        | VsockPacketError::UnexpectedReadOnlyDescriptor
        | VsockPacketError::InvalidMemoryAccess(_)
        | VsockPacketError::InvalidVolatileAccess(_)
        | VsockPacketError::InvalidHeaderInputSize(_) => TxErrorClass::Unusable,
        VsockPacketError::InvalidHeaderLen(_) => TxErrorClass::Length,
        VsockPacketError::DescriptorChainTooShort
        | VsockPacketError::DescriptorLengthTooSmall
        | VsockPacketError::DescriptorLengthTooLong
        | VsockPacketError::FragmentedMemory => TxErrorClass::Layout,
    }
}

/// Whether the crate's framing of `chain` is the spec's byte-stream framing: the crate puts
/// the payload right after the header in a lone head buffer, else at the start of the second
/// buffer, which is only where the spec puts it when the head holds exactly the header.
pub(super) fn crate_framing(chain: &virtio_queue::DescriptorChain<&GuestMem>) -> bool {
    match chain.clone().next() {
        Some(head) => !head.has_next() || head.len() as usize == HDR_LEN,
        None => false,
    }
}

/// The cid, type and op checks of a header from the guest.
fn check(hdr: &Header, guest_cid: u64) -> Result<Op, PacketFault> {
    if hdr.src_cid != guest_cid || hdr.dst_cid != HOST_CID {
        return Err(PacketFault::BadCid);
    }
    if hdr.type_ != TYPE_STREAM {
        return Err(PacketFault::BadType);
    }
    Op::from_wire(hdr.op).ok_or(PacketFault::UnknownOp)
}

/// A TX packet framed in any way over `buf` (the crate's framing, too, to give the verdict
/// on a `len` the crate refused).
fn read_framed_anyhow(
    buf: &GuestBuf,
    mem: &GuestMem,
    guest_cid: u64,
) -> Result<GuestPacket, (PacketFault, Option<Header>)> {
    let mut raw = [0u8; HDR_LEN];
    if buf.len() < HDR_LEN || !buf.read_at(mem, 0, &mut raw) {
        return Err((PacketFault::BadChain, None));
    }
    let hdr = Header::parse(&raw);
    let fault = |f| Err((f, Some(hdr)));
    let op = match check(&hdr, guest_cid) {
        Ok(op) => op,
        Err(f) => return fault(f),
    };
    if hdr.len > MAX_PAYLOAD || hdr.len as usize > buf.len() - HDR_LEN {
        return fault(PacketFault::BadLen);
    }
    let mut payload = Vec::new();
    if op == Op::Rw {
        payload.resize(hdr.len as usize, 0);
        if !buf.read_at(mem, HDR_LEN, &mut payload) {
            return fault(PacketFault::BadChain);
        }
    }
    Ok(GuestPacket { hdr, op, payload })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn header_round_trips_in_wire_order() {
        let h = Header {
            src_cid: 3,
            dst_cid: 2,
            src_port: 1024,
            dst_port: 52,
            len: 7,
            type_: TYPE_STREAM,
            op: Op::Rw as u16,
            flags: 3,
            buf_alloc: 65536,
            fwd_cnt: 9,
        };
        let b = h.to_bytes();
        assert_eq!(&b[0..8], &3u64.to_le_bytes());
        assert_eq!(&b[30..32], &5u16.to_le_bytes());
        assert_eq!(Header::parse(&b), h);
    }
}
