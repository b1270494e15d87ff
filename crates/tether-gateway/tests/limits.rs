//! Limits over real TCP: connections per client and overall (503 before the upgrade), the
//! handshake timeout, the idle timeout with keepalive pings.

mod common;

use std::time::{Duration, Instant};

use common::{PATIENCE, config_from, connect, get, raw_upgrade, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn connections_per_ip_over_the_limit_get_503() {
    let gw = start(config_from("[limits]\nmax_connections_per_ip = 2\n")).await;
    let first = connect(gw.addr, "/echo", None).await;
    let second = connect(gw.addr, "/ws", Some("tether.pubsub.v1")).await;
    let refused = raw_upgrade(gw.addr, "/echo", "").await;
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert!(refused.header("retry-after").is_some());
    // A slot frees when a connection ends.
    let mut first = first;
    first.close(None).await.unwrap();
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let answer = raw_upgrade(gw.addr, "/echo", "").await;
        if answer.status == 101 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(metrics.contains("tether_handshakes_refused_total{reason=\"ip_limit\"} "));
    // Plain HTTP is not limited.
    assert_eq!(get(gw.addr, "/healthz").await.status, 200);
    drop(second);
    gw.stop().await;
}

#[tokio::test]
async fn connections_over_the_overall_limit_get_503() {
    let gw = start(config_from("[limits]\nmax_connections = 1\n")).await;
    let only = connect(gw.addr, "/echo", None).await;
    let refused = raw_upgrade(gw.addr, "/echo", "").await;
    assert_eq!(refused.status, 503);
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(metrics.contains("tether_handshakes_refused_total{reason=\"connection_limit\"} 1\n"));
    drop(only);
    gw.stop().await;
}

#[tokio::test]
async fn unfinished_connections_per_ip_over_the_limit_get_503_and_websockets_do_not_count() {
    let gw = start(config_from("[limits]\nmax_pending_per_ip = 2\n")).await;
    // Upgraded connections leave the pending count.
    let _a = connect(gw.addr, "/echo", None).await;
    let _b = connect(gw.addr, "/echo", None).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(tcp);
    }
    // Both heads are being read (each holds a slot) once a third connection is refused.
    let deadline = Instant::now() + PATIENCE;
    let refused = loop {
        let answer = get(gw.addr, "/healthz").await;
        if answer.status != 200 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert!(refused.body.contains("too many pending connections"));
    // Another address is not affected.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = socket.connect(gw.addr).await.unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, other.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A slot frees when an unfinished connection goes away.
    drop(held.pop());
    let deadline = Instant::now() + PATIENCE;
    while get(gw.addr, "/healthz").await.status != 200 {
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(
        metrics.contains("tether_handshakes_refused_total{reason=\"pending_limit\"} "),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_handshake_timeout() {
    let gw = start(config_from("[limits]\nhandshake_timeout = \"300ms\"\n")).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = [0; 256];
    let read = tokio::time::timeout(PATIENCE, silent.read(&mut buf))
        .await
        .expect("the silent connection was never closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // Half a request head is no better than none.
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let read = tokio::time::timeout(PATIENCE, slow.read_to_end(&mut Vec::new()))
        .await
        .expect("the slow connection was never closed");
    assert!(read.is_ok() || read.is_err());
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(
        metrics.contains("tether_handshakes_refused_total{reason=\"timeout\"} 2\n"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_websocket_that_answers_nothing_is_pinged_then_closed() {
    let gw = start(config_from(
        "[limits]\nidle_timeout = \"400ms\"\nkeepalive_interval = \"100ms\"\n",
    ))
    .await;
    // A raw client: completes the handshake, then never answers (no pongs).
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(
        format!(
            "GET /echo HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            gw.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut received))
        .await
        .expect("the idle connection was never closed")
        .unwrap();
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(received.starts_with(b"HTTP/1.1 101"));
    let frames = &received[head_end..];
    // A ping (0x89) first, then a close (0x88) with 1008 policy violation.
    assert_eq!(frames[0], 0x89, "{frames:?}");
    let close = frames
        .iter()
        .position(|b| *b == 0x88)
        .expect("no close frame");
    assert_eq!(&frames[close + 2..close + 4], &1008u16.to_be_bytes());
    gw.stop().await;
}
