//! The fan-out workload's publisher, at a fixed rate: over a WebSocket on the pub/sub route
//! (the default: requests pipelined on one connection, acks read as they come), or through
//! the gateway's HTTP API (`POST /api/publish/TOPIC`, one request at a time on a keep-alive
//! connection) with `--publish-url`.

use std::time::{Duration, Instant};

use tether_proto::frame::OpCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{MissedTickBehavior, interval, timeout_at};

use super::args::FanoutArgs;
use super::fanout::next_frame;
use super::fanout_wire::{Kind, error_code, kind, offset, publish_data, publish_request};
use super::frame::{ReadBuffer, push_masked_frame};
use super::handshake::{HandshakeSpec, open};
use super::recorder::Totals;

/// How long the publisher waits for its last acks or answers.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the publisher did.
#[derive(Debug)]
pub struct Published {
    /// Publishes the server acknowledged.
    pub count: u64,
    /// The offset of the last one.
    pub last_offset: u64,
    /// From the first publish to the last.
    pub duration: Duration,
    /// `websocket` or `http`.
    pub via: &'static str,
}

/// Publishes at `args.rate` for `args.duration`; the data carries the time since `clock`.
pub async fn publish(
    args: &FanoutArgs,
    spec: &HandshakeSpec,
    clock: Instant,
    totals: &Totals,
) -> Result<Published, String> {
    match &args.publish_url {
        Some(url) => publish_http(args, url, clock, totals).await,
        None => publish_websocket(args, spec, clock, totals).await,
    }
}

fn period(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate)
}

/// How many publishes a run makes: `rate` x `duration`, at least one. Fixed before the first
/// so the last can be marked (subscribers then know they have everything unprompted), and
/// not left to whether a tick falls just before or after the end.
fn publish_count(args: &FanoutArgs) -> u64 {
    ((args.rate * args.duration.as_secs_f64()).round() as u64).max(1)
}

async fn publish_websocket(
    args: &FanoutArgs,
    spec: &HandshakeSpec,
    clock: Instant,
    totals: &Totals,
) -> Result<Published, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut stream = open(spec, None, &mut buf)
        .await
        .map_err(|e| format!("publisher: {e}"))?;
    let mut read = ReadBuffer::with_bytes(64 * 1024, &buf);
    let mut frame = Vec::with_capacity(args.size + 256);
    let mut tick = interval(period(args.rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let total = publish_count(args);
    // While publishing, a quiet spell only moves this on; after the last publish, its answer
    // gets ANSWER_TIMEOUT.
    let mut deadline = Instant::now() + args.duration + ANSWER_TIMEOUT;
    let (mut sent, mut answered, mut count, mut last_offset) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let sending = sent < total;
        if !sending && answered == sent {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if sending => {
                sent += 1;
                let stamp = clock.elapsed().as_micros() as u64;
                let data = publish_data(stamp, sent == total, args.size);
                let request = publish_request(sent, &args.topic, &data);
                frame.clear();
                push_masked_frame(&mut frame, OpCode::Text, request.as_bytes());
                stream.write_all(&frame).await.map_err(|e| format!("publisher: {e}"))?;
                if sent == total {
                    deadline = Instant::now() + ANSWER_TIMEOUT;
                }
            }
            answer = next_frame(&mut stream, &mut read, Some(deadline)) => {
                let Some((header, range)) = answer.map_err(|e| format!("publisher: {e}"))? else {
                    if sending {
                        // Publishing is behind its schedule: keep waiting while it goes on.
                        deadline = Instant::now() + ANSWER_TIMEOUT;
                        continue;
                    }
                    break;
                };
                let text = &read.filled()[range.clone()];
                if header.opcode == OpCode::Text {
                    match kind(text) {
                        Kind::Ack => {
                            answered += 1;
                            count += 1;
                            last_offset = last_offset.max(offset(text).unwrap_or(0));
                        }
                        Kind::Error => {
                            answered += 1;
                            let code = error_code(text);
                            totals.error(|| format!("publish refused: {code}"));
                        }
                        _ => {}
                    }
                } else if header.opcode == OpCode::Close {
                    return Err("publisher: closed by the server".into());
                }
                read.consume(range.end);
            }
        }
    }
    if answered < sent {
        totals.error(|| format!("{} publishes were not acknowledged", sent - answered));
    }
    Ok(Published {
        count,
        last_offset,
        duration: args.duration,
        via: "websocket",
    })
}

/// `http://host:port/path` split into the address to connect to, the Host header and the
/// path; the topic is appended to the path unless it already ends with it.
fn http_target(url: &str, topic: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--publish-url {url:?} is not an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, "/api/publish"),
    };
    let path = path.trim_end_matches('/');
    let path = if path.ends_with(&format!("/{topic}")) {
        path.to_string()
    } else {
        format!("{path}/{topic}")
    };
    Ok((authority.to_string(), path))
}

async fn publish_http(
    args: &FanoutArgs,
    url: &str,
    clock: Instant,
    totals: &Totals,
) -> Result<Published, String> {
    let (authority, path) = http_target(url, &args.topic)?;
    let mut stream = TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("publisher: cannot connect to {authority}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tick = interval(period(args.rate));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut response = Vec::with_capacity(4096);
    let total = publish_count(args);
    let (mut count, mut last_offset) = (0u64, 0u64);
    for sent in 1..=total {
        tick.tick().await;
        let body = publish_data(clock.elapsed().as_micros() as u64, sent == total, args.size);
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("publisher: {e}"))?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let (status, body) = timeout_at(deadline.into(), read_response(&mut stream, &mut response))
            .await
            .map_err(|_| "publisher: no HTTP answer within 5 s".to_string())??;
        if status == 200 {
            count += 1;
            last_offset = last_offset.max(offset(body.as_slice()).unwrap_or(0));
        } else {
            let text = String::from_utf8_lossy(&body).into_owned();
            totals.error(|| format!("publish refused: HTTP {status}: {text}"));
        }
    }
    Ok(Published {
        count,
        last_offset,
        duration: args.duration,
        via: "http",
    })
}

/// Reads one HTTP/1.1 response with a Content-Length body: its status and body.
async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("publisher: not an HTTP response: {head:?}"))?;
            let length: usize = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse().ok())
                .ok_or("publisher: an HTTP response without Content-Length")?;
            let body_start = head_end + 4;
            while buf.len() < body_start + length {
                let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("publisher: the HTTP connection closed".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok((status, buf[body_start..body_start + length].to_vec()));
        }
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("publisher: the HTTP connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topic_is_appended_to_the_publish_url() {
        let (authority, path) = http_target("http://127.0.0.1:8080/api/publish", "bench").unwrap();
        assert_eq!(authority, "127.0.0.1:8080");
        assert_eq!(path, "/api/publish/bench");
        let (_, path) = http_target("http://h:1/api/publish/bench/", "bench").unwrap();
        assert_eq!(path, "/api/publish/bench");
        let (_, path) = http_target("http://h:1", "t").unwrap();
        assert_eq!(path, "/api/publish/t");
        assert!(http_target("https://h/", "t").is_err());
    }
}
