//! Moving messages between the client's WebSocket and the upstream's.
//!
//! Each leg is a complete WebSocket endpoint: the engine answers pings on its own leg and
//! checks every rule there (masking, UTF-8 of text as it arrives, close codes, limits), so a
//! broken peer is failed on its own leg at once. Data messages cross as whole messages,
//! compressed again on the other leg when permessage-deflate is in use. Close frames cross
//! with their code and reason: each leg's engine answers the close it receives, and the
//! frame, code and reason unchanged, starts the closing handshake on the other leg.
//!
//! When the client breaks a rule, its leg runs with `deferred_failure_close`: the upstream is
//! closed with the error's code at once, and what the upstream still sends in answer to the
//! client's earlier messages reaches the client before the close with that code, as if the
//! client had talked to the upstream directly (Autobahn 3.x, 4.x, 5.15 check this order).

use std::sync::Mutex;

use futures_util::{SinkExt, StreamExt};
use tether::{CloseCode, CloseFrame, Error, Message, ReadHalf, WebSocket, WriteHalf};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::sync::watch;

use crate::config::RouteKind;
use crate::metrics::Metrics;
use crate::proxy::UpstreamFailure;
use crate::shutdown::signalled;

/// Which way a pump moves messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    ClientToUpstream,
    UpstreamToClient,
}

/// Relays until both legs are closed. On shutdown both legs get close 1001.
pub(crate) async fn relay<C, U>(
    client: WebSocket<C>,
    upstream: WebSocket<U>,
    shutdown: watch::Receiver<bool>,
    metrics: &Metrics,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let (client_rx, client_tx) = client.split();
    let (upstream_rx, upstream_tx) = upstream.split();
    let failure = ClientFailure::default();
    tokio::join!(
        pump(
            client_rx,
            upstream_tx,
            Direction::ClientToUpstream,
            shutdown.clone(),
            metrics,
            &failure,
        ),
        pump(
            upstream_rx,
            client_tx,
            Direction::UpstreamToClient,
            shutdown,
            metrics,
            &failure,
        ),
    );
}

/// A protocol error of the client whose close frame waits until the upstream has finished
/// (`deferred_failure_close` on the client leg).
#[derive(Default)]
struct ClientFailure {
    /// The close frame the client is owed.
    frame: Mutex<Option<CloseFrame>>,
    /// Wakes the client pump once that frame is sent, so its reader shuts the transport down.
    sent: Notify,
}

/// Moves messages from one leg to the other until `from` ends.
async fn pump<R, W>(
    mut from: ReadHalf<R>,
    mut to: WriteHalf<W>,
    direction: Direction,
    mut shutdown: watch::Receiver<bool>,
    metrics: &Metrics,
    failure: &ClientFailure,
) where
    R: AsyncRead + AsyncWrite + Unpin,
    W: AsyncRead + AsyncWrite + Unpin,
{
    let mut watching = true;
    let mut closed = false;
    let mut failed = false;
    loop {
        tokio::select! {
            biased;
            () = failure.sent.notified(), if failed => {
                // The client's close went out: keep reading so its leg finishes.
                failed = false;
            }
            down = signalled(&mut shutdown), if watching => {
                watching = false;
                if down && !closed {
                    closed = true;
                    let frame = CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down");
                    let _ = to.send(Message::Close(Some(frame))).await;
                }
            }
            msg = from.next() => match msg {
                Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                    count(metrics, direction);
                    // Refused once the other leg is closing: the message has nowhere to go.
                    let _ = to.send(msg).await;
                }
                // Answered by this leg's engine; each leg keeps its own liveness.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(frame))) => {
                    if !closed {
                        closed = true;
                        // RFC 6455 §7.4: 1005 (no code) is never sent; `None` keeps it absent.
                        let frame = owed_to_client(failure, direction).unwrap_or(frame);
                        let _ = to.send(Message::Close(frame)).await;
                        failure.sent.notify_one();
                    }
                }
                Some(Err(Error::Protocol(e)))
                    if direction == Direction::ClientToUpstream && !closed =>
                {
                    // The client leg holds its close (deferred_failure_close) until the
                    // upstream's answers to the earlier messages have been delivered.
                    *lock(&failure.frame) = Some(client_close(&e));
                    closed = true;
                    failed = true;
                    let frame = failure_frame(&Error::Protocol(e), direction);
                    let _ = to.send(Message::Close(Some(frame))).await;
                }
                Some(Err(e)) => {
                    if direction == Direction::UpstreamToClient && !closed {
                        metrics.proxy.failed(UpstreamFailure::Lost);
                    }
                    if !closed {
                        let frame = owed_to_client(failure, direction)
                            .unwrap_or(Some(failure_frame(&e, direction)));
                        let _ = to.send(Message::Close(frame)).await;
                    }
                    failure.sent.notify_one();
                    return;
                }
                None => {
                    if direction == Direction::UpstreamToClient && !closed {
                        metrics.proxy.failed(UpstreamFailure::Lost);
                    }
                    if !closed {
                        let frame = owed_to_client(failure, direction)
                            .unwrap_or(Some(failure_frame(&Error::AbnormalClosure, direction)));
                        let _ = to.send(Message::Close(frame)).await;
                    }
                    failure.sent.notify_one();
                    return;
                }
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The close the client is owed for its own protocol error, if any, when the upstream pump
/// is about to close the client leg.
fn owed_to_client(failure: &ClientFailure, direction: Direction) -> Option<Option<CloseFrame>> {
    match direction {
        Direction::UpstreamToClient => lock(&failure.frame).take().map(Some),
        Direction::ClientToUpstream => None,
    }
}

/// The close frame the engine would have sent the client at once: the error's code, and its
/// text as the reason (cut to 123 bytes at a character boundary, RFC 6455 §5.5).
fn client_close(e: &tether_proto::ProtocolError) -> CloseFrame {
    let text = e.to_string();
    let mut cut = text.len().min(CloseFrame::MAX_REASON_LEN);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    CloseFrame::new(e.close_code(), &text[..cut])
}

fn count(metrics: &Metrics, direction: Direction) {
    match direction {
        Direction::ClientToUpstream => metrics.messages(RouteKind::Proxy, 1, 0),
        Direction::UpstreamToClient => metrics.messages(RouteKind::Proxy, 0, 1),
    }
}

/// The close frame for the other leg when one leg failed or ended without a close frame.
///
/// A client's protocol violation keeps its code towards the upstream (1002, 1007, 1009...),
/// so the upstream learns why; a client that vanished is "going away" (1001). Anything wrong
/// with the upstream is 1014 towards the client (RFC 6455 §7.4.1 as registered with IANA:
/// "Bad Gateway"); the details go to the log.
fn failure_frame(e: &Error, direction: Direction) -> CloseFrame {
    match direction {
        Direction::ClientToUpstream => match e {
            Error::Protocol(p) => CloseFrame::new(p.close_code(), "the client broke the protocol"),
            Error::IdleTimeout => CloseFrame::new(CloseCode::GOING_AWAY, "the client is idle"),
            _ => CloseFrame::new(CloseCode::GOING_AWAY, "the client went away"),
        },
        Direction::UpstreamToClient => {
            tracing::debug!("upstream leg failed: {e}");
            let reason = match e {
                Error::Protocol(_) => "the upstream broke the protocol",
                _ => "the upstream connection was lost",
            };
            CloseFrame::new(CloseCode::BAD_GATEWAY, reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::ProtocolError;

    #[test]
    fn failures_map_to_close_codes_per_leg() {
        let bad_utf8 = Error::Protocol(ProtocolError::InvalidUtf8);
        assert_eq!(
            failure_frame(&bad_utf8, Direction::ClientToUpstream).code,
            CloseCode::INVALID_PAYLOAD
        );
        assert_eq!(
            failure_frame(&Error::AbnormalClosure, Direction::ClientToUpstream).code,
            CloseCode::GOING_AWAY
        );
        assert_eq!(
            failure_frame(&bad_utf8, Direction::UpstreamToClient).code,
            CloseCode::BAD_GATEWAY
        );
        assert_eq!(
            failure_frame(&Error::AbnormalClosure, Direction::UpstreamToClient).code,
            CloseCode::BAD_GATEWAY
        );
    }
}
