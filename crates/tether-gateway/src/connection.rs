//! One transport connection: TLS if the listener has it, then HTTP/1.1 through hyper, with
//! upgrades, until the client leaves, a timeout fires or the gateway shuts down.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::metered::Metered;
use crate::metrics::Refusal;
use crate::proxy::ClientScheme;
use crate::request::LocalAddr;
use crate::routes;
use crate::server::State;
use crate::shutdown::signalled;

/// Serves a freshly accepted TCP connection; `tls` wraps it first.
///
/// Until it upgrades (or while it idles between HTTP requests) the connection holds one of
/// its client's `limits.max_pending_per_ip` slots: past that, it is refused before anything
/// is read, so one address cannot hold the whole open-files limit with unfinished heads.
pub(crate) async fn serve(
    state: Arc<State>,
    mut tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    let _open = state.metrics.connection();
    let _pending = match state.pending.try_acquire(peer.ip()) {
        Ok(permit) => permit,
        Err(_) => {
            state.metrics.refused(Refusal::PendingLimit);
            tracing::debug!(%peer, "too many pending connections from this address");
            if tls.is_none() {
                refuse_pending(&mut tcp).await;
            }
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().ok().map(LocalAddr);
    match tls {
        None => serve_http(state, tcp, peer, local, false).await,
        Some(acceptor) => {
            let timeout = state.limits.handshake_timeout;
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_http(state, stream, peer, local, true).await,
                Ok(Err(e)) => {
                    state.metrics.refused(Refusal::Tls);
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                }
                Err(_) => {
                    state.metrics.refused(Refusal::Timeout);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        }
    }
}

/// The answer to a plain connection past `limits.max_pending_per_ip`.
const PENDING_LIMIT_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 38\r\nconnection: close\r\n\r\n\
too many pending connections from you\n";

/// Answers 503 and closes gently: after the answer, the write side is shut and what the
/// client already sent is read and dropped for a moment, so that closing with unread input
/// (a reset, RFC 9112 §9.6) does not destroy the answer before the client reads it. Bounded
/// in time and bytes, since this costs a descriptor while it lasts.
async fn refuse_pending(tcp: &mut TcpStream) {
    let linger = async {
        tcp.write_all(PENDING_LIMIT_RESPONSE).await?;
        tcp.shutdown().await?;
        let mut buf = [0u8; 2048];
        let mut drained = 0;
        while drained < 16 * 1024 {
            match tcp.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_millis(250), linger).await;
}

/// HTTP/1.1 on `io` until it ends; on shutdown, finishes the request in flight and closes.
/// `local`: the listener's address (for bridges' PROXY headers); `secure`: `io` is TLS (said
/// to proxied upstreams in `X-Forwarded-Proto`).
async fn serve_http<S>(
    state: Arc<State>,
    io: S,
    peer: SocketAddr,
    local: Option<LocalAddr>,
    secure: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Metered::new(io, state.metrics.clone()));
    let limits = &state.limits;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Armed whenever hyper waits for a request head: a silent new connection and an idle
        // keep-alive connection both close after it.
        .header_read_timeout(limits.handshake_timeout)
        .max_headers(limits.max_headers)
        // hyper refuses a larger head with 431; it cannot go below 8 KiB.
        .max_buf_size(limits.max_handshake_size.max(8192));
    let service_state = state.clone();
    let served = Arc::new(AtomicBool::new(false));
    let served_flag = served.clone();
    let service = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        served_flag.store(true, Ordering::Relaxed);
        if let Some(local) = local {
            req.extensions_mut().insert(local);
        }
        req.extensions_mut().insert(ClientScheme { secure });
        routes::handle(service_state.clone(), req, peer)
    });
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let mut shutdown = state.tasks.shutdown_signal();
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = signalled(&mut shutdown) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        // A keep-alive connection that idles out after its requests is no refusal.
        if e.is_timeout() && !served.load(Ordering::Relaxed) {
            state.metrics.refused(Refusal::Timeout);
        }
        tracing::debug!(%peer, "HTTP connection ended: {e}");
    }
}
