//! Moving messages between the client's WebSocket and the upstream's.
//!
//! Each leg is a complete WebSocket endpoint: the engine answers pings on its own leg and
//! checks every rule there (masking, reserved bits, fragment order, UTF-8 of text as it
//! arrives, close codes, limits), so a broken peer is failed on its own leg at once.
//!
//! Data crosses frame by frame where both legs allow it ([`frames_can_cross`]): both legs
//! stream frames (`Connection::stream_frames`), and each data frame is sent on the other leg
//! as it arrives, with its boundaries, FIN and RSV1, without reassembling the message. With
//! permessage-deflate this needs identical parameters on both legs, which the handshake
//! arranges (the client is answered with exactly the upstream's choice); compressed frames
//! then cross untouched, neither inflated nor deflated. The proxy cannot check the UTF-8 or
//! the inflated size of such a message: `max_message_size` counts its compressed bytes, and
//! the endpoint that inflates it validates it (and fails its own leg, 1007 or 1009; the
//! failure crosses as a close frame like any other). Uncompressed text is validated here, as
//! it arrives, across fragments. Memory per direction is one frame (at most `max_frame_size`:
//! a frame is passed on once complete, not in pieces) plus the write buffers.
//!
//! When the parameters differ, data messages cross whole instead, inflated on one leg and
//! compressed again on the other.
//!
//! Close frames cross with their code and reason: each leg's engine answers the close it
//! receives, and the frame, code and reason unchanged, starts the closing handshake on the
//! other leg.
//!
//! When the client breaks a rule, its leg runs with `deferred_failure_close`: the upstream is
//! closed with the error's code at once, and what the upstream still sends in answer to the
//! client's earlier messages reaches the client before the close with that code, as if the
//! client had talked to the upstream directly (Autobahn 3.x, 4.x, 5.15 check this order).

use std::sync::Mutex;

use futures_util::SinkExt;
use tether::{CloseCode, CloseFrame, Error, Incoming, Message, ReadHalf, WebSocket, WriteHalf};
use tether_proto::deflate::DeflateParams;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::sync::watch;

use crate::config::RouteKind;
use crate::hub::lock;
use crate::metrics::Metrics;
use crate::proxy::{RouteCounters, UpstreamFailure};
use crate::shutdown::signalled;

/// Which way a pump moves messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    ClientToUpstream,
    UpstreamToClient,
}

/// Relays until both legs are closed. On shutdown both legs get close 1001. An upstream
/// lost mid-stream counts in `route`'s counters.
pub(crate) async fn relay<C, U>(
    mut client: WebSocket<C>,
    mut upstream: WebSocket<U>,
    shutdown: watch::Receiver<bool>,
    metrics: &Metrics,
    route: &RouteCounters,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    // Neither leg has moved data yet (the upstream's first frames, if any, are buffered and
    // not parsed), so both switch; the pumps read whole messages from a leg that does not.
    let streaming = frames_can_cross(client.deflate_params(), upstream.deflate_params())
        && client.stream_frames()
        && upstream.stream_frames();
    tracing::debug!(streaming, "relaying");
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
            route,
            &failure,
        ),
        pump(
            upstream_rx,
            client_tx,
            Direction::UpstreamToClient,
            shutdown,
            metrics,
            route,
            &failure,
        ),
    );
}

/// Whether data frames can cross between the legs as they are: no permessage-deflate on
/// either leg, or the same parameters on both.
///
/// Both legs describe the parameters from the same viewpoint: `server_*` is the upstream's
/// compressor (towards the client leg the proxy plays it) and `client_*` the client's
/// (towards the upstream the proxy plays it). So equality is per direction: upstream to
/// client, the upstream compresses with `server_no_context_takeover` and
/// `server_max_window_bits` and the client inflates with the same; client to upstream, the
/// same for `client_*`. Anything else would make the receiving end inflate with a context or
/// window the sender did not use (RFC 7692 §7.1.1, §7.1.2).
pub(crate) fn frames_can_cross(
    client_leg: Option<DeflateParams>,
    upstream_leg: Option<DeflateParams>,
) -> bool {
    match (client_leg, upstream_leg) {
        (None, None) => true,
        (Some(c), Some(u)) => {
            c.server_no_context_takeover == u.server_no_context_takeover
                && c.server_max_window_bits == u.server_max_window_bits
                && c.client_no_context_takeover == u.client_no_context_takeover
                && c.client_max_window_bits == u.client_max_window_bits
        }
        _ => false,
    }
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
    route: &RouteCounters,
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
            // Whole messages when this leg does not stream frames.
            msg = from.next_frame() => match msg {
                Some(Ok(Incoming::Frame(frame))) => {
                    if frame.first {
                        count(metrics, direction);
                    }
                    // Refused once the other leg is closing: the frame has nowhere to go.
                    let _ = to.send_frame(frame).await;
                }
                Some(Ok(Incoming::Message(msg @ (Message::Text(_) | Message::Binary(_))))) => {
                    count(metrics, direction);
                    // Refused once the other leg is closing: the message has nowhere to go.
                    let _ = to.send(msg).await;
                }
                // Answered by this leg's engine; each leg keeps its own liveness.
                Some(Ok(Incoming::Message(Message::Ping(_) | Message::Pong(_)))) => {}
                Some(Ok(Incoming::Message(Message::Close(frame)))) => {
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
                        route.failed(UpstreamFailure::Lost);
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
                        route.failed(UpstreamFailure::Lost);
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

    fn params(
        server_no_context_takeover: bool,
        server_max_window_bits: u8,
        client_max_window_bits: u8,
    ) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover,
            client_no_context_takeover: false,
            server_max_window_bits,
            client_max_window_bits,
        }
    }

    #[test]
    fn frames_cross_only_with_the_same_deflate_parameters_per_direction() {
        assert!(frames_can_cross(None, None));
        assert!(frames_can_cross(
            Some(params(false, 15, 15)),
            Some(params(false, 15, 15))
        ));
        assert!(frames_can_cross(
            Some(params(true, 10, 12)),
            Some(params(true, 10, 12))
        ));
        assert!(!frames_can_cross(Some(params(false, 15, 15)), None));
        assert!(!frames_can_cross(None, Some(params(false, 15, 15))));
        // One direction differs: that direction's receiver would inflate wrongly.
        assert!(!frames_can_cross(
            Some(params(true, 15, 15)),
            Some(params(false, 15, 15))
        ));
        assert!(!frames_can_cross(
            Some(params(false, 15, 15)),
            Some(params(false, 15, 9))
        ));
        assert!(!frames_can_cross(
            Some(params(false, 12, 15)),
            Some(params(false, 15, 15))
        ));
    }

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
