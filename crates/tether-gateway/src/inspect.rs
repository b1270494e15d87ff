//! The echo route's inspection mode, for the connection panel of the home page: a client that
//! offers the subprotocol `tether.inspect.v1` to an echo route gets its messages echoed as
//! usual, plus what only the server can see, as JSON text messages.
//!
//! A browser's WebSocket API hides the opening handshake, frames and control frames, so the
//! server reports them:
//!
//! - first, `{"type":"handshake","peer":..,"request":{..},"response":{..},"compression":..}`:
//!   the request head as the gateway received it and the `101` it answered, with the values of
//!   `Authorization`, `Cookie` and a `token` query parameter replaced by `[redacted]`;
//! - before each echo, `{"type":"echo","received":{"opcode","length"},"sent":{"opcode",
//!   "length","frames","fin","compressed"}}`, then the echo itself (same opcode and payload);
//!   `sent` is how the engine frames it (one frame, compressed when permessage-deflate is in
//!   use and the message is at least `limits.min_compress_size` long);
//! - `{"type":"ping","payload"}` when the server sent a ping frame, `{"type":"pong","payload",
//!   "rtt_ms"}` when a pong came back (`rtt_ms` is absent for pongs to keepalive pings).
//!
//! Commands are text messages holding a JSON object with an `"inspect"` key; they are not
//! echoed: `{"inspect":"ping"}` makes the server send a ping frame (a browser cannot send one,
//! but it answers pings), `{"inspect":"close","code":4000,"reason":"bye"}` makes the server
//! close with that code and reason. A bad command gets `{"type":"error","reason"}`.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tether::{CloseCode, CloseFrame, Message, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::RouteKind;
use crate::metrics::Metrics;
use crate::shutdown::signalled;

/// The subprotocol that turns an echo connection into an inspected one.
pub const SUBPROTOCOL: &str = "tether.inspect.v1";

/// Most pings awaiting their pong; older ones are forgotten (their pong has no `rtt_ms`).
const MAX_PENDING_PINGS: usize = 16;

/// Header values never reported back, even to the client that sent them.
const REDACTED_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// What the server knows of one connection's opening handshake.
pub(crate) struct Handshake {
    report: Value,
    min_compress_size: usize,
}

impl Handshake {
    /// The report of `request` and `response`, when `response` chose [`SUBPROTOCOL`].
    pub(crate) fn of<B, R>(
        request: &Request<B>,
        response: &Response<R>,
        peer: SocketAddr,
        config: &tether::Config,
    ) -> Option<Handshake> {
        let chosen = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_PROTOCOL)?;
        if chosen.as_bytes() != SUBPROTOCOL.as_bytes() {
            return None;
        }
        let compression = response
            .headers()
            .get(http::header::SEC_WEBSOCKET_EXTENSIONS)
            .is_some_and(|v| v.as_bytes().starts_with(b"permessage-deflate"));
        let report = json!({
            "type": "handshake",
            "peer": peer.to_string(),
            "request": {
                "method": request.method().as_str(),
                "target": redact_target(request.uri()),
                "version": format!("{:?}", request.version()),
                "headers": header_list(request.headers()),
            },
            "response": {
                "status": response.status().as_u16(),
                "headers": header_list(response.headers()),
            },
            "compression": compression,
        });
        Some(Handshake {
            report,
            min_compress_size: config.deflate.as_ref().map_or(0, |d| d.min_compress_size),
        })
    }
}

/// Header names and values in order; secrets redacted, non-UTF-8 values shown lossily.
fn header_list(headers: &HeaderMap) -> Vec<[String; 2]> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if REDACTED_HEADERS.contains(&name.as_str()) {
                "[redacted]".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            [name.as_str().to_string(), value]
        })
        .collect()
}

/// The request target with the value of a `token` query parameter redacted.
fn redact_target(uri: &http::Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("token", _)) => "token=[redacted]".to_string(),
            _ => pair.to_string(),
        })
        .collect();
    format!("{}?{}", uri.path(), query.join("&"))
}

/// A command from the client.
#[derive(Deserialize)]
#[serde(tag = "inspect", rename_all = "snake_case", deny_unknown_fields)]
enum Command {
    Ping,
    Close {
        code: u16,
        #[serde(default)]
        reason: String,
    },
}

/// What one received text message is: a command, or data to echo.
fn command(text: &str) -> Option<Result<Command, String>> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.as_object()?.get("inspect")?;
    Some(serde_json::from_value(value).map_err(|e| format!("bad inspect command: {e}")))
}

/// The close frame of a `close` command, or why it is refused.
fn close_frame(code: u16, reason: String) -> Result<CloseFrame, String> {
    // RFC 6455 §7.4: 1004-1006, 1015 and unassigned codes must not be sent.
    if !CloseCode(code).is_allowed_on_wire() {
        return Err(format!(
            "close code {code} may not be sent (use 1000-1003, 1007-1014 or 3000-4999)"
        ));
    }
    // RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
    if reason.len() > CloseFrame::MAX_REASON_LEN {
        return Err(format!(
            "a close reason has at most {} bytes, not {}",
            CloseFrame::MAX_REASON_LEN,
            reason.len()
        ));
    }
    Ok(CloseFrame::new(code, reason))
}

fn opcode(msg: &Message) -> &'static str {
    match msg {
        Message::Text(_) => "text",
        Message::Binary(_) => "binary",
        Message::Ping(_) => "ping",
        Message::Pong(_) => "pong",
        Message::Close(_) => "close",
    }
}

/// Serves an inspected echo connection until it ends or `shutdown` flips.
pub(crate) async fn serve<S>(
    mut ws: WebSocket<S>,
    handshake: Handshake,
    mut shutdown: watch::Receiver<bool>,
    metrics: &Metrics,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let compression = ws.negotiated().compression;
    let report = |value: Value| Message::text(value.to_string());
    let error = |reason: String| report(json!({"type": "error", "reason": reason}));
    if ws.send(report(handshake.report)).await.is_err() {
        return;
    }
    let mut pings: VecDeque<(String, Instant)> = VecDeque::new();
    let mut next_ping = 0u64;
    loop {
        let msg = tokio::select! {
            biased;
            down = signalled(&mut shutdown) => {
                if down {
                    let frame = CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down");
                    let _ = ws.close(Some(frame)).await;
                }
                return;
            }
            msg = ws.next() => match msg {
                Some(Ok(msg)) => msg,
                Some(Err(_)) | None => return,
            },
        };
        let replies = match msg {
            Message::Text(ref text) if command(text.as_str()).is_some() => {
                match command(text.as_str()) {
                    Some(Ok(Command::Ping)) => {
                        next_ping += 1;
                        let payload = format!("inspect-{next_ping}");
                        if pings.len() == MAX_PENDING_PINGS {
                            pings.pop_front();
                        }
                        pings.push_back((payload.clone(), Instant::now()));
                        vec![
                            (Message::Ping(Bytes::from(payload.clone())), false),
                            (report(json!({"type": "ping", "payload": payload})), false),
                        ]
                    }
                    Some(Ok(Command::Close { code, reason })) => match close_frame(code, reason) {
                        Ok(frame) => {
                            let _ = ws.close(Some(frame)).await;
                            return;
                        }
                        Err(reason) => vec![(error(reason), false)],
                    },
                    Some(Err(reason)) => vec![(error(reason), false)],
                    None => Vec::new(),
                }
            }
            Message::Text(_) | Message::Binary(_) => {
                metrics.messages(RouteKind::Echo, 1, 0);
                let length = msg.payload().len();
                let compressed = compression && length >= handshake.min_compress_size;
                let kind = opcode(&msg);
                let echo_report = report(json!({
                    "type": "echo",
                    "received": {"opcode": kind, "length": length},
                    "sent": {"opcode": kind, "length": length, "frames": 1, "fin": true,
                             "compressed": compressed},
                }));
                vec![(echo_report, false), (msg, true)]
            }
            Message::Pong(payload) => {
                let text = String::from_utf8_lossy(&payload).into_owned();
                let rtt = pings
                    .iter()
                    .position(|(p, _)| *p == text)
                    .and_then(|i| pings.remove(i))
                    .map(|(_, sent)| sent.elapsed().as_secs_f64() * 1000.0);
                let mut pong = json!({"type": "pong", "payload": text});
                if let Some(rtt) = rtt {
                    pong["rtt_ms"] = json!((rtt * 1000.0).round() / 1000.0);
                }
                vec![(report(pong), false)]
            }
            Message::Ping(_) | Message::Close(_) => Vec::new(),
        };
        // Replies to one message leave in one write.
        for (reply, echo) in replies {
            if ws.feed(reply).await.is_err() {
                return;
            }
            if echo {
                metrics.messages(RouteKind::Echo, 0, 1);
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_objects_with_an_inspect_key() {
        assert!(matches!(
            command(r#"{"inspect":"ping"}"#),
            Some(Ok(Command::Ping))
        ));
        assert!(matches!(
            command(r#"{"inspect":"close","code":4000,"reason":"bye"}"#),
            Some(Ok(Command::Close { code: 4000, .. }))
        ));
        assert!(matches!(command(r#"{"inspect":"dance"}"#), Some(Err(_))));
        assert!(command("hello").is_none());
        assert!(command(r#"{"type":"x"}"#).is_none());
        assert!(command("[1]").is_none());
    }

    #[test]
    fn close_codes_follow_rfc_6455_section_7_4() {
        assert!(close_frame(4000, "bye".into()).is_ok());
        assert!(close_frame(1005, String::new()).is_err());
        assert!(close_frame(2999, String::new()).is_err());
        assert!(close_frame(1000, "x".repeat(124)).is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        let uri: http::Uri = "/echo?a=1&token=s3cret&b".parse().unwrap();
        assert_eq!(redact_target(&uri), "/echo?a=1&token=[redacted]&b");
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer s3cret".parse().unwrap());
        headers.insert("x-other", "shown".parse().unwrap());
        let list = header_list(&headers);
        assert!(list.contains(&["authorization".into(), "[redacted]".into()]));
        assert!(list.contains(&["x-other".into(), "shown".into()]));
    }
}
