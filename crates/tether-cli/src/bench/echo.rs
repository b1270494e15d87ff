//! `tether bench echo` over raw TCP: each connection holds K masked frames built once and
//! keeps K messages in flight, writing as many frames as echoes came back, in one write.
//!
//! A connection's loop waits for its socket to be readable (and writable while frames are
//! due), reads into its reused buffer, checks every complete echo in place, and writes the
//! next frames from its prebuilt buffer: nothing is allocated per message.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tether_proto::frame::{FrameHeader, OpCode};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use super::args::EchoArgs;
use super::echo_check::{EchoCheck, Reply};
use super::frame::{ReadBuffer, pong_frame, repeated_frames};
use super::handshake::{HandshakeSpec, Opened, close, open_many};
use super::progress::Progress;
use super::recorder::{Recorder, Totals};
use super::report::Report;
use super::system::CpuMeter;

/// Handshakes at once while the connections open.
const OPEN_CONCURRENCY: usize = 64;

/// How long the closing handshake at the end may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the echo workload.
pub async fn run(args: &EchoArgs) -> Result<Report, String> {
    let target = &args.common.url;
    let spec = Arc::new(HandshakeSpec::new(target, target.resolve().await?, None));
    let mut connections = Vec::with_capacity(args.connections);
    for (i, opened) in open_many(spec, args.connections, Arc::new([]), OPEN_CONCURRENCY, None)
        .await
        .into_iter()
        .enumerate()
    {
        connections.push(opened.map_err(|e| format!("connection {i}: {e}"))?);
    }

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let totals = Arc::new(Totals::new(measure_from, measure_from + args.duration));
    let cpu = CpuMeter::start();
    let progress = Progress::start("echo", totals.clone(), args.common.json);
    let opcode = if args.text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let mut tasks = JoinSet::new();
    for (index, opened) in connections.into_iter().enumerate() {
        let payload = payload(opcode, args.size, index);
        let (totals, window) = (totals.clone(), args.window());
        tasks.spawn(async move { echo_connection(opened, opcode, payload, window, &totals).await });
    }
    while tasks.join_next().await.is_some() {}
    progress.finish();

    Ok(report(args, &totals, &cpu, false))
}

/// The report of an echo run, raw (`deflate` false) or on the tether client.
pub fn report(args: &EchoArgs, totals: &Totals, cpu: &CpuMeter, deflate: bool) -> Report {
    let mut report = Report::new(
        "echo",
        &args.common.url.url,
        totals,
        args.duration,
        cpu,
        args.common.threads,
    );
    report.parameters = vec![
        ("connections", json!(args.connections)),
        ("size", json!(args.size)),
        ("in_flight", json!(args.window())),
        ("text", json!(args.text)),
        ("deflate", json!(deflate)),
    ];
    report
}

/// The payload of connection `index`: ASCII for text, all byte values for binary, and
/// different per connection so that crossed streams would show.
pub fn payload(opcode: OpCode, size: usize, index: usize) -> Vec<u8> {
    (0..size)
        .map(|i| match opcode {
            OpCode::Text => b'a' + ((i + index) % 26) as u8,
            _ => ((i * 7 + index) % 251) as u8,
        })
        .collect()
}

/// One connection's run: until the end of the measured window, then a closing handshake.
async fn echo_connection(
    opened: Opened,
    opcode: OpCode,
    payload: Vec<u8>,
    window: usize,
    totals: &Totals,
) {
    let Opened {
        mut stream,
        leftover,
    } = opened;
    let wire = repeated_frames(opcode, &payload, window);
    let frame_len = wire.len() / window;
    let mut check = EchoCheck::new(opcode, payload);
    let mut recorder = Recorder::new(totals);
    // Room for two echoes and a control frame: an echo never has to wait for room.
    let mut read = ReadBuffer::with_bytes(2 * frame_len + 256 + 64 * 1024, &leftover);
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut pong = PendingPong::default();
    let (mut write_pos, mut due) = (0usize, wire.len());
    sent_at.extend(std::iter::repeat_n(Instant::now(), window));

    let outcome: Result<(), String> = async {
        loop {
            // A socket that is always ready never lets the timeout below fire.
            if Instant::now() >= totals.measure_until {
                return Ok(());
            }
            let interest = if due > 0 || pong.is_due() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let ready = match timeout_at(totals.measure_until.into(), stream.ready(interest)).await
            {
                Err(_) => return Ok(()),
                Ok(ready) => ready.map_err(|e| format!("socket: {e}"))?,
            };
            if ready.is_writable() {
                // A pong goes between whole frames, never inside one: the frame being
                // written is finished first.
                let at_boundary = write_pos % frame_len == 0;
                if pong.is_due() && at_boundary {
                    pong.write(&stream)?;
                }
                if due > 0 && !(pong.is_due() && at_boundary) {
                    let mut end = (write_pos + due).min(wire.len());
                    if pong.is_due() {
                        end = end.min((write_pos / frame_len + 1) * frame_len);
                    }
                    match stream.try_write(&wire[write_pos..end]) {
                        Ok(n) => {
                            due -= n;
                            write_pos = (write_pos + n) % wire.len();
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        Err(e) => return Err(format!("write: {e}")),
                    }
                }
            }
            if !ready.is_readable() {
                continue;
            }
            match stream.try_read(read.spare()) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => read.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
            let now = Instant::now();
            let mut echoed = 0;
            loop {
                let buffered = read.filled();
                let Some((header, head_len)) =
                    FrameHeader::parse(buffered).map_err(|e| e.to_string())?
                else {
                    break;
                };
                // Checked before the payload is in: the length is bounded by the echo's.
                check.check_header(&header)?;
                let frame_end = head_len + header.payload_len as usize;
                if buffered.len() < frame_end {
                    break;
                }
                let range = head_len..frame_end;
                match check.frame(&header, &buffered[range.clone()]) {
                    Reply::Echoed | Reply::Wrong(_) if sent_at.is_empty() => {
                        return Err("an echo of a message never sent".into());
                    }
                    Reply::Echoed => {
                        let sent = sent_at.pop_front().expect("checked above");
                        recorder.record(now, now - sent, check.expected().len());
                        echoed += 1;
                    }
                    Reply::Wrong(wrong) => {
                        sent_at.pop_front();
                        totals.error(|| wrong);
                        echoed += 1;
                    }
                    Reply::Ping => pong.set(&buffered[range]),
                    Reply::Fragment | Reply::Ignored => {}
                    Reply::Closed(code) => {
                        return Err(format!("the server closed with code {code:?}"));
                    }
                    Reply::Broken(why) => return Err(why),
                }
                read.consume(frame_end);
            }
            if echoed > 0 && now < totals.measure_until {
                due += echoed * frame_len;
                sent_at.extend(std::iter::repeat_n(now, echoed));
            }
        }
    }
    .await;
    recorder.flush(Instant::now());
    match outcome {
        Ok(()) => {
            let rest = (frame_len - write_pos % frame_len) % frame_len;
            let tail = &wire[write_pos..write_pos + rest];
            let _ = timeout_at(
                (Instant::now() + CLOSE_TIMEOUT).into(),
                close(&mut stream, tail, &mut read),
            )
            .await;
        }
        Err(e) => totals.error(|| e),
    }
}

/// A pong owed to the server, written between two frames of the prebuilt stream.
#[derive(Debug, Default)]
struct PendingPong {
    frame: Option<([u8; 131], usize)>,
    written: usize,
}

impl PendingPong {
    /// Owes a pong for a ping of `payload` (a newer ping replaces an older one unsent:
    /// RFC 6455 §5.5.3 allows answering only the most recent).
    fn set(&mut self, payload: &[u8]) {
        if self.written == 0 {
            self.frame = Some(pong_frame(payload));
        }
    }

    fn is_due(&self) -> bool {
        self.frame.is_some()
    }

    /// Writes what the socket takes of the pong.
    fn write(&mut self, stream: &TcpStream) -> Result<(), String> {
        let Some((frame, len)) = &self.frame else {
            return Ok(());
        };
        match stream.try_write(&frame[self.written..*len]) {
            Ok(n) => {
                self.written += n;
                if self.written == *len {
                    self.frame = None;
                    self.written = 0;
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(format!("write: {e}")),
        }
    }
}
