//! One bridge session: connect to the backend, then copy bytes both ways until either side
//! ends, and close the other side with a code that says which and why.
//!
//! | what happened                                   | the client gets                               |
//! |-------------------------------------------------|-----------------------------------------------|
//! | backend unreachable (DNS, refused, timeout, TLS) | 1011 `backend unreachable` (details: the log) |
//! | backend sent EOF                                | 1000 `backend closed the connection`          |
//! | backend reset                                   | 1014 `backend connection reset`               |
//! | other backend read or write error               | 1014 `backend connection failed`              |
//! | client sent close                               | the engine's reply (RFC 6455 §5.5.1)          |
//! | client sent a text message                      | 1003 `this bridge carries binary messages only` |
//! | client vanished or broke the protocol           | the engine's close, if any                    |
//! | gateway shutdown                                | 1001 `server shutting down`                   |
//!
//! Once connected, every ending shuts the backend's write side down (it reads EOF) and drops
//! the connection; messages arriving after the first side ended are discarded.
//!
//! Flow control: each direction moves one chunk at a time and waits for it to be taken.
//! Client to backend: the next WebSocket message is read only once the previous one is
//! written to the backend, so a slow backend stops reads from the client (memory: one
//! message, at most `limits.max_message_size`). Backend to client: the next read from the
//! backend waits until the previous chunk is written to the client's socket, so a client
//! that does not read stops reads from the backend (memory: one `read_buffer_size` chunk).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tether::upgrade::HyperWebSocket;
use tether::{CloseCode, CloseFrame, Message, ReadHalf, WriteHalf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::backend::{self, BackendStream};
use super::{Admitted, BridgeRoute};
use crate::config::ProxyProtocol;
use crate::shutdown::signalled;

type Io = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

/// Why the client-to-backend direction stopped.
enum FromClient {
    /// The client's close frame arrived (the engine queued the reply).
    Closed,
    /// A text message: this route carries bytes only.
    Text,
    /// The WebSocket failed or ended without a close frame.
    Failed(Option<tether::Error>),
    /// Writing to the backend failed.
    BackendFailed(io::Error),
}

/// Why the backend-to-client direction stopped.
enum FromBackend {
    /// The backend closed its side (EOF).
    Eof,
    /// Reading from the backend failed.
    Failed(io::Error),
    /// Sending to the client failed.
    ClientFailed(tether::Error),
}

/// Runs the session of an admitted client until both sides are closed. `close_timeout`
/// bounds every goodbye (our close frame, the client's reply, the TCP shutdown).
pub(crate) async fn serve(
    mut ws: HyperWebSocket,
    route: Arc<BridgeRoute>,
    admitted: Admitted,
    mut shutdown: watch::Receiver<bool>,
    close_timeout: Duration,
) {
    let _session = route.metrics.session();
    let Admitted {
        target,
        addrs,
        client,
        local,
    } = admitted;
    let connected = tokio::select! {
        biased;
        _ = signalled(&mut shutdown) => {
            let frame = CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down");
            let _ = tokio::time::timeout(close_timeout, ws.close(Some(frame))).await;
            return;
        }
        connected = connect(&route, &target.host, addrs, client, local) => connected,
    };
    let backend = match connected {
        Ok(backend) => backend,
        Err(why) => {
            route.metrics.connect_failure();
            tracing::warn!(%client, %target, "bridge backend unreachable: {why}");
            let frame = CloseFrame::new(CloseCode::INTERNAL_ERROR, "backend unreachable");
            let _ = tokio::time::timeout(close_timeout, ws.close(Some(frame))).await;
            return;
        }
    };
    tracing::debug!(%client, %target, "bridge connected");
    let (mut ws_rx, mut ws_tx) = ws.split();
    let (mut tcp_rx, mut tcp_tx) = tokio::io::split(backend);
    let goodbye = {
        let up = client_to_backend(&mut ws_rx, &mut tcp_tx, &route);
        let down = backend_to_client(&mut tcp_rx, &mut ws_tx, &route);
        tokio::pin!(up, down);
        tokio::select! {
            biased;
            _ = signalled(&mut shutdown) => Some(CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down")),
            end = &mut up => match end {
                FromClient::Closed => None,
                FromClient::Text => Some(CloseFrame::new(
                    CloseCode::UNSUPPORTED_DATA,
                    "this bridge carries binary messages only",
                )),
                FromClient::Failed(e) => {
                    tracing::debug!(%client, %target, "bridge client gone: {e:?}");
                    None
                }
                FromClient::BackendFailed(e) => {
                    route.metrics.backend_error();
                    tracing::info!(%client, %target, "bridge backend write failed: {e}");
                    Some(backend_failure(&e))
                }
            },
            end = &mut down => match end {
                FromBackend::Eof => Some(CloseFrame::new(CloseCode::NORMAL, "backend closed the connection")),
                FromBackend::Failed(e) => {
                    route.metrics.backend_error();
                    tracing::info!(%client, %target, "bridge backend read failed: {e}");
                    Some(backend_failure(&e))
                }
                FromBackend::ClientFailed(e) => {
                    tracing::debug!(%client, %target, "bridge client gone: {e}");
                    None
                }
            },
        }
    };
    // Both directions have stopped; say goodbye to each side, within the close timeout.
    let backend_goodbye = async {
        // The backend sees EOF: the client is done sending (TLS: close_notify first).
        let _ = tcp_tx.shutdown().await;
    };
    let client_goodbye = async {
        if let Some(frame) = goodbye {
            // Fails harmlessly when the connection is already closing.
            let _ = ws_tx.send(Message::Close(Some(frame))).await;
        }
        // Reads the client's close reply (or sends ours to the client's close) and waits for
        // the end of the closing handshake; messages still arriving are dropped.
        while let Some(Ok(_)) = ws_rx.next().await {}
    };
    // Side by side, so a backend slow to take its TLS close does not delay the client's.
    let finish = async { tokio::join!(backend_goodbye, client_goodbye) };
    let _ = tokio::time::timeout(close_timeout, finish).await;
}

/// The close frame for a backend connection that failed mid-session. RFC 6455 §7.4.1 has no
/// code for it; 1014 (Bad Gateway, IANA registry) says a gateway lost its upstream.
fn backend_failure(e: &io::Error) -> CloseFrame {
    let reason = match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "backend connection reset",
        _ => "backend connection failed",
    };
    CloseFrame::new(CloseCode::BAD_GATEWAY, reason)
}

/// Resolves nothing (the addresses were checked before the `101`): connects to the first
/// address that accepts, within the route's `connect_timeout`.
async fn connect(
    route: &BridgeRoute,
    host: &str,
    addrs: Result<Vec<SocketAddr>, String>,
    client: SocketAddr,
    local: Option<SocketAddr>,
) -> Result<BackendStream, String> {
    let addrs = addrs?;
    let proxy = route
        .proxy_protocol
        .map(|ProxyProtocol::V2| (client, local));
    let connecting = backend::connect(&addrs, host, proxy, route.tls.as_ref());
    match tokio::time::timeout(route.connect_timeout, connecting).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(format!("{addrs:?}: {e}")),
        Err(_) => Err(format!(
            "{addrs:?}: no connection within {:?}",
            route.connect_timeout
        )),
    }
}

/// Client's binary messages to the backend, one at a time.
async fn client_to_backend<W>(
    ws_rx: &mut ReadHalf<Io>,
    tcp_tx: &mut W,
    route: &BridgeRoute,
) -> FromClient
where
    W: AsyncWrite + Unpin,
{
    loop {
        match ws_rx.next().await {
            Some(Ok(Message::Binary(data))) => {
                // Waits while the backend is slow to read: no further WebSocket reads.
                if let Err(e) = tcp_tx.write_all(&data).await {
                    return FromClient::BackendFailed(e);
                }
                if let Err(e) = tcp_tx.flush().await {
                    return FromClient::BackendFailed(e);
                }
                route.metrics.to_backend(data.len());
            }
            // RFC 6455 §7.4.1: 1003 "indicates that an endpoint is terminating the connection
            // because it has received a type of data it cannot accept".
            Some(Ok(Message::Text(_))) => return FromClient::Text,
            Some(Ok(Message::Close(_))) => return FromClient::Closed,
            Some(Ok(_)) => {} // pings are answered by the engine
            Some(Err(e)) => return FromClient::Failed(Some(e)),
            None => return FromClient::Failed(None),
        }
    }
}

/// The backend's bytes to the client, one read at a time, each read a binary message.
async fn backend_to_client<R>(
    tcp_rx: &mut R,
    ws_tx: &mut WriteHalf<Io>,
    route: &BridgeRoute,
) -> FromBackend
where
    R: AsyncRead + Unpin,
{
    let chunk = route.read_buffer_size;
    let mut buf = BytesMut::with_capacity(chunk);
    loop {
        // Reuses the allocation once the previous chunk has been written out.
        buf.reserve(chunk);
        match tcp_rx.read_buf(&mut (&mut buf).limit(chunk)).await {
            Ok(0) => return FromBackend::Eof,
            Ok(n) => {
                let data = buf.split().freeze();
                // `send` returns once the message is written to the client's socket: a client
                // that does not read stops further reads from the backend.
                if let Err(e) = ws_tx.send(Message::Binary(data)).await {
                    return FromBackend::ClientFailed(e);
                }
                route.metrics.to_client(n);
            }
            Err(e) => return FromBackend::Failed(e),
        }
    }
}
