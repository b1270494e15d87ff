//! An echo server: every text and binary message comes back as it went out.
//!
//! `cargo run --release -p tether --example echo_server -- 127.0.0.1:9001`
//!
//! This is the server the Autobahn TestSuite and the benchmarks run against. Messages are
//! lent (`next_ref`): a reply to a small one is copied straight from the read buffer into the
//! outbound buffer, with no allocation or reference count; a large one is taken and queued by
//! reference, without a copy. Replies are queued, not flushed one by one, so all replies to
//! one read leave in one write. It runs on jemalloc, as the `tether` binary does.

use std::sync::Arc;

use futures_util::future::poll_fn;
use std::ops::ControlFlow;

use futures_util::SinkExt;
use tether::{Config, SHARE_THRESHOLD, State};
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
                    // `max_outbound_buffer` is queued, as `feed` would.
                    if ws.state() == State::Open
                        && poll_fn(|cx| ws.poll_ready_unpin(cx)).await.is_err()
                    {
                        break;
                    }
                    // The message the handler stopped at, still lent, so the task holds
                    // nothing across the wait: taken now and queued by reference, without a
                    // copy.
                    if let Some(msg) = ws.take_lent()
                        && ws.start_send_unpin(msg).is_err()
                    {
                        break;
                    }
                    // Small messages are answered from the read buffer as they are parsed. The
                    // handler stops at a large one, or at a reply that found the queue full.
                    let stopped = ws
                        .for_each_ref(|message, sender| {
                            if !message.is_data() {
                                // Pings and closes: the engine has answered them.
                                return ControlFlow::Continue(());
                            }
                            if message.payload().len() >= SHARE_THRESHOLD
                                || sender.send_ref(message).is_err()
                            {
                                return ControlFlow::Break(());
                            }
                            ControlFlow::Continue(())
                        })
                        .await;
                    if !matches!(stopped, Some(Ok(()))) {
                        break;
                    }
                }
            });
        }
    })
}
