//! Masking benchmarks: `apply_mask` against the plain byte loop of RFC 6455 §5.3.
//!
//! Run with `cargo bench -p tether-proto --bench mask`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use tether_proto::mask::apply_mask;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The definition from RFC 6455 §5.3, one byte at a time: the baseline.
fn naive_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

fn bench_mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for (label, size) in [
        ("16B", 16),
        ("1KiB", 1 << 10),
        ("64KiB", 64 << 10),
        ("1MiB", 1 << 20),
    ] {
        let mut buf: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("apply_mask", label), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0))
        });
        group.bench_with_input(BenchmarkId::new("naive", label), &size, |b, _| {
            b.iter(|| naive_mask(black_box(&mut buf), black_box(KEY), 0))
        });
    }
    // A payload as it lies in a read buffer: behind a client's 14-byte header (RFC 6455
    // §5.2, 64-bit length and masking key), so not aligned.
    let size = 64 << 10;
    let mut buf: Vec<u8> = (0..size + 14).map(|i| (i * 7 + 3) as u8).collect();
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("apply_mask/64KiB_after_header", |b| {
        b.iter(|| apply_mask(black_box(&mut buf[14..]), black_box(KEY), 0))
    });
    group.finish();
}

// `criterion_group!` defines an undocumented `pub fn`: kept in a private module.
mod group {
    criterion::criterion_group!(benches, super::bench_mask);
}
criterion_main!(group::benches);
