//! `tether bench fanout`: N subscribers on a `tether.pubsub.v1` route and one publisher at
//! a fixed rate. Each subscriber checks that offsets follow each other (a gap is a drop, a
//! repeat a duplicate) and times each delivery from the publish time stamped in its data.

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use tether_proto::frame::{FrameHeader, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, watch};
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use super::args::FanoutArgs;
use super::fanout_publish::{Published, publish};
use super::fanout_wire::{
    Kind, SUBPROTOCOL, error_code, is_last, kind, offset, stamp_us, subscribe_request,
};
use super::frame::{ReadBuffer, complete_frame, pong_frame, push_masked_frame};
use super::handshake::{HandshakeSpec, Opened, open_many};
use super::progress::Progress;
use super::recorder::{Recorder, Totals};
use super::report::Report;
use super::system::{CpuMeter, cpu_time};

/// How long subscribing may take before the subscriber counts as failed.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the fan-out workload.
pub async fn run(args: &FanoutArgs) -> Result<Report, String> {
    let target = &args.common.url;
    let addr = target.resolve().await?;
    let spec = Arc::new(HandshakeSpec::new(target, addr, Some(SUBPROTOCOL)));
    let sources: Arc<[IpAddr]> = args
        .sources
        .iter()
        .flat_map(|sources| &sources.0)
        .map(|ip| IpAddr::V4(*ip))
        .collect();
    let opened = open_many(
        spec.clone(),
        args.subscribers,
        sources,
        args.concurrency,
        None,
    )
    .await;

    // Deliveries count from the first publish on; the window's end is the settle deadline.
    let clock = Instant::now();
    let totals = Arc::new(Totals::new(clock, clock + Duration::from_secs(24 * 3600)));
    let subscribed = Arc::new(Barrier::new(args.subscribers + 1));
    // The hang-up, with the last offset published. Subscribers hear nothing else from here:
    // each knows by the publisher's mark when it has the last record, and keeps its
    // connection until every delivery is in (or the settle deadline). Telling 10,000 of them
    // anything while the last record is still on its way would have this process busy with
    // them instead of reading, and hanging up at once would have the server tear connections
    // down while it still delivers: either was counted in the last publish's latency.
    let (hang_up_tx, hang_up_rx) = watch::channel(None::<u64>);
    let read_capacity = 4096 + 2 * (args.size + 512);
    let mut tasks = JoinSet::new();
    for opened in opened {
        let (totals, subscribed, hang_up) =
            (totals.clone(), subscribed.clone(), hang_up_rx.clone());
        let topic = args.topic.clone();
        tasks.spawn(async move {
            let subscriber = match opened {
                Ok(opened) => subscribe(opened, &topic, read_capacity).await,
                Err(e) => Err(e),
            };
            subscribed.wait().await;
            match subscriber {
                Ok(subscriber) => subscriber.receive(clock, &totals, hang_up).await,
                Err(e) => totals.error(|| format!("subscriber: {e}")),
            }
        });
    }
    subscribed.wait().await;
    let failed_subscribers = totals.errors.load(Ordering::Relaxed);

    let cpu = CpuMeter::start();
    let server_cpu_at_start = args.server_pid.and_then(cpu_time);
    let progress = Progress::start("fanout", totals.clone(), args.common.json);
    let published: Published = publish(args, &spec, clock, &totals).await?;
    let settle_until = Instant::now() + args.settle;
    // The server's CPU is read once every delivery is in (or at the settle deadline), before
    // the subscribers hang up: closing 10,000 connections costs more than a publish.
    let live = (args.subscribers as u64).saturating_sub(failed_subscribers);
    let expected = published.count * live;
    while totals.messages.load(Ordering::Relaxed) < expected && Instant::now() < settle_until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let server_cpu = match (args.server_pid, server_cpu_at_start) {
        (Some(pid), Some(start)) => cpu_time(pid).and_then(|end| end.checked_sub(start)),
        _ => None,
    };
    let _ = hang_up_tx.send(Some(published.last_offset));
    // Each subscriber stops at the hang-up; this is a safety net.
    let give_up = Instant::now() + SUBSCRIBE_TIMEOUT;
    while let Ok(Some(_)) = timeout_at(give_up.into(), tasks.join_next()).await {}
    let unsettled = tasks.len();
    tasks.abort_all();
    progress.finish();
    if unsettled > 0 {
        totals.error(|| format!("{unsettled} subscribers still waited for deliveries"));
    }

    let mut report = Report::new(
        "fanout",
        &target.url,
        &totals,
        published.duration,
        &cpu,
        args.common.threads,
    );
    let deliveries = report.messages;
    let seconds = published.duration.as_secs_f64().max(1e-9);
    report.parameters = vec![
        ("subscribers", json!(args.subscribers)),
        ("topic", json!(args.topic)),
        ("rate", json!(args.rate)),
        ("size", json!(args.size)),
        ("publisher", json!(published.via)),
    ];
    report.results = vec![
        ("subscribers_failed", json!(failed_subscribers)),
        ("published", json!(published.count)),
        ("deliveries", json!(deliveries)),
        (
            "deliveries_per_s",
            json!((deliveries as f64 / seconds).round()),
        ),
        (
            "duplicates",
            json!(totals.duplicates.load(Ordering::Relaxed)),
        ),
    ];
    if let Some(used) = server_cpu {
        let per_delivery = used.as_secs_f64() * 1e6 / deliveries.max(1) as f64;
        report.results.extend([
            ("server_cpu_s", json!(used.as_secs_f64())),
            (
                "server_cpu_us_per_delivery",
                json!((per_delivery * 100.0).round() / 100.0),
            ),
        ]);
    }
    Ok(report)
}

/// A subscriber after its subscribe was acknowledged.
struct Subscriber {
    stream: TcpStream,
    read: ReadBuffer,
    /// The next offset expected.
    next_offset: u64,
}

/// Sends the subscribe and waits for its ack (with the topic's current offset).
async fn subscribe(opened: Opened, topic: &str, capacity: usize) -> Result<Subscriber, String> {
    let Opened {
        mut stream,
        leftover,
    } = opened;
    let mut read = ReadBuffer::with_bytes(capacity, &leftover);
    let mut request = Vec::new();
    push_masked_frame(&mut request, OpCode::Text, &subscribe_request(topic));
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
    loop {
        let Some((header, payload)) = next_frame(&mut stream, &mut read, Some(deadline)).await?
        else {
            return Err("no answer to the subscribe within 10 s".into());
        };
        let text = &read.filled()[payload.clone()];
        let answer = match header.opcode {
            OpCode::Text => match kind(text) {
                Kind::Ack => Some(offset(text).ok_or("an ack without an offset")?),
                Kind::Error => return Err(format!("subscribe refused: {}", error_code(text))),
                _ => None,
            },
            OpCode::Close => return Err("closed by the server while subscribing".into()),
            _ => None,
        };
        read.consume(payload.end);
        if let Some(current) = answer {
            return Ok(Subscriber {
                stream,
                read,
                next_offset: current + 1,
            });
        }
    }
}

impl Subscriber {
    /// Receives deliveries until the hang-up (once every delivery is in, or at the settle
    /// deadline) or until the connection fails. The counts are flushed at the publisher's
    /// last record, so the run sees them at once; what has not come by the hang-up counts
    /// as dropped.
    async fn receive(
        mut self,
        clock: Instant,
        totals: &Totals,
        mut hang_up: watch::Receiver<Option<u64>>,
    ) {
        let mut recorder = Recorder::new(totals);
        let outcome: Result<(), String> = async {
            loop {
                let frame = tokio::select! {
                    frame = next_frame(&mut self.stream, &mut self.read, None) => frame?,
                    // A closed channel ends the run as well.
                    _ = hang_up.wait_for(Option::is_some) => return Ok(()),
                };
                let Some((header, payload)) = frame else {
                    return Ok(());
                };
                let text = &self.read.filled()[payload.clone()];
                match header.opcode {
                    OpCode::Text if kind(text) == Kind::Message => {
                        let now = Instant::now();
                        let got = offset(text).ok_or("a message without an offset")?;
                        if got < self.next_offset {
                            totals.duplicates.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let missing = got - self.next_offset;
                            if missing > 0 {
                                totals.drops.fetch_add(missing, Ordering::Relaxed);
                            }
                            self.next_offset = got + 1;
                            let sent = stamp_us(text).map(|us| clock + Duration::from_micros(us));
                            let latency = sent
                                .map_or(Duration::ZERO, |sent| now.saturating_duration_since(sent));
                            recorder.record(now, latency, text.len());
                            if is_last(text) {
                                recorder.flush(now);
                            }
                        }
                    }
                    OpCode::Ping => {
                        let (pong, len) = pong_frame(text);
                        self.stream
                            .write_all(&pong[..len])
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    OpCode::Close => {
                        let code = text.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                        return Err(format!("closed by the server with code {code:?}"));
                    }
                    _ => {}
                }
                self.read.consume(payload.end);
            }
        }
        .await;
        recorder.flush(Instant::now());
        if let Err(e) = outcome {
            totals.error(|| format!("subscriber: {e}"));
        }
        // What never came is dropped (known once the run hangs up; a subscriber that failed
        // before waits for that, with its connection already gone).
        let last = *hang_up
            .wait_for(Option::is_some)
            .await
            .as_deref()
            .unwrap_or(&None);
        if let Some(last) = last {
            let missing = (last + 1).saturating_sub(self.next_offset);
            totals.drops.fetch_add(missing, Ordering::Relaxed);
        }
    }
}

/// Reads until a whole frame is in `read`; returns its header and payload range (in
/// `read.filled()`, to be consumed by the caller), or `None` at `deadline`. Fragmented
/// messages are refused: the gateway sends each message as one frame.
pub async fn next_frame(
    stream: &mut TcpStream,
    read: &mut ReadBuffer,
    deadline: Option<Instant>,
) -> Result<Option<(FrameHeader, Range<usize>)>, String> {
    loop {
        if let Some((header, range)) = complete_frame(read.filled()).map_err(|e| e.to_string())? {
            // RFC 6455 §5.1: "A server MUST NOT mask any frames that it sends to the client."
            if header.mask.is_some() {
                return Err("the server sent a masked frame (RFC 6455 §5.1)".into());
            }
            if !header.fin || header.opcode == OpCode::Continuation {
                return Err("a fragmented message (the fan-out client reads whole frames)".into());
            }
            return Ok(Some((header, range)));
        }
        let spare = read.spare();
        if spare.is_empty() {
            return Err("a frame larger than the read buffer".into());
        }
        // A subscriber's reads have no timer: the hang-up ends its wait.
        let read_result = match deadline {
            Some(deadline) => match timeout_at(deadline.into(), stream.read(spare)).await {
                Err(_) => return Ok(None),
                Ok(result) => result,
            },
            None => stream.read(spare).await,
        };
        match read_result {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(n) => read.advance(n),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}
