//! Watching a connection on the wire: [`Traced`] wraps a transport and reports the opening
//! handshake's HTTP heads and every frame header as the bytes pass, in both directions.
//!
//! The [`WebSocket`](crate::WebSocket) API deals in messages; this is how to see the frames
//! under them (a message may be fragmented into several, and compression shows as RSV1 with
//! the compressed length). The tracer parses headers only and skips payloads, so it holds at
//! most one HTTP head ([`MAX_TRACED_HEAD`]) and one frame header per direction.
//!
//! ```no_run
//! # async fn run() -> Result<(), tether::Error> {
//! use tether::trace::{Traced, TraceEvent};
//! let builder = tether::ClientBuilder::new("ws://127.0.0.1:9001/");
//! let transport = builder.open_transport().await?;
//! let traced = Traced::new(transport, |event: TraceEvent<'_>| eprintln!("{event:?}"));
//! let (ws, _response) = builder.connect_on(traced).await?;
//! # drop(ws); Ok(()) }
//! ```

use std::fmt;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tether_proto::frame::{FrameHeader, MAX_HEADER_LEN};

/// The longest HTTP head the tracer collects; past it, tracing of that direction stops.
pub const MAX_TRACED_HEAD: usize = 64 << 10;

/// Which way bytes went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Written by this endpoint.
    Sent,
    /// Read from the peer.
    Received,
}

/// What the tracer saw.
#[derive(Debug)]
#[non_exhaustive]
pub enum TraceEvent<'a> {
    /// The HTTP head of the opening handshake (request or response), up to and without the
    /// blank line, exactly as it went over the wire.
    HandshakeHead {
        /// Sent (the request, for a client) or received.
        direction: Direction,
        /// The head's bytes.
        head: &'a [u8],
    },
    /// A frame header, as it went over the wire (before unmasking and inflating).
    Frame {
        /// Sent or received.
        direction: Direction,
        /// Opcode, FIN, RSV bits, mask and payload length.
        header: &'a FrameHeader,
    },
    /// The bytes in this direction stopped making sense as frames (or as a WebSocket after a
    /// response other than 101); nothing more is reported for it.
    Stopped {
        /// Sent or received.
        direction: Direction,
        /// Why.
        reason: &'a str,
    },
}

/// Where one direction's byte stream is.
enum Phase {
    /// Collecting the HTTP head.
    Head(Vec<u8>),
    /// Between or inside frames.
    Frames {
        header: [u8; MAX_HEADER_LEN],
        header_len: usize,
        /// Payload bytes of the current frame still to skip.
        skip: u64,
    },
    Off,
}

/// One direction's parser.
struct Tracker {
    direction: Direction,
    phase: Phase,
}

type Observer = Box<dyn FnMut(TraceEvent<'_>) + Send>;

impl Tracker {
    fn new(direction: Direction) -> Self {
        Tracker {
            direction,
            phase: Phase::Head(Vec::new()),
        }
    }

    fn stop(&mut self, observer: &mut Observer, reason: &str) {
        self.phase = Phase::Off;
        observer(TraceEvent::Stopped {
            direction: self.direction,
            reason,
        });
    }

    fn feed(&mut self, mut data: &[u8], observer: &mut Observer) {
        let direction = self.direction;
        while !data.is_empty() {
            match &mut self.phase {
                Phase::Off => return,
                Phase::Head(head) => {
                    let search_from = head.len().saturating_sub(3);
                    let take = data.len().min(MAX_TRACED_HEAD + 4 - head.len());
                    head.extend_from_slice(&data[..take]);
                    let Some(end) = head[search_from..]
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|i| search_from + i)
                    else {
                        data = &data[take..];
                        if head.len() > MAX_TRACED_HEAD {
                            self.stop(observer, "the HTTP head is too long to trace");
                        }
                        continue;
                    };
                    // The bytes past the head's end belong to what follows it.
                    let used = end + 4 - (head.len() - take);
                    data = &data[used..];
                    head.truncate(end);
                    observer(TraceEvent::HandshakeHead {
                        direction,
                        head: head.as_slice(),
                    });
                    let switching = direction == Direction::Sent
                        || head.starts_with(b"HTTP/1.1 101")
                        || head.starts_with(b"HTTP/1.0 101");
                    if switching {
                        self.phase = Phase::Frames {
                            header: [0; MAX_HEADER_LEN],
                            header_len: 0,
                            skip: 0,
                        };
                    } else {
                        self.stop(observer, "the server did not switch protocols");
                    }
                }
                Phase::Frames {
                    header,
                    header_len,
                    skip,
                } => {
                    if *skip > 0 {
                        let n = usize::try_from(*skip).unwrap_or(usize::MAX).min(data.len());
                        *skip -= n as u64;
                        data = &data[n..];
                        continue;
                    }
                    let had = *header_len;
                    let take = data.len().min(MAX_HEADER_LEN - had);
                    header[had..had + take].copy_from_slice(&data[..take]);
                    *header_len = had + take;
                    match FrameHeader::parse(&header[..*header_len]) {
                        Ok(Some((parsed, len))) => {
                            data = &data[len - had..];
                            *header_len = 0;
                            *skip = parsed.payload_len;
                            observer(TraceEvent::Frame {
                                direction,
                                header: &parsed,
                            });
                        }
                        Ok(None) => data = &data[take..],
                        Err(e) => {
                            let reason = format!("not a valid frame header: {e}");
                            self.stop(observer, &reason);
                        }
                    }
                }
            }
        }
    }
}

/// A transport that reports what passes through it (see the [module docs](self)).
pub struct Traced<S> {
    inner: S,
    sent: Tracker,
    received: Tracker,
    observer: Observer,
}

impl<S> fmt::Debug for Traced<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Traced").finish_non_exhaustive()
    }
}

impl<S> Traced<S> {
    /// Wraps `inner`, a transport on which nothing was sent or received yet; `observer` is
    /// called for every [`TraceEvent`], from whichever task does the I/O.
    pub fn new(inner: S, observer: impl FnMut(TraceEvent<'_>) + Send + 'static) -> Self {
        Traced {
            inner,
            sent: Tracker::new(Direction::Sent),
            received: Tracker::new(Direction::Received),
            observer: Box::new(observer),
        }
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Traced<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.received
            .feed(&buf.filled()[before..], &mut this.observer);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Traced<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.sent.feed(&buf[..n], &mut this.observer);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for slice in bufs {
            if left == 0 {
                break;
            }
            let part = left.min(slice.len());
            this.sent.feed(&slice[..part], &mut this.observer);
            left -= part;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use futures_util::{SinkExt, StreamExt};

    use super::*;
    use crate::{ClientBuilder, Message, SendOptions};

    /// Every event as text: `> head`, `< frame Text fin=true rsv1=false len=5 masked=false`.
    fn recorder() -> (Arc<Mutex<Vec<String>>>, impl FnMut(TraceEvent<'_>) + Send) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let observer = move |event: TraceEvent<'_>| {
            let line = match event {
                TraceEvent::HandshakeHead { direction, head } => format!(
                    "{direction:?} head {}",
                    String::from_utf8_lossy(head).lines().next().unwrap_or("")
                ),
                TraceEvent::Frame { direction, header } => format!(
                    "{direction:?} {:?} fin={} rsv1={} len={} masked={}",
                    header.opcode,
                    header.fin,
                    header.rsv1,
                    header.payload_len,
                    header.mask.is_some()
                ),
                TraceEvent::Stopped { direction, reason } => format!("{direction:?} stop {reason}"),
            };
            sink.lock().unwrap().push(line);
        };
        (log, observer)
    }

    #[tokio::test]
    async fn heads_and_every_frame_header_are_reported_both_ways() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut ws = crate::accept(a).await.unwrap();
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_data() {
                    ws.send(msg).await.unwrap();
                }
            }
        });
        let (log, observer) = recorder();
        let mut config = crate::Config::default();
        config.deflate = None;
        let (mut ws, _) = ClientBuilder::new("ws://test/")
            .config(config)
            .connect_on(Traced::new(b, observer))
            .await
            .unwrap();
        ws.send(Message::text("hello")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
        // One message in three frames of 4, 4 and 2 bytes: the tracer sees the frames.
        ws.queue_with(
            Message::binary(&b"0123456789"[..]),
            SendOptions::fragmented(4),
        )
        .unwrap();
        ws.flush().await.unwrap();
        assert!(ws.next().await.unwrap().unwrap().is_data());
        ws.close(None).await.unwrap();
        server.await.unwrap();
        let log = log.lock().unwrap().clone();
        let expected = [
            "Sent head GET / HTTP/1.1",
            "Received head HTTP/1.1 101 Switching Protocols",
            "Sent Text fin=true rsv1=false len=5 masked=true",
            "Received Text fin=true rsv1=false len=5 masked=false",
            "Sent Binary fin=false rsv1=false len=4 masked=true",
            "Sent Continuation fin=false rsv1=false len=4 masked=true",
            "Sent Continuation fin=true rsv1=false len=2 masked=true",
            "Received Binary fin=true rsv1=false len=10 masked=false",
            "Sent Close fin=true rsv1=false len=0 masked=true",
            "Received Close fin=true rsv1=false len=0 masked=false",
        ];
        assert_eq!(log, expected);
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_events() {
        // "HTTP/1.1 101" head, then an unmasked "Hello" (RFC 6455 §5.7) and a ping.
        let mut wire = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec();
        wire.extend_from_slice(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o', 0x89, 0x00]);
        let whole = {
            let (log, observer) = recorder();
            let mut observer: Observer = Box::new(observer);
            Tracker::new(Direction::Received).feed(&wire, &mut observer);
            log.lock().unwrap().clone()
        };
        assert_eq!(whole.len(), 3, "{whole:?}");
        for cut in 1..wire.len() {
            let (log, observer) = recorder();
            let mut observer: Observer = Box::new(observer);
            let mut tracker = Tracker::new(Direction::Received);
            tracker.feed(&wire[..cut], &mut observer);
            tracker.feed(&wire[cut..], &mut observer);
            assert_eq!(*log.lock().unwrap(), whole, "cut at {cut}");
        }
    }

    #[test]
    fn a_refused_handshake_stops_the_trace_at_the_head() {
        let (log, observer) = recorder();
        let mut observer: Observer = Box::new(observer);
        Tracker::new(Direction::Received).feed(
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\n\r\nno!",
            &mut observer,
        );
        assert_eq!(
            *log.lock().unwrap(),
            [
                "Received head HTTP/1.1 403 Forbidden",
                "Received stop the server did not switch protocols"
            ]
        );
    }
}
