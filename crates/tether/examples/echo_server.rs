//! An echo server: every text and binary message comes back as it went out.
//!
//! `cargo run --release -p tether --example echo_server -- 127.0.0.1:9001`
//!
//! This is the server the Autobahn TestSuite and the benchmarks run against. Replies are
//! queued with `feed`, so all replies to one read leave in one write.

use futures_util::{SinkExt, StreamExt};
use tether::{Config, Message};
use tokio::net::TcpListener;

fn config() -> Config {
    let mut config = Config::default();
    // The Autobahn suite sends messages up to 16 MiB; leave room.
    config.max_frame_size = 64 << 20;
    config.max_message_size = 64 << 20;
    config.max_outbound_buffer = 64 << 20;
    // Compress every message when permessage-deflate is negotiated: kosoku 0.1.0 mishandles an
    // uncompressed message on a compressed connection (conformance/NOTES.md).
    if let Some(deflate) = config.deflate.as_mut() {
        deflate.min_compress_size = 0;
    }
    config
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string());
    // One thread: the benchmarks pin the server to one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("echo server listening on ws://{}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                // Boxed: the handshake's state is freed once it is done, so the task of an
                // idle connection holds only the WebSocket.
                let handshake = tether::accept_with(tcp, config(), |_| Ok(Default::default()));
                let Ok(mut ws) = Box::pin(handshake).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if matches!(msg, Message::Text(_) | Message::Binary(_))
                        && ws.feed(msg).await.is_err()
                    {
                        break;
                    }
                }
            });
        }
    })
}
