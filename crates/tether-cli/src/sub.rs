//! `tether sub URL TOPIC...`: print every message of the topics, resuming after reconnects
//! from the last position seen, with no gap and no duplicate while history reaches back.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tether::Message;
use tether_gateway::hub::{Epoch, Position};
use tether_gateway::protocol::resume::{Continuity, Resume};
use tether_gateway::protocol::{Delivery, RequestId, ServerMessage};

use crate::client_args::{ClientArgs, parse_seconds};
use crate::exit::{Failure, Status};
use crate::publish::open_pubsub;

/// Arguments of `tether sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// The gateway's pub/sub URL, e.g. ws://127.0.0.1:8080/ws
    #[arg(value_name = "URL")]
    pub url: String,
    /// Topics or patterns: news.local, prices.* (every topic under prices.), * (all).
    #[arg(value_name = "TOPIC", required = true)]
    pub topics: Vec<String>,
    /// Prints the whole envelope as JSON (topic, epoch, offset, key, ts, data), one per line.
    #[arg(long)]
    pub json: bool,
    /// Starts after this position (from an earlier --json output or `pub --print-position`):
    /// the messages after it that are still in history come first. Exact topics only.
    #[arg(long, value_name = "EPOCH:OFFSET", value_parser = parse_position)]
    pub since: Option<Position>,
    /// Exits after printing N messages.
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,
    /// Longest wait between reconnection attempts (they start at 0.1 s and double).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = "5")]
    pub max_backoff: Duration,
    /// Gives up after this many failed attempts in a row (default: never).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_position(text: &str) -> Result<Position, String> {
    let (epoch, offset) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected EPOCH:OFFSET, e.g. 8f3a1c0b2e7d4a51:42"))?;
    Ok(Position {
        epoch: epoch.parse::<Epoch>()?,
        offset: offset
            .parse()
            .map_err(|_| format!("{offset:?} is not an offset (a whole number)"))?,
    })
}

/// Why one connection ended.
enum Ended {
    /// `--count` messages printed.
    Done,
    /// The connection failed or closed; reconnect. `synced` when its subscribes were acked.
    Lost { why: String, synced: bool },
}

/// Runs `tether sub`.
pub async fn run(args: SubArgs) -> Result<(), Failure> {
    let mut resume = Resume::new(args.topics.clone()).map_err(Failure::usage)?;
    if let Some(position) = args.since {
        for topic in &args.topics {
            if topic.contains('*') {
                return Err(Failure::usage(format!(
                    "--since needs exact topics; {topic:?} is a pattern"
                )));
            }
            resume.start_after(topic, position);
        }
    }
    let mut printed = 0u64;
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        let (why, synced) = match session(&args, &mut resume, &mut printed).await {
            Ok(Ended::Done) => return Ok(()),
            Ok(Ended::Lost { why, synced }) => (why, synced),
            // Refusals that a retry cannot fix: a bad token, a wrong path, a forbidden topic.
            Err(failure) if !retryable(&failure) => return Err(failure),
            Err(failure) => (failure.message, false),
        };
        if synced {
            backoff = Duration::from_millis(100);
            failures = 0;
        }
        failures += 1;
        if args.retries.is_some_and(|limit| failures > limit) {
            return Err(Failure::new(
                Status::Abnormal,
                format!("{why}; gave up after {} attempts", failures),
            ));
        }
        eprintln!(
            "tether: {why}; reconnecting in {:.1} s",
            backoff.as_secs_f64()
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(args.max_backoff);
    }
}

fn retryable(failure: &Failure) -> bool {
    match failure.status {
        Status::Connect | Status::Abnormal => true,
        // 5xx and 429 pass; 4xx (auth, path, origin) do not.
        Status::Refused => failure
            .http_status
            .is_some_and(|status| status >= 500 || status == 429),
        _ => false,
    }
}

/// One connection: subscribe (resuming), then print messages until it ends.
async fn session(args: &SubArgs, resume: &mut Resume, printed: &mut u64) -> Result<Ended, Failure> {
    let mut ws = open_pubsub(&args.url, &args.client).await?;
    let requests = resume.subscribe_requests();
    let mut pending_acks = requests.len();
    for request in &requests {
        ws.feed(Message::text(request.to_json()))
            .await
            .map_err(|e| Failure::from_error(&e, &args.url))?;
    }
    ws.flush()
        .await
        .map_err(|e| Failure::from_error(&e, &args.url))?;
    while let Some(item) = ws.next().await {
        let text = match item {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => {
                let why = match frame {
                    Some(f) => format!(
                        "the server closed the connection with {} {}",
                        f.code.0,
                        f.reason.as_str()
                    ),
                    None => "the server closed the connection".to_string(),
                };
                return Ok(Ended::Lost {
                    why: why.trim_end().to_string(),
                    synced: pending_acks == 0,
                });
            }
            Ok(_) => continue,
            Err(e) => {
                return Ok(Ended::Lost {
                    why: Failure::from_error(&e, &args.url).message,
                    synced: pending_acks == 0,
                });
            }
        };
        match ServerMessage::parse(text.as_str()) {
            Ok(ServerMessage::Ack(ack)) => {
                resume.on_ack(&ack);
                pending_acks = pending_acks.saturating_sub(1);
                for (topic, status) in ack.topics.iter().flatten() {
                    if status.recovered == Some(false) {
                        eprintln!(
                            "tether: {topic}: history since the last position is gone (the server restarted, or it expired); messages may be missing"
                        );
                    }
                }
            }
            Ok(ServerMessage::Error(e)) => {
                let code = serde_json::to_string(&e.code).unwrap_or_default();
                let topic = match &e.id {
                    Some(RequestId::Number(i)) => args.topics.get(*i as usize).cloned(),
                    _ => None,
                };
                return Err(Failure::new(
                    Status::RequestRefused,
                    format!(
                        "the server refused to subscribe to {}: {}: {}",
                        topic.as_deref().unwrap_or("?"),
                        code.trim_matches('"'),
                        e.reason
                    ),
                ));
            }
            Ok(ServerMessage::Message(delivery)) => {
                match resume.on_delivery(&delivery) {
                    Continuity::Duplicate => continue,
                    Continuity::Gap { missing } => eprintln!(
                        "tether: {}: {missing} message(s) missing before offset {}",
                        delivery.topic, delivery.offset
                    ),
                    Continuity::NewEpoch { was } => eprintln!(
                        "tether: {}: history was reset (epoch {was} is now {})",
                        delivery.topic, delivery.epoch
                    ),
                    Continuity::Next | Continuity::First => {}
                }
                if !print_delivery(&delivery, args.json) {
                    return Ok(Ended::Done);
                }
                *printed += 1;
                if args.count.is_some_and(|n| *printed >= n) {
                    let _ = ws.close(None).await;
                    return Ok(Ended::Done);
                }
            }
            Err(e) => {
                return Err(Failure::new(
                    Status::Abnormal,
                    format!("the server sent something that is not tether.pubsub.v1: {e}"),
                ));
            }
        }
    }
    Ok(Ended::Lost {
        why: "the connection ended".to_string(),
        synced: pending_acks == 0,
    })
}

/// One line: the data (a JSON string as its text), or with `--json` the whole envelope.
/// `false` when stdout is gone.
fn print_delivery(delivery: &Delivery, json: bool) -> bool {
    let line = if json {
        let mut envelope = serde_json::to_value(delivery).unwrap_or_default();
        if let Some(object) = envelope.as_object_mut() {
            object.insert("type".into(), "message".into());
        }
        envelope.to_string()
    } else {
        match serde_json::from_str::<serde_json::Value>(delivery.data.get()) {
            Ok(serde_json::Value::String(text)) if !text.contains('\n') => text,
            // One message, one line: JSON sent with newlines is printed compact.
            Ok(value) if delivery.data.get().contains('\n') => value.to_string(),
            _ => delivery.data.get().to_string(),
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_from_epoch_and_offset() {
        let p = parse_position("00000000000000ff:42").unwrap();
        assert_eq!((p.epoch, p.offset), (Epoch::from_u64(255), 42));
        assert!(
            parse_position("ff:42")
                .unwrap_err()
                .contains("16 hex digits")
        );
        assert!(parse_position("42").unwrap_err().contains("EPOCH:OFFSET"));
    }
}
