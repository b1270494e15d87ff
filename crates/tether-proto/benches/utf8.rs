//! UTF-8 validation benchmarks: `Utf8Validator` on ASCII and multi-byte text, whole and in
//! 1 KiB pieces (as a message arrives over several reads or fragments).
//!
//! Run with `cargo bench -p tether-proto --bench utf8`.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use tether_proto::utf8::Utf8Validator;

const PIECE: usize = 1 << 10;

/// `len` bytes of text built from `unit`, cut on a character boundary at or below `len`.
fn text(unit: &str, len: usize) -> Vec<u8> {
    let mut s = unit.repeat(len / unit.len() + 1);
    let mut cut = len;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.into_bytes()
}

fn validate_whole(data: &[u8]) {
    let mut v = Utf8Validator::new();
    v.feed(data).expect("valid");
    v.finish().expect("complete");
}

fn validate_pieces(data: &[u8]) {
    let mut v = Utf8Validator::new();
    // Fixed-size pieces split multi-byte characters, exercising the carry-over path.
    for piece in data.chunks(PIECE) {
        v.feed(piece).expect("valid");
    }
    v.finish().expect("complete");
}

fn bench_utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    // ASCII, and a mix of 2-, 3- and 4-byte sequences.
    let kinds = [
        ("ascii", "The quick brown fox jumps over the lazy dog. "),
        ("multibyte", "κόσμε 𝄞 € 日本語テキスト ñandú "),
    ];
    for (kind, unit) in kinds {
        for (size_label, size) in [("1KiB", 1 << 10), ("1MiB", 1 << 20)] {
            let data = text(unit, size);
            group.throughput(Throughput::Bytes(data.len() as u64));
            let id = format!("{kind}/{size_label}");
            group.bench_with_input(BenchmarkId::new("whole", &id), &data, |b, d| {
                b.iter(|| validate_whole(black_box(d)))
            });
            group.bench_with_input(BenchmarkId::new("1KiB_pieces", &id), &data, |b, d| {
                b.iter(|| validate_pieces(black_box(d)))
            });
        }
    }
    group.finish();
}

// `criterion_group!` defines an undocumented `pub fn`: kept in a private module.
mod group {
    criterion::criterion_group!(benches, super::bench_utf8);
}
criterion_main!(group::benches);
