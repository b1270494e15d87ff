//! `tether connect --listen-tcp ADDR URL`: a local TCP listener whose every connection is
//! carried over a new WebSocket to URL, as binary messages both ways (the client side of the
//! gateway's TCP bridge).
//!
//! Flow control: each direction moves one chunk at a time and waits until it is written
//! before reading more, so a slow reader on either side slows the writer on the other, with
//! at most one chunk (64 KiB) plus the WebSocket's outbound buffer in memory per direction.
//!
//! Close mapping: EOF from the TCP client sends close 1000 and keeps delivering what the
//! server still sends until its close arrives. WebSocket has no half-close: the client's EOF
//! ends the session both ways (the gateway's bridge then closes the backend), so a client
//! that shuts down its sending side while still expecting data loses what is in flight. The server's close 1000 ends the TCP
//! connection with EOF (FIN); any other code, or a WebSocket lost without a close, resets it
//! (RST), so the client sees a failure. A TCP client that goes away mid-stream (write
//! error) gets close 1001 "going away" sent for it.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tether::{CloseCode, CloseFrame, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

use crate::connect::ConnectArgs;
use crate::exit::Failure;
use crate::session;

/// The subprotocol offered when none is given: the gateway bridge's.
pub const DEFAULT_SUBPROTOCOL: &str = "binary";

/// Bytes read from a TCP client per WebSocket message, at most.
const CHUNK: usize = 64 << 10;

/// Runs the listener until the process is stopped.
pub async fn run(args: ConnectArgs, listen: &str) -> Result<(), Failure> {
    let mut subprotocols = args.subprotocols.clone();
    if subprotocols.is_empty() {
        subprotocols.push(DEFAULT_SUBPROTOCOL.to_string());
    }
    // Checks the options once, before anyone connects.
    args.client.builder(&args.url, &subprotocols)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| Failure::usage(format!("--listen-tcp {listen}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::usage(format!("--listen-tcp {listen}: {e}")))?;
    eprintln!(
        "tether: listening on tcp://{local}, each connection carried to {}",
        args.url
    );
    let args = std::sync::Arc::new((args, subprotocols));
    let counter = AtomicU64::new(0);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                eprintln!("tether: accepting on {local}: {e}");
                continue;
            }
        };
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let args = args.clone();
        tokio::spawn(async move {
            let (args, subprotocols) = &*args;
            let prefix = format!("[{n}] ");
            match carry(tcp, args, subprotocols, &prefix).await {
                Ok(how) => eprintln!("tether: {prefix}{peer}: {how}"),
                Err(failure) => eprintln!("tether: {prefix}{peer}: {}", failure.message),
            }
        });
    }
}

/// Carries one TCP connection over a new WebSocket; says how it ended.
async fn carry(
    tcp: TcpStream,
    args: &ConnectArgs,
    subprotocols: &[String],
    prefix: &str,
) -> Result<String, Failure> {
    let _ = tcp.set_nodelay(true);
    let builder = args.client.builder(&args.url, subprotocols)?;
    let (ws, _) = session::open(builder, &args.client, &args.url, prefix).await?;
    let (mut ws_rx, mut ws_tx) = ws.split();
    let (mut tcp_rx, mut tcp_tx) = tcp.into_split();

    // TCP client to server. Ends at the client's EOF, after sending close 1000.
    let upstream = async {
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            match tcp_rx.read_buf(&mut buf).await {
                Ok(0) => {
                    let _ = ws_tx
                        .send(Message::Close(Some(CloseFrame::new(CloseCode::NORMAL, ""))))
                        .await;
                    return;
                }
                Err(_) => {
                    // RFC 6455 §7.4.1: 1001, "an endpoint is going away".
                    let frame = CloseFrame::new(CloseCode(1001), "tcp client reset");
                    let _ = ws_tx.send(Message::Close(Some(frame))).await;
                    return;
                }
                Ok(_) => {
                    // Waits until written: the TCP client is read no faster than the
                    // server takes its bytes.
                    if ws_tx
                        .send(Message::Binary(buf.split().freeze()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    };
    // Server to TCP client. Ends with the WebSocket.
    let downstream = async {
        while let Some(item) = ws_rx.next().await {
            let data = match item {
                Ok(Message::Binary(data)) => data,
                Ok(Message::Text(text)) => text.into_bytes(),
                Ok(Message::Close(frame)) => {
                    let (how, clean) = match frame {
                        Some(f) => (
                            format!(
                                "closed by the server with {} {}",
                                f.code.0,
                                f.reason.as_str()
                            ),
                            f.code == CloseCode::NORMAL,
                        ),
                        None => ("closed by the server".to_string(), true),
                    };
                    if clean {
                        let _ = tcp_tx.shutdown().await;
                    }
                    return Down::Closed { how, clean };
                }
                Ok(_) => continue,
                Err(e) => return Down::Lost(Failure::from_error(&e, &args.url).message),
            };
            if tcp_tx.write_all(&data).await.is_err() {
                return Down::ClientGone;
            }
        }
        Down::Lost("the connection ended without a close frame".to_string())
    };
    let down = {
        tokio::pin!(downstream);
        let first = {
            tokio::pin!(upstream);
            tokio::select! {
                down = &mut downstream => Some(down),
                () = &mut upstream => None,
            }
        };
        match first {
            Some(down) => down,
            // The client's EOF: what the server still sends goes to the client until its close.
            None => downstream.await,
        }
    };
    match down {
        Down::Closed { how, clean: true } => Ok(how),
        Down::Closed { how, clean: false } => {
            reset(tcp_tx);
            Ok(format!("{how} (TCP connection reset)"))
        }
        Down::Lost(why) => {
            reset(tcp_tx);
            Err(Failure::usage(format!("{why} (TCP connection reset)")))
        }
        Down::ClientGone => {
            // RFC 6455 §7.4.1: 1001 "going away", for the endpoint that left.
            let frame = CloseFrame::new(CloseCode(1001), "tcp client went away");
            let _ = ws_tx.send(Message::Close(Some(frame))).await;
            Err(Failure::usage("the TCP client went away; sent close 1001"))
        }
    }
}

/// How the server-to-client direction ended.
enum Down {
    /// The server's close frame; `clean` for 1000 (or no code), which the TCP client sees as
    /// EOF. Any other code (the bridge's 1014 for a backend reset, 1011 for an unreachable
    /// backend) resets the TCP connection, so the client sees a failure, not a clean end.
    Closed { how: String, clean: bool },
    /// The WebSocket failed without a closing handshake.
    Lost(String),
    /// Writing to the TCP client failed.
    ClientGone,
}

/// Resets the TCP connection: zero linger, and no FIN from the write half; the read half's
/// drop then closes the socket with RST.
fn reset(write: OwnedWriteHalf) {
    let _ = write.as_ref().set_zero_linger();
    write.forget();
}
