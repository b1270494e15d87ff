//! Bridge routes under load: 100 MiB each way at once through a TCP echo server, and flow
//! control in both directions (a side that does not read stops the other's writes instead
//! of filling the gateway's memory).

mod bridge_support;
mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bridge_support::{bridge_client, echo_server, next_binary};
use common::{PATIENCE, config_from, start};
use futures_util::{SinkExt, StreamExt};
use tether::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CHUNK: usize = 64 << 10;

/// The period of the test pattern: not a multiple of any chunk size, so bytes delivered out
/// of order, twice or not at all shift the pattern and fail the comparison.
const PERIOD: usize = (1 << 20) + 257;

/// Pseudo-random bytes (xorshift), two periods long so any window of a period is one slice.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut bytes: Vec<u8> = (0..PERIOD)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        bytes.extend_from_within(..);
        bytes
    })
}

/// The `len` bytes of the stream that start at `offset`.
fn stream_bytes(offset: usize, len: usize) -> &'static [u8] {
    assert!(len <= PERIOD);
    let start = offset % PERIOD;
    &pattern()[start..start + len]
}

/// Whether `data` is the stream's bytes at `offset`.
fn is_stream_at(offset: usize, data: &[u8]) -> bool {
    data.chunks(PERIOD)
        .enumerate()
        .all(|(i, piece)| piece == stream_bytes(offset + i * PERIOD, piece.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_mebibytes_each_way_at_once_arrive_intact() {
    const TOTAL: usize = 100 << 20;
    let echo = echo_server().await;
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/echo-tcp\"\nkind = \"bridge\"\ntarget = \"{echo}\"\n"
    )))
    .await;
    let ws = bridge_client(gw.addr, "/echo-tcp").await;
    let started = Instant::now();
    let (mut tx, mut rx) = {
        let (rx, tx) = ws.split();
        (tx, rx)
    };
    let sender = tokio::spawn(async move {
        for offset in (0..TOTAL).step_by(CHUNK) {
            let len = CHUNK.min(TOTAL - offset);
            tx.feed(Message::binary(stream_bytes(offset, len)))
                .await
                .unwrap();
        }
        tx.flush().await.unwrap();
        tx
    });
    let mut received = 0;
    while received < TOTAL {
        let msg = tokio::time::timeout(PATIENCE, rx.next())
            .await
            .expect("the echo stalled")
            .expect("the connection ended")
            .expect("the connection failed");
        if let Message::Binary(data) = msg {
            assert!(
                data.len() <= 64 << 10,
                "messages are at most read_buffer_size"
            );
            assert!(
                is_stream_at(received, &data),
                "bytes {received}..{} differ from what was sent",
                received + data.len()
            );
            received += data.len();
        }
    }
    assert_eq!(received, TOTAL);
    let mut tx = sender.await.unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "100 MiB each way in {elapsed:?} ({:.0} MiB/s each way)",
        100.0 / elapsed.as_secs_f64()
    );
    tx.close().await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, rx.next()).await {}
    let metrics = common::get(gw.addr, "/metrics").await.body;
    let sent = bridge_support::metric(
        &metrics,
        "tether_bridge_backend_sent_bytes_total{route=\"/echo-tcp\"}",
    );
    assert_eq!(sent, TOTAL as u64);
    gw.stop().await;
}

/// How long a write may wait before the test calls the writer stalled.
const STALL: Duration = Duration::from_secs(1);

/// More than every socket buffer on the path can hold (Linux autotunes a receive buffer
/// up to `tcp_rmem`'s 6 to 32 MiB): reaching it means the gateway buffers without bound.
const BOUND: usize = 96 << 20;

#[tokio::test]
async fn a_client_that_does_not_read_stops_the_gateway_reading_the_backend() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/b\"\nkind = \"bridge\"\ntarget = \"{backend}\"\n"
    )))
    .await;
    let mut ws = bridge_client(gw.addr, "/b").await;
    let (mut tcp, _) = listener.accept().await.unwrap();
    // The backend writes as fast as it can; the client reads nothing.
    let mut written = 0;
    while written < 2 * BOUND {
        let chunk = stream_bytes(written, CHUNK);
        match tokio::time::timeout(STALL, tcp.write(chunk)).await {
            Ok(Ok(n)) => written += n,
            Ok(Err(e)) => panic!("backend write failed: {e}"),
            Err(_) => break, // a write that cannot proceed: nothing was written
        }
    }
    assert!(
        written < BOUND,
        "the backend wrote {written} bytes to a client that reads nothing"
    );
    eprintln!("the backend's writes stopped after {} KiB", written >> 10);
    // Once the client reads, everything written arrives, in order, and the backend can
    // write again.
    let mut received = 0;
    while received < written {
        let data = next_binary(&mut ws).await;
        assert!(is_stream_at(received, &data));
        received += data.len();
    }
    assert_eq!(received, written);
    let more = stream_bytes(written, CHUNK);
    tokio::time::timeout(PATIENCE, tcp.write_all(more))
        .await
        .expect("the backend still cannot write after the client read everything")
        .unwrap();
    let mut got = Vec::new();
    while got.len() < CHUNK {
        got.extend(next_binary(&mut ws).await);
    }
    assert_eq!(got, more);
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}

#[tokio::test]
async fn a_backend_that_does_not_read_stops_the_gateway_reading_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/b\"\nkind = \"bridge\"\ntarget = \"{backend}\"\n"
    )))
    .await;
    let mut ws = bridge_client(gw.addr, "/b").await;
    let (mut tcp, _) = listener.accept().await.unwrap();
    // The client sends as fast as it can; the backend reads nothing.
    let mut sent = 0;
    while sent < 2 * BOUND {
        let msg = Message::binary(stream_bytes(sent, CHUNK));
        match tokio::time::timeout(STALL, ws.send(msg)).await {
            Ok(Ok(())) => sent += CHUNK,
            Ok(Err(e)) => panic!("client send failed: {e}"),
            Err(_) => break,
        }
    }
    assert!(
        sent < BOUND,
        "the client sent {sent} bytes to a backend that reads nothing"
    );
    eprintln!("the client's sends stopped after {} KiB", sent >> 10);
    // Once the backend reads, the client can send again, and the backend gets it all.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0; CHUNK];
        let mut total = 0;
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    });
    tokio::time::timeout(PATIENCE, ws.send(Message::binary(stream_bytes(0, CHUNK))))
        .await
        .expect("the client still cannot send after the backend started reading")
        .unwrap();
    ws.close(None).await.unwrap();
    let total = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();
    assert!(total > sent, "the backend got {total} of {sent}+ bytes");
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}
