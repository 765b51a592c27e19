//! The device behind its MMIO transport, driven like the Linux driver does, on a
//! `SOCK_SEQPACKET` socketpair standing in for the TAP (same frame boundaries, no root).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::devices::virtio::driver_model::{read_reg, setup_queue, write_desc, write_reg};
use crate::devices::virtio::mmio::MmioTransport;
use crate::memory::GuestMem;

/// (descriptor table, avail ring, used ring) of queue `q`.
fn rings(q: u64) -> (u64, u64, u64) {
    let base = 0x1000 + q * 0x3000;
    (base, base + 0x1000, base + 0x2000)
}

struct Driver {
    mem: GuestMem,
    t: MmioTransport,
    irq: EventFd,
    peer: OwnedFd,
    metrics: Arc<NetMetrics>,
    next_avail: [u16; 2],
}

impl Driver {
    fn new(acked: u64) -> Driver {
        let mut sv = [0; 2];
        // SAFETY: socketpair fills two fds, which we own from here on.
        let rc =
            unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, sv.as_mut_ptr()) };
        assert_eq!(rc, 0);
        let (ours, peer) = unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) };
        let net = Net::with_tap(Tap::from_socket(ours), [2, 0, 0, 0, 0, 1]).unwrap();
        let metrics = net.metrics();
        let mem = crate::memory::create(32, false).unwrap();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let t = MmioTransport::new(Box::new(net), mem.clone(), irq.try_clone().unwrap());
        let mut d = Driver {
            mem,
            t,
            irq,
            peer,
            metrics,
            next_avail: [0; 2],
        };
        assert_eq!(d.r32(8), DEVICE_ID);
        d.w32(0x70, 1 | 2);
        d.w32(0x14, 0);
        let offered = u64::from(d.r32(0x10));
        assert_eq!(
            offered & acked,
            acked & 0xffff_ffff,
            "all acked features offered"
        );
        d.w32(0x24, 0);
        d.w32(0x20, acked as u32);
        d.w32(0x24, 1);
        d.w32(0x20, 1); // VERSION_1
        d.w32(0x70, 1 | 2 | 8);
        for q in 0..2 {
            setup_queue(&mut d.t, q as u32, QUEUE_SIZE, 16, rings(q));
        }
        d.w32(0x70, 1 | 2 | 8 | 4);
        assert_eq!(d.t.status() & 0x40, 0, "activated");
        let mut mac = [0u8; 6];
        d.t.read(0x100, &mut mac);
        assert_eq!(mac, [2, 0, 0, 0, 0, 1]);
        d
    }

    fn w32(&mut self, off: u64, v: u32) {
        write_reg(&mut self.t, off, v);
    }

    fn r32(&mut self, off: u64) -> u32 {
        read_reg(&mut self.t, off)
    }

    /// Posts a chain of `bufs` (address, length) on queue `q` (device-writable on RX).
    fn post(&mut self, q: usize, bufs: &[(u64, u32)]) {
        let (desc, avail, _) = rings(q as u64);
        let first = u64::from(self.next_avail[q]) * 4 % 16;
        for (i, &buf) in bufs.iter().enumerate() {
            let more = i + 1 < bufs.len();
            let flags: u16 = u16::from(more) | if q == RX_QUEUE { 2 } else { 0 };
            let next = if more {
                (first + i as u64 + 1) as u16
            } else {
                0
            };
            write_desc(&self.mem, desc, first + i as u64, buf, flags, next);
        }
        let idx = self.next_avail[q];
        let slot = u64::from(idx % 16);
        self.mem
            .write_obj(first as u16, GuestAddress(avail + 4 + 2 * slot))
            .unwrap();
        self.next_avail[q] = idx.wrapping_add(1);
        self.mem
            .write_obj(self.next_avail[q], GuestAddress(avail + 2))
            .unwrap();
    }

    /// (used idx, length of the last used element) of queue `q`.
    fn used(&self, q: usize) -> (u16, u32) {
        let (_, _, used) = rings(q as u64);
        let idx: u16 = self.mem.read_obj(GuestAddress(used + 2)).unwrap();
        let slot = u64::from(idx.wrapping_sub(1) % 16);
        let len: u32 = self
            .mem
            .read_obj(GuestAddress(used + 4 + 8 * slot + 4))
            .unwrap();
        (idx, len)
    }
}

fn frame(payload: &[u8], flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f[0] = flags;
    f.extend_from_slice(payload);
    f
}

#[test]
fn tx_chain_reaches_the_tap_as_one_frame() {
    let mut d = Driver::new(VIRTIO_NET_F_MAC);
    let f = frame(&[0xab; 60], 0);
    d.mem
        .write_slice(&f[..VNET_HDR_LEN], GuestAddress(0x20000))
        .unwrap();
    d.mem
        .write_slice(&f[VNET_HDR_LEN..], GuestAddress(0x21000))
        .unwrap();
    d.post(TX_QUEUE, &[(0x20000, 12), (0x21000, 60)]);
    d.w32(0x50, TX_QUEUE as u32);
    assert_eq!(d.used(TX_QUEUE), (1, 0));
    assert_eq!(d.irq.read().unwrap(), 1);
    let mut got = [0u8; 200];
    // SAFETY: reading into a local buffer.
    let n = unsafe { libc::read(d.peer.as_raw_fd(), got.as_mut_ptr().cast(), got.len()) };
    assert_eq!(&got[..n as usize], &f[..]);
    assert_eq!(d.metrics.tx_frames.load(Ordering::Relaxed), 1);
    assert_eq!(d.metrics.tx_bytes.load(Ordering::Relaxed), 60);
}

#[test]
fn rx_frame_waits_for_a_buffer_then_arrives_on_notify() {
    let mut d = Driver::new(VIRTIO_NET_F_MAC);
    // DATA_VALID from the host must not reach a driver without GUEST_CSUM.
    let f = frame(b"hello guest", 2);
    // SAFETY: writing a local buffer.
    unsafe { libc::write(d.peer.as_raw_fd(), f.as_ptr().cast(), f.len()) };
    d.t.process_host_event();
    assert_eq!(d.used(RX_QUEUE).0, 0, "no buffer yet: nothing used");
    assert!(d.irq.read().is_err(), "no interrupt");
    assert_eq!(d.metrics.rx_no_buffer.load(Ordering::Relaxed), 1);
    // The readiness was consumed: the main loop would sleep now.
    let mut p = libc::pollfd {
        fd: d.t.host_event_fd().unwrap(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 0) }, 0);

    d.mem
        .write_slice(&[0xff; 12], GuestAddress(0x30000))
        .unwrap();
    d.post(RX_QUEUE, &[(0x30000, 1526)]);
    d.w32(0x50, RX_QUEUE as u32);
    assert_eq!(d.used(RX_QUEUE), (1, f.len() as u32));
    assert_eq!(d.irq.read().unwrap(), 1);
    let mut got = vec![0u8; f.len()];
    d.mem.read_slice(&mut got, GuestAddress(0x30000)).unwrap();
    assert_eq!(got[0], 0, "flags cleared without GUEST_CSUM");
    assert_eq!(&got[10..12], &[1, 0], "num_buffers = 1");
    assert_eq!(&got[VNET_HDR_LEN..], b"hello guest");

    // The next frame finds the TAP empty first, then arrives through the host event.
    d.post(RX_QUEUE, &[(0x30000, 6), (0x31000, 1520)]);
    d.w32(0x50, RX_QUEUE as u32);
    assert_eq!(d.used(RX_QUEUE).0, 1, "TAP empty: the buffer stays posted");
    let f2 = frame(b"second", 1);
    // SAFETY: writing a local buffer.
    unsafe { libc::write(d.peer.as_raw_fd(), f2.as_ptr().cast(), f2.len()) };
    d.t.process_host_event();
    assert_eq!(d.used(RX_QUEUE), (2, f2.len() as u32));
    let mut tail = [0u8; 6];
    d.mem
        .read_slice(&mut tail, GuestAddress(0x31000 + 6))
        .unwrap();
    assert_eq!(&tail, b"second", "header split across two buffers");
    assert_eq!(d.metrics.rx_frames.load(Ordering::Relaxed), 2);
    assert_eq!(d.metrics.losses(), 0);
}

#[test]
fn guest_csum_keeps_header_flags_and_bad_chains_are_counted() {
    let mut d = Driver::new(VIRTIO_NET_F_MAC | VIRTIO_NET_F_GUEST_CSUM);
    let f = frame(b"partial", 1);
    // SAFETY: writing a local buffer.
    unsafe { libc::write(d.peer.as_raw_fd(), f.as_ptr().cast(), f.len()) };
    d.post(RX_QUEUE, &[(0x30000, 8)]); // shorter than the header: unusable
    d.post(RX_QUEUE, &[(0x32000, 1526)]);
    d.w32(0x50, RX_QUEUE as u32);
    assert_eq!(d.used(RX_QUEUE), (2, f.len() as u32));
    assert_eq!(d.mem.read_obj::<u8>(GuestAddress(0x32000)).unwrap(), 1);
    assert_eq!(d.metrics.rx_bad_chain.load(Ordering::Relaxed), 1);
}

#[test]
fn offload_flags_follow_the_guest_features() {
    assert_eq!(tun_offload_flags(0), 0);
    assert_eq!(
        tun_offload_flags(VIRTIO_NET_F_GUEST_TSO4),
        0,
        "TSO needs CSUM"
    );
    assert_eq!(tun_offload_flags(VIRTIO_NET_F_GUEST_CSUM), libc::TUN_F_CSUM);
    assert_eq!(
        tun_offload_flags(VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_GUEST_TSO4 | VIRTIO_NET_F_CSUM),
        libc::TUN_F_CSUM | libc::TUN_F_TSO4
    );
}
