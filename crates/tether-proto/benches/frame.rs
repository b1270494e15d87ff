//! Framing benchmarks: header parse and encode, and the whole engine receiving and sending
//! many small messages.
//!
//! Run with `cargo bench -p tether-proto --bench frame`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_main};
use tether_proto::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use tether_proto::mask::apply_mask;
use tether_proto::{Config, Connection, Message, Utf8Bytes};

/// How many messages the engine benchmarks push through per iteration.
const MESSAGES: usize = 1000;
/// Payload size of each of those messages.
const PAYLOAD: usize = 16;
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn header(opcode: OpCode, mask: Option<[u8; 4]>, len: u64) -> FrameHeader {
    FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
        payload_len: len,
    }
}

fn encode(h: &FrameHeader) -> Vec<u8> {
    let mut buf = [0; MAX_HEADER_LEN];
    let n = h.encode(&mut buf);
    buf[..n].to_vec()
}

/// Header shapes: 7-bit, 16-bit and 64-bit lengths, masked (client to server) or not.
fn header_cases() -> [(&'static str, FrameHeader); 4] {
    [
        ("short_unmasked", header(OpCode::Text, None, 16)),
        ("short_masked", header(OpCode::Text, Some(KEY), 16)),
        ("len16_masked", header(OpCode::Binary, Some(KEY), 1024)),
        ("len64_masked", header(OpCode::Binary, Some(KEY), 1 << 20)),
    ]
}

fn bench_header(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    for (name, h) in header_cases() {
        let bytes = encode(&h);
        group.bench_function(format!("parse/{name}"), |b| {
            b.iter(|| FrameHeader::parse(black_box(&bytes)))
        });
        group.bench_function(format!("encode/{name}"), |b| {
            let mut out = [0; MAX_HEADER_LEN];
            b.iter(|| black_box(&h).encode(black_box(&mut out)))
        });
    }
    group.finish();
}

/// `MESSAGES` masked text frames of `PAYLOAD` bytes each, as a client sends them.
fn masked_text_frames() -> Vec<u8> {
    let text = b"0123456789abcdef";
    assert_eq!(text.len(), PAYLOAD);
    let mut wire = Vec::with_capacity(MESSAGES * (6 + PAYLOAD));
    for i in 0..MESSAGES {
        // A different key per frame, as a real client would use.
        let key = (i as u32).wrapping_mul(0x9e37_79b9).to_be_bytes();
        wire.extend_from_slice(&encode(&header(OpCode::Text, Some(key), PAYLOAD as u64)));
        let start = wire.len();
        wire.extend_from_slice(text);
        apply_mask(&mut wire[start..], key, 0);
    }
    wire
}

fn config() -> Config {
    let mut config = Config::default();
    config.deflate = None;
    config
}

fn bench_receive(c: &mut Criterion) {
    let wire = masked_text_frames();
    let mut group = c.benchmark_group("receive");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("server_1000x16B_text_one_buffer", |b| {
        b.iter(|| {
            let mut conn = Connection::server(config(), None);
            conn.receive(black_box(&wire));
            let mut count = 0;
            while let Some(event) = conn.poll_event() {
                match event {
                    Ok(Message::Text(t)) => {
                        black_box(t);
                        count += 1;
                    }
                    other => panic!("unexpected event {other:?}"),
                }
            }
            assert_eq!(count, MESSAGES);
        })
    });
    group.finish();
}

fn bench_send(c: &mut Criterion) {
    let text = Utf8Bytes::from_static("0123456789abcdef");
    let mut group = c.benchmark_group("send");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.bench_function("server_1000x16B_text", |b| {
        b.iter_batched_ref(
            || Connection::server(config(), None),
            |conn| {
                for _ in 0..MESSAGES {
                    conn.send(Message::Text(text.clone())).expect("open");
                }
                black_box(conn.transmit_chunk());
                conn.advance_transmit(conn.pending_transmit());
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("client_1000x16B_text", |b| {
        b.iter_batched_ref(
            || {
                let mut n = 0u32;
                Connection::client(config(), None, move || {
                    n = n.wrapping_add(0x9e37_79b9);
                    n.to_be_bytes()
                })
            },
            |conn| {
                for _ in 0..MESSAGES {
                    conn.send(Message::Text(text.clone())).expect("open");
                }
                black_box(conn.transmit_chunk());
                conn.advance_transmit(conn.pending_transmit());
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// An echo of `MESSAGES` small text messages by a server, two ways: owned messages
/// (`poll_event` then `send`), and lent to a handler (`for_each_ref` and `Sender::send_ref`).
fn bench_echo(c: &mut Criterion) {
    let wire = masked_text_frames();
    let mut group = c.benchmark_group("echo");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    let drain = |conn: &mut Connection| {
        let n = conn.pending_transmit();
        assert_eq!(n, MESSAGES * (2 + PAYLOAD));
        conn.advance_transmit(n);
    };
    group.bench_function("server_1000x16B_text_owned", |b| {
        b.iter(|| {
            let mut conn = Connection::server(config(), None);
            conn.receive(black_box(&wire));
            while let Some(event) = conn.poll_event() {
                conn.send(event.expect("valid")).expect("open");
            }
            drain(&mut conn);
        })
    });
    group.bench_function("server_1000x16B_text_for_each_ref", |b| {
        b.iter(|| {
            let mut conn = Connection::server(config(), None);
            conn.receive(black_box(&wire));
            let flow = conn.for_each_ref(|message, sender| {
                sender.send_ref(message).expect("open");
                std::ops::ControlFlow::Continue(())
            });
            assert_eq!(flow, Ok(std::ops::ControlFlow::Continue(())));
            drain(&mut conn);
        })
    });
    group.finish();
}

// `criterion_group!` defines an undocumented `pub fn`: kept in a private module.
mod group {
    criterion::criterion_group!(
        benches,
        super::bench_header,
        super::bench_receive,
        super::bench_send,
        super::bench_echo
    );
}
criterion_main!(group::benches);
