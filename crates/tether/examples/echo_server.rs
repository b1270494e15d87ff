//! An echo server: every text and binary message comes back as it went out.
//!
//! `cargo run --release -p tether --example echo_server -- 127.0.0.1:9001`
//!
//! This is the server the Autobahn TestSuite and the benchmarks run against. Replies are
//! queued (`poll_ready` then `start_send`, what `feed` does), so all replies to one read
//! leave in one write. It runs on jemalloc, as the `tether` binary does.

use std::sync::Arc;

use futures_util::future::poll_fn;
use futures_util::{SinkExt, StreamExt};
use tether::{Config, Message, State};
use tokio::net::TcpListener;

/// The `tether` binary's allocator (its `jemalloc` feature, and .cargo/config.toml), so the
/// benchmarks measure this server as Tether ships.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    // One configuration for all connections: each holds a pointer to it, not a copy.
    let config = Arc::new(config());
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("echo server listening on ws://{}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            // Boxed: the handshake's state is freed once it is done, and the task's future
            // holds only this pointer and the WebSocket (an idle connection's whole state).
            let handshake = Box::pin(tether::accept_with(tcp, config.clone(), |_| {
                Ok(Default::default())
            }));
            tokio::spawn(async move {
                let Ok(mut ws) = handshake.await else {
                    return;
                };
                loop {
                    // Room for a reply first: the send waits here (writing out) while half of
                    // `max_outbound_buffer` is queued, as `feed` would, but no message is
                    // held across the wait, which keeps the task 128 bytes smaller.
                    if ws.state() == State::Open
                        && poll_fn(|cx| ws.poll_ready_unpin(cx)).await.is_err()
                    {
                        break;
                    }
                    let Some(Ok(msg)) = ws.next().await else {
                        break;
                    };
                    if matches!(msg, Message::Text(_) | Message::Binary(_))
                        && ws.start_send_unpin(msg).is_err()
                    {
                        break;
                    }
                }
            });
        }
    })
}
