//! Criterion bench of the virtio hot path without KVM: one 512-byte virtio-blk read and one
//! write, each submitted through the descriptor/available rings, processed by our device
//! (pread/pwrite straight into guest memory) and completed on the used ring with an interrupt.
//! This is the per-request cost the VMM adds on top of the host's file I/O.

use std::io::Write;

use criterion::{criterion_group, criterion_main, Criterion};
use vcompare_vmm::devices::virtio::block::{VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT};
use vcompare_vmm::devices::virtio::driver_model::BlockDriver;

fn bench(c: &mut Criterion) {
    let path = std::env::temp_dir().join(format!("vcmp-bench-blk-{}", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(&vec![7u8; 8192])
        .unwrap();
    let mut d = BlockDriver::new(&path).unwrap();
    let mut g = c.benchmark_group("virtio_blk_request");
    g.bench_function("read_512B", |b| {
        b.iter(|| {
            d.request(VIRTIO_BLK_T_IN, 3, false);
            let _ = d.irq.read();
        })
    });
    g.bench_function("write_512B", |b| {
        b.iter(|| {
            d.request(VIRTIO_BLK_T_OUT, 5, true);
            let _ = d.irq.read();
        })
    });
    g.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
