//! `tether pub URL TOPIC [MESSAGE]`: publish over `tether.pubsub.v1`, waiting for each ack.

use std::io::{BufRead, Read};

use tokio::sync::mpsc;

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use tether::{CloseCode, CloseFrame, Message, WebSocket};
use tether_gateway::protocol::{Request, RequestId, SUBPROTOCOL, ServerMessage};

use crate::client_args::ClientArgs;
use crate::exit::{Failure, Status};
use crate::session::{self, Transport};

/// Arguments of `tether pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// The gateway's pub/sub URL, e.g. ws://127.0.0.1:8080/ws
    #[arg(value_name = "URL")]
    pub url: String,
    /// The topic to publish to (an exact name, e.g. news.local).
    #[arg(value_name = "TOPIC")]
    pub topic: String,
    /// The message. Without it, every line of stdin is one message.
    #[arg(value_name = "MESSAGE")]
    pub message: Option<String>,
    /// Sends every message as a JSON string, even when it is valid JSON. Otherwise JSON is
    /// sent as is and anything else as a string, as the HTTP publish API does.
    #[arg(long)]
    pub string: bool,
    /// The message key (for latest-per-key topics).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Prints each published message's position (TOPIC EPOCH:OFFSET) to stdout.
    #[arg(long)]
    pub print_position: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Opens a `tether.pubsub.v1` connection, refusing a server that does not speak it.
pub async fn open_pubsub(url: &str, client: &ClientArgs) -> Result<WebSocket<Transport>, Failure> {
    let builder = client.builder(url, &[SUBPROTOCOL.to_string()])?;
    let (ws, _) = session::open(builder, client, url, "").await?;
    if ws.subprotocol() != Some(SUBPROTOCOL) {
        return Err(Failure::new(
            Status::Refused,
            format!(
                "{url} did not agree to the {SUBPROTOCOL} subprotocol\n  try: the gateway's pub/sub route (ws://HOST:PORT/ws by default)"
            ),
        ));
    }
    Ok(ws)
}

/// The messages to publish: `message`, or the lines of stdin read on a thread of its own,
/// each at most `max_len` bytes (a longer line is an error, never buffered whole).
fn read_lines(message: Option<String>, max_len: usize) -> mpsc::Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        if let Some(message) = message {
            let _ = tx.blocking_send(Ok(message));
            return;
        }
        let stdin = std::io::stdin();
        let mut stdin = stdin.lock();
        for number in 1u64.. {
            let mut line = Vec::new();
            let line = match (&mut stdin)
                .take(max_len as u64 + 2)
                .read_until(b'\n', &mut line)
            {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    }
                    if line.len() > max_len {
                        Err(std::io::Error::other(format!(
                            "line {number} is longer than --max-message-size ({max_len} bytes)"
                        )))
                    } else {
                        String::from_utf8(line).map_err(|_| {
                            std::io::Error::other(format!("line {number} is not UTF-8 text"))
                        })
                    }
                }
                Err(e) => Err(e),
            };
            let failed = line.is_err();
            if tx.blocking_send(line).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// The JSON payload for `text`.
fn payload(text: &str, as_string: bool) -> Box<RawValue> {
    if !as_string && let Ok(raw) = RawValue::from_string(text.to_string()) {
        return raw;
    }
    RawValue::from_string(serde_json::Value::String(text.to_string()).to_string())
        .expect("a JSON string is JSON")
}

/// Runs `tether pub`.
pub async fn run(args: PubArgs) -> Result<(), Failure> {
    tether_gateway::hub::validate_topic(&args.topic)
        .map_err(|e| Failure::usage(format!("TOPIC {:?}: {e}", args.topic)))?;
    let mut ws = open_pubsub(&args.url, &args.client).await?;
    let mut refused = 0u64;
    let mut published = 0u64;
    let mut lines = read_lines(args.message.clone(), args.client.max_message_size);
    let mut id = 0u64;
    loop {
        // Waiting for input, the connection is still served (pings answered, close seen).
        let line = tokio::select! {
            line = lines.recv() => line,
            item = ws.next() => match item {
                Some(Ok(Message::Close(frame))) => {
                    return Err(Failure::from_close(frame.as_ref(), false).unwrap_or_else(|| {
                        Failure::new(Status::Abnormal, "the server closed the connection")
                    }));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Failure::from_error(&e, &args.url)),
                None => return Err(Failure::new(Status::Abnormal, "the connection ended")),
            },
        };
        let Some(line) = line else { break };
        let line = line.map_err(|e| Failure::new(Status::Other, format!("stdin: {e}")))?;
        if args.message.is_none() && line.trim().is_empty() {
            continue;
        }
        id += 1;
        let request = Request::Publish {
            id: Some(RequestId::Number(id)),
            topic: args.topic.clone(),
            data: payload(&line, args.string),
            key: args.key.clone(),
        };
        ws.send(Message::text(request.to_json()))
            .await
            .map_err(|e| Failure::from_error(&e, &args.url))?;
        match wait_reply(&mut ws, id, &args.url).await? {
            Ok(position) => {
                published += 1;
                if args.print_position {
                    println!("{} {position}", args.topic);
                }
            }
            Err(reason) => {
                refused += 1;
                eprintln!("tether: message {id} refused: {reason}");
            }
        }
    }
    ws.close(Some(CloseFrame::new(CloseCode::NORMAL, "")))
        .await
        .map_err(|e| Failure::from_error(&e, &args.url))?;
    if refused > 0 {
        return Err(Failure::new(
            Status::RequestRefused,
            format!("{refused} of {} messages refused", refused + published),
        ));
    }
    Ok(())
}

/// Waits for the reply to request `id`: `Ok("EPOCH:OFFSET")` or `Err("code: reason")`.
async fn wait_reply(
    ws: &mut WebSocket<Transport>,
    id: u64,
    url: &str,
) -> Result<Result<String, String>, Failure> {
    let want = RequestId::Number(id);
    while let Some(item) = ws.next().await {
        let text = match item.map_err(|e| Failure::from_error(&e, url))? {
            Message::Text(text) => text,
            Message::Close(frame) => {
                return Err(
                    Failure::from_close(frame.as_ref(), false).unwrap_or_else(|| {
                        Failure::new(Status::Abnormal, "the server closed before acknowledging")
                    }),
                );
            }
            _ => continue,
        };
        match ServerMessage::parse(text.as_str()) {
            Ok(ServerMessage::Ack(ack)) if ack.id.as_ref() == Some(&want) => {
                return Ok(Ok(match (ack.epoch, ack.offset) {
                    (Some(epoch), Some(offset)) => format!("{epoch}:{offset}"),
                    _ => String::new(),
                }));
            }
            Ok(ServerMessage::Error(e)) if e.id.as_ref() == Some(&want) || e.id.is_none() => {
                let code = serde_json::to_string(&e.code).unwrap_or_default();
                return Ok(Err(format!("{}: {}", code.trim_matches('"'), e.reason)));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Failure::new(
                    Status::Abnormal,
                    format!("the server sent something that is not {SUBPROTOCOL}: {e}"),
                ));
            }
        }
    }
    Err(Failure::new(
        Status::Abnormal,
        "the connection ended before the ack",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_goes_as_is_and_other_text_as_a_string() {
        assert_eq!(payload(r#"{"a": 1}"#, false).get(), r#"{"a": 1}"#);
        assert_eq!(payload("hello there", false).get(), r#""hello there""#);
        assert_eq!(payload("42", true).get(), r#""42""#);
        assert_eq!(payload("42", false).get(), "42");
    }
}
