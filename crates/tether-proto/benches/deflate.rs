//! permessage-deflate codec throughput: compress and decompress of text-like payloads.

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tether_proto::Role;
use tether_proto::deflate::{DeflateParams, PerMessageDeflate};

/// Payload sizes: a tiny message, a typical JSON message, a large one.
const SIZES: [usize; 3] = [16, 1024, 64 * 1024];

/// Distinct messages cycled through, so context takeover does not see the same bytes every time.
const VARIANTS: u64 = 16;

/// Deterministic text-like data: JSON-ish words, numbers and punctuation.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "{\"id\":",
        "\"type\":",
        "\"message\",",
        "\"user\":",
        "\"alice\",",
        "\"bob\",",
        "\"text\":",
        "\"hello",
        "world\",",
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "\"ts\":",
        "true,",
        "null},",
    ];
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let pick = (state % 26) as usize;
        if pick < WORDS.len() {
            out.extend_from_slice(WORDS[pick].as_bytes());
        } else {
            out.extend_from_slice((state % 1_000_000).to_string().as_bytes());
        }
        out.push(b' ');
    }
    out.truncate(len);
    out
}

fn params(no_context_takeover: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

fn bench_compress(c: &mut Criterion) {
    for (name, no_context_takeover) in [("compress", false), ("compress_no_context_takeover", true)]
    {
        let mut group = c.benchmark_group(name);
        for size in SIZES {
            let payloads: Vec<Vec<u8>> = (0..VARIANTS).map(|seed| text(size, seed)).collect();
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(
                BenchmarkId::from_parameter(size),
                &payloads,
                |b, payloads| {
                    let mut pmd =
                        PerMessageDeflate::new(Role::Server, params(no_context_takeover), 1);
                    let mut out = Vec::new();
                    let mut i = 0;
                    b.iter(|| {
                        out.clear();
                        pmd.compress(black_box(&payloads[i % payloads.len()]), &mut out);
                        i += 1;
                        black_box(out.len())
                    });
                },
            );
        }
        group.finish();
    }
}

fn bench_decompress(c: &mut Criterion) {
    let mut group = c.benchmark_group("decompress");
    for size in SIZES {
        // Each message compressed on its own (the sender resets its context) so that the receiver,
        // resetting after every message, can inflate them in any order.
        let mut sender = PerMessageDeflate::new(Role::Client, params(true), 1);
        let messages: Vec<Vec<u8>> = (0..VARIANTS)
            .map(|seed| {
                let mut wire = Vec::new();
                sender.compress(&text(size, seed), &mut wire);
                wire
            })
            .collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(size),
            &messages,
            |b, messages| {
                let mut pmd = PerMessageDeflate::new(Role::Server, params(true), 1);
                let mut out = Vec::new();
                let mut i = 0;
                b.iter(|| {
                    out.clear();
                    let wire = black_box(&messages[i % messages.len()]);
                    pmd.decompress(wire, &mut out, 1 << 20).unwrap();
                    pmd.finish_message(&mut out, 1 << 20).unwrap();
                    i += 1;
                    black_box(out.len())
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_compress, bench_decompress);
criterion_main!(benches);
