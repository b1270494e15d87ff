//! `tether bench echo` over raw TCP: each connection holds K masked frames built once and
//! keeps K messages in flight; every echo that comes back is refilled at once.
//!
//! A connection is one task polling its socket directly (no per-read future, no timer per
//! wait): a read into its reused buffer, a check of every complete echo in place (its
//! header bytes, its sequence number), one clock reading per read, and then one write of
//! all the frames due, whose sequence numbers are patched into the prebuilt masked frames.
//! A read or write that returns less than asked leaves the socket marked not ready, so a
//! busy connection costs one `read` and one `write` per batch of echoes. Nothing is
//! allocated per message.
//!
//! Large echoes (4 KiB and more, `--verify sequence`) are read only up to their sequence
//! number; the kernel discards the rest of each (`recv` with `MSG_TRUNC`, Linux), so the
//! tool does not pay a copy of every echoed byte, which would make it the bottleneck of a
//! large-message run before the server is.

use std::future::poll_fn;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use serde_json::json;
use tether_proto::frame::{MAX_HEADER_LEN, OpCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Sleep, sleep_until, timeout_at};

use super::args::EchoArgs;
use super::echo_check::{EchoCheck, Reply, Verify};
use super::frame::{ReadBuffer, pong_frame, repeated_frames, write_masked_sequence};
use super::handshake::{HandshakeSpec, Opened, close, open_many};
use super::progress::Progress;
use super::recorder::{Recorder, Totals};
use super::report::Report;
use super::system::{CpuMeter, cpu_time_between};

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
    let server_cpu = ServerCpu::start(args, &totals);
    let progress = Progress::start("echo", totals.clone(), args.common.json);
    let opcode = if args.text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let mut tasks = JoinSet::new();
    for (index, opened) in connections.into_iter().enumerate() {
        let payload = payload(opcode, args.size, index);
        let (totals, window, verify) = (totals.clone(), args.window(), args.verify);
        tasks.spawn(async move {
            echo_connection(opened, opcode, payload, window, verify, &totals).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    progress.finish();

    let server_cpu = server_cpu.finish().await;
    Ok(report(args, &totals, &cpu, server_cpu, false))
}

/// The server's CPU time over the measured window (`--server-pid`), read by a task of its
/// own at the window's start and end.
pub struct ServerCpu(Option<tokio::task::JoinHandle<Option<Duration>>>);

impl ServerCpu {
    /// Starts watching the window of `totals`; does nothing without `--server-pid`.
    pub fn start(args: &EchoArgs, totals: &Totals) -> ServerCpu {
        ServerCpu(args.server_pid.map(|pid| {
            tokio::spawn(cpu_time_between(
                pid,
                totals.measure_from,
                totals.measure_until,
            ))
        }))
    }

    /// The CPU time the server used in the window; `None` without `--server-pid` or where
    /// `/proc/PID/stat` could not be read.
    pub async fn finish(self) -> Option<Duration> {
        self.0?.await.ok().flatten()
    }
}

/// The report of an echo run, raw (`deflate` false) or on the tether client, with the
/// server's CPU over the window when it was measured.
pub fn report(
    args: &EchoArgs,
    totals: &Totals,
    cpu: &CpuMeter,
    server_cpu: Option<Duration>,
    deflate: bool,
) -> Report {
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
    if !deflate {
        report
            .parameters
            .push(("verify", json!(args.verify.name())));
    }
    if let Some(used) = server_cpu {
        let seconds = used.as_secs_f64();
        report.results.push(("server_cpu_s", json!(seconds)));
        let percent = seconds / args.duration.as_secs_f64().max(f64::MIN_POSITIVE) * 100.0;
        report
            .results
            .push(("server_cpu_percent", json!((percent * 10.0).round() / 10.0)));
        if report.messages > 0 {
            let per_message = seconds * 1e6 / report.messages as f64;
            report.results.push((
                "server_cpu_us_per_message",
                json!((per_message * 100.0).round() / 100.0),
            ));
        }
    }
    report
}

impl Verify {
    /// The name given on the command line and in the JSON report.
    pub fn name(self) -> &'static str {
        match self {
            Verify::Sequence => "sequence",
            Verify::Full => "full",
        }
    }
}

/// The payload of connection `index`: ASCII for text, all byte values for binary, and
/// different per connection so that crossed streams would show. The raw client writes
/// each message's sequence number over its first 8 bytes.
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
    verify: Verify,
    totals: &Totals,
) {
    let Opened {
        mut stream,
        leftover,
    } = opened;
    let mut echo = EchoConnection::new(opcode, payload, window, verify, &leftover, totals);
    let mut deadline = std::pin::pin!(sleep_until(totals.measure_until.into()));
    let outcome = poll_fn(|cx| echo.poll_run(cx, &mut stream, deadline.as_mut())).await;
    echo.recorder.flush(Instant::now());
    match outcome {
        Ok(()) => {
            let (tail, read) = echo.unfinished_frame();
            let _ = timeout_at(
                (Instant::now() + CLOSE_TIMEOUT).into(),
                close(&mut stream, tail, read),
            )
            .await;
        }
        Err(e) => totals.error(|| e),
    }
}

/// The state of one echo connection.
struct EchoConnection<'a> {
    /// K frames, one slot per message in flight: message `n` goes out in slot `n % K`.
    wire: Vec<u8>,
    frame_len: usize,
    /// Where in `wire` the payload of a frame starts.
    head_len: usize,
    window: u64,
    /// The next byte of `wire` to write, and how many bytes are due from there.
    write_pos: usize,
    due: usize,
    /// The sequence number of the next message to make due, and its slot in `wire`.
    sent: u64,
    send_slot: usize,
    /// When each message in flight was made due, in nanoseconds since `epoch`: message `n`
    /// at `n & sent_mask` (a power of two at least K long, so no division per message).
    sent_ns: Box<[u64]>,
    sent_mask: u64,
    epoch: Instant,
    check: EchoCheck,
    read: ReadBuffer,
    /// The echo whose payload the kernel is discarding, and how much of it is left.
    discarding: Option<Discard>,
    /// What a discarding `recv` points at: never written (`MSG_TRUNC`), so never touched.
    /// Empty unless echoes are discarded.
    sink: Box<[MaybeUninit<u8>]>,
    pong: PendingPong,
    recorder: Recorder<'a>,
    totals: &'a Totals,
}

impl<'a> EchoConnection<'a> {
    fn new(
        opcode: OpCode,
        payload: Vec<u8>,
        window: usize,
        verify: Verify,
        leftover: &[u8],
        totals: &'a Totals,
    ) -> EchoConnection<'a> {
        let wire = repeated_frames(opcode, &payload, window);
        let frame_len = wire.len() / window;
        let head_len = frame_len - payload.len();
        debug_assert!(head_len <= MAX_HEADER_LEN);
        // Room for two echoes and a control frame: an echo never has to wait for room.
        let read = ReadBuffer::with_bytes(2 * frame_len + 256 + 64 * 1024, leftover);
        let check = EchoCheck::new(opcode, payload, verify, window);
        let sink_len = if DISCARDS && check.prefix_len().is_some() {
            frame_len.min(MAX_DISCARD)
        } else {
            0
        };
        let mut connection = EchoConnection {
            wire,
            frame_len,
            head_len,
            window: window as u64,
            write_pos: 0,
            due: 0,
            sent: 0,
            send_slot: 0,
            sent_ns: vec![0; window.next_power_of_two()].into_boxed_slice(),
            sent_mask: window.next_power_of_two() as u64 - 1,
            epoch: Instant::now(),
            check,
            read,
            discarding: None,
            sink: vec![MaybeUninit::uninit(); sink_len].into_boxed_slice(),
            pong: PendingPong::default(),
            recorder: Recorder::new(totals),
            totals,
        };
        connection.make_due(window as u64, 0);
        connection
    }

    /// Nanoseconds from the connection's epoch to `now`.
    fn ns_since_epoch(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Makes the next `count` messages due at `now_ns`: their numbers written into their
    /// slots.
    fn make_due(&mut self, count: u64, now_ns: u64) {
        let payload_len = self.frame_len - self.head_len;
        for number in self.sent..self.sent + count {
            let start = self.send_slot * self.frame_len + self.head_len;
            write_masked_sequence(&mut self.wire[start..start + payload_len], number);
            self.sent_ns[(number & self.sent_mask) as usize] = now_ns;
            self.send_slot += 1;
            if self.send_slot as u64 == self.window {
                self.send_slot = 0;
            }
        }
        self.sent += count;
        self.due += count as usize * self.frame_len;
    }

    /// The latency in microseconds of message `number`, echoed at `now_ns`.
    fn latency_us(&self, number: u64, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.sent_ns[(number & self.sent_mask) as usize]) / 1000
    }

    /// The rest of a frame cut by a partial write (it must go before a close), and the
    /// read buffer for the closing handshake.
    fn unfinished_frame(&mut self) -> (&[u8], &mut ReadBuffer) {
        let rest = (self.frame_len - self.write_pos % self.frame_len) % self.frame_len;
        (
            &self.wire[self.write_pos..self.write_pos + rest],
            &mut self.read,
        )
    }

    /// Runs until the end of the measured window (`Ok`) or a failure of the connection.
    fn poll_run(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut TcpStream,
        mut deadline: Pin<&mut Sleep>,
    ) -> Poll<Result<(), String>> {
        loop {
            let wrote = self.poll_write(cx, stream)?;
            let read = if self.discarding.is_some() {
                self.poll_discard(cx, stream)?
            } else {
                self.poll_read(cx, stream)?
            };
            if read > 0 {
                let now = Instant::now();
                match &self.discarding {
                    Some(d) if d.left == 0 => self.discarded(now),
                    Some(_) => {}
                    None => self.take_echoes(now)?,
                }
                // A discard in progress finishes first: the closing handshake reads frames.
                if now >= self.totals.measure_until && self.discarding.is_none() {
                    return Poll::Ready(Ok(()));
                }
            } else if !wrote {
                // Nothing to do until the socket is ready: the one timer of the run says
                // when a stalled server's window ends.
                ready!(deadline.as_mut().poll(cx));
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Reads into the buffer (only up to the sequence number of an echo whose rest is to be
    /// discarded); how many bytes came, 0 if none yet.
    fn poll_read(&mut self, cx: &mut Context<'_>, stream: &mut TcpStream) -> Result<usize, String> {
        let filled = self.read.filled().len();
        let spare = self.read.spare();
        let limit = match self.check.prefix_len() {
            Some(prefix) if DISCARDS && filled < prefix => prefix - filled,
            _ => spare.len(),
        };
        let len = limit.min(spare.len());
        let mut buf = ReadBuf::new(&mut spare[..len]);
        match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                Err("the server closed the connection".into())
            }
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len();
                self.read.advance(n);
                Ok(n)
            }
            Poll::Ready(Err(e)) => Err(format!("read: {e}")),
            Poll::Pending => Ok(0),
        }
    }

    /// Has the kernel discard what is left of the echo being discarded; how many bytes
    /// went, 0 if none yet.
    fn poll_discard(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut TcpStream,
    ) -> Result<usize, String> {
        let Some(discard) = &mut self.discarding else {
            return Ok(0);
        };
        loop {
            if stream.poll_read_ready(cx).is_pending() {
                return Ok(0);
            }
            let len = discard.left.min(self.sink.len());
            let sink = &mut self.sink[..len];
            match stream.try_io(tokio::io::Interest::READABLE, || {
                discard_received(stream, sink)
            }) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => {
                    discard.left -= n.min(discard.left);
                    return Ok(n);
                }
                // Readiness is cleared: wait for it again.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The echo being discarded has all arrived: it counts now.
    fn discarded(&mut self, now: Instant) {
        let Some(discard) = self.discarding.take() else {
            return;
        };
        let now_ns = self.ns_since_epoch(now);
        if self.totals.in_window(now) {
            self.recorder
                .record_us(self.latency_us(discard.number, now_ns), self.check.size());
        }
        self.refill(1, now, now_ns);
    }

    /// Writes what is due (a pong first, between two frames); whether anything went out.
    fn poll_write(&mut self, cx: &mut Context<'_>, stream: &mut TcpStream) -> Result<bool, String> {
        let at_boundary = self.write_pos % self.frame_len == 0;
        if self.pong.is_due() && at_boundary {
            return self.pong.poll_write(cx, stream);
        }
        if self.due == 0 {
            return Ok(false);
        }
        // A pong goes between whole frames, never inside one: the frame being written is
        // finished first.
        let mut end = (self.write_pos + self.due).min(self.wire.len());
        if self.pong.is_due() {
            end = end.min((self.write_pos / self.frame_len + 1) * self.frame_len);
        }
        let first = &self.wire[self.write_pos..end];
        let wrapped = if end == self.wire.len() && !self.pong.is_due() {
            &self.wire[..self.due - first.len()]
        } else {
            &[]
        };
        // A plain write when nothing wraps: a short one marks the socket not writable.
        let written = if wrapped.is_empty() {
            Pin::new(stream).poll_write(cx, first)
        } else {
            let slices = [IoSlice::new(first), IoSlice::new(wrapped)];
            Pin::new(stream).poll_write_vectored(cx, &slices)
        };
        match written {
            Poll::Ready(Ok(n)) => {
                self.due -= n;
                self.write_pos = (self.write_pos + n) % self.wire.len();
                Ok(n > 0)
            }
            Poll::Ready(Err(e)) => Err(format!("write: {e}")),
            Poll::Pending => Ok(false),
        }
    }

    /// Takes every complete frame from the read buffer, and makes as many messages due as
    /// echoes came back (none once the window is over).
    fn take_echoes(&mut self, now: Instant) -> Result<(), String> {
        // One clock reading for every echo of the read: they all arrived together.
        let now_ns = self.ns_since_epoch(now);
        let counted = self.totals.in_window(now);
        let size = self.check.size();
        let mut refill = 0;
        while let Some((reply, payload)) = self.check.next_frame(self.read.filled(), self.sent)? {
            match reply {
                Reply::Echoed(number) => {
                    if counted {
                        self.recorder
                            .record_us(self.latency_us(number, now_ns), size);
                    }
                    refill += 1;
                }
                Reply::Lost { echoed, lost } => {
                    if counted {
                        self.recorder
                            .record_us(self.latency_us(echoed, now_ns), size);
                    }
                    self.totals
                        .drops
                        .fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
                    self.totals.error(|| {
                        format!("{lost} message(s) before message {echoed} never came back")
                    });
                    refill += lost + 1;
                }
                Reply::Duplicate(number) => {
                    self.totals
                        .error(|| format!("message {number} came back twice"));
                }
                Reply::Wrong(wrong) => {
                    self.totals.error(|| wrong);
                    refill += 1;
                }
                Reply::Ping => self.pong.set(&self.read.filled()[payload.clone()]),
                Reply::Fragment | Reply::Ignored => {}
                Reply::Closed(code) => {
                    return Err(format!("the server closed with code {code:?}"));
                }
                Reply::Broken(why) => return Err(why),
            }
            self.read.consume(payload.end);
        }
        if DISCARDS && let Some((number, left)) = self.check.take_prefix(self.read.filled()) {
            // The echo due, checked on its sequence number: the rest is discarded unread.
            self.read.consume(self.read.filled().len());
            self.discarding = Some(Discard { number, left });
        }
        if self.check.next() > self.sent {
            return Err("an echo of a message never sent".into());
        }
        self.refill(refill, now, now_ns);
        Ok(())
    }

    /// Makes up to `refill` messages due again, for echoes that came back.
    fn refill(&mut self, refill: u64, now: Instant, now_ns: u64) {
        // A slot is refilled only once its message is written whole: a server that answers
        // before it has the message (so not an echo) cannot make the tool cut a frame.
        let unwritten = self.due.div_ceil(self.frame_len) as u64;
        let refill = refill.min(self.window - unwritten);
        if refill > 0 && now < self.totals.measure_until {
            self.make_due(refill, now_ns);
        }
        self.recorder.tick(now);
    }
}

/// Whether echoes are discarded unread past their sequence number: `MSG_TRUNC` does that for
/// TCP on Linux only (tcp(7)); elsewhere every echo is read whole.
const DISCARDS: bool = cfg!(target_os = "linux");

/// The most one discarding `recv` asks for.
const MAX_DISCARD: usize = 1 << 20;

/// An echo checked on its sequence number, whose payload the kernel is discarding.
#[derive(Debug)]
struct Discard {
    number: u64,
    left: usize,
}

/// Discards up to `sink.len()` received bytes without copying them (tcp(7): `MSG_TRUNC` makes
/// `recv` drop the data instead of passing it back in the buffer).
#[cfg(target_os = "linux")]
fn discard_received(stream: &TcpStream, sink: &mut [MaybeUninit<u8>]) -> std::io::Result<usize> {
    socket2::SockRef::from(stream).recv_with_flags(sink, libc::MSG_TRUNC)
}

#[cfg(not(target_os = "linux"))]
fn discard_received(_: &TcpStream, _: &mut [MaybeUninit<u8>]) -> std::io::Result<usize> {
    unreachable!("echoes are discarded on Linux only (DISCARDS)")
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

    /// Writes what the socket takes of the pong; whether anything went out.
    fn poll_write(&mut self, cx: &mut Context<'_>, stream: &mut TcpStream) -> Result<bool, String> {
        let Some((frame, len)) = &self.frame else {
            return Ok(false);
        };
        match Pin::new(stream).poll_write(cx, &frame[self.written..*len]) {
            Poll::Ready(Ok(n)) => {
                self.written += n;
                if self.written == *len {
                    self.frame = None;
                    self.written = 0;
                }
                Ok(n > 0)
            }
            Poll::Ready(Err(e)) => Err(format!("write: {e}")),
            Poll::Pending => Ok(false),
        }
    }
}
