//! Helpers of the bridge tests: backends, and reading what a bridge sends.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;

use futures_util::StreamExt;
use tether::Message;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::common::{self, PATIENCE, connect};

/// A port nothing listens on: bound, then released.
pub async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A TCP echo server: every connection gets its bytes back.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut rd, mut wr) = tcp.into_split();
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
                let _ = wr.shutdown().await;
            });
        }
    });
    addr
}

/// Connects offering only `binary`.
pub async fn bridge_client(addr: SocketAddr, path: &str) -> common::Client {
    connect(addr, path, Some("binary")).await
}

/// The next binary message, skipping control frames.
pub async fn next_binary(ws: &mut common::Client) -> Vec<u8> {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no message in time")
            .expect("the connection ended")
            .expect("the connection failed");
        match msg {
            Message::Binary(data) => return data.to_vec(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

/// Reads binary messages until `len` bytes have arrived.
pub async fn read_bytes(ws: &mut common::Client, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        out.extend(next_binary(ws).await);
    }
    out
}

/// Reads until the close frame and the end of the stream: its code and reason.
pub async fn close_frame(ws: &mut common::Client) -> (u16, String) {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no close in time");
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => {
                while let Ok(Some(_)) = tokio::time::timeout(PATIENCE, ws.next()).await {}
                return (frame.code.0, frame.reason.as_str().to_string());
            }
            Some(Ok(Message::Close(None))) => panic!("a close frame without a code"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the connection failed before the close frame: {e}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}

pub fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}
