//! The I/O loop around the engine: read into a shared buffer (or, for a large frame, straight
//! into the engine's), feed the engine, write what it queued with one vectored write, arm its
//! timers.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use tether_proto::{
    CloseCode, CloseFrame, Connection, DataFrame, Incoming, Message, ProtocolError, State,
};

use crate::Error;
use crate::keepalive::Keepalive;

/// Size of the per-thread read buffer. Connections borrow it for one read and keep only the
/// bytes the engine has not parsed, so an idle connection holds no read buffer.
const READ_BUF_SIZE: usize = 128 << 10;

/// Most reads per wake-up before yielding to other tasks.
const READS_PER_WAKE: usize = 16;

/// Most slices in one vectored write.
const MAX_IO_SLICES: usize = 64;

thread_local! {
    static READ_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_BUF_SIZE].into_boxed_slice());
}

/// Where the transport is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Open,
    /// Write side shut down; reading and discarding until the peer's EOF, so unread input
    /// does not turn our close into a reset that destroys the close frame in flight.
    Draining,
    Done,
}

/// The engine plus its transport and timers.
pub(crate) struct Driver<S> {
    pub(crate) io: S,
    pub(crate) conn: Connection,
    transport: Transport,
    eof: bool,
    /// An error to report once, before the stream ends. Boxed: it is rare, and `Error` is
    /// large next to an idle connection.
    pending_error: Option<Box<Error>>,
    close_timer: Option<Pin<Box<Sleep>>>,
    pub(crate) keepalive: Option<Box<Keepalive>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    pub(crate) fn new(io: S, conn: Connection) -> Self {
        Driver {
            io,
            conn,
            transport: Transport::Open,
            eof: false,
            pending_error: None,
            close_timer: None,
            keepalive: None,
        }
    }

    /// The next message, ping, pong or close from the peer; `None` once the connection is
    /// closed and the transport shut down.
    pub(crate) fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        self.poll_output(cx, Connection::poll_event)
    }

    /// The next data frame or control frame (frame streaming, see
    /// [`Connection::stream_frames`]); otherwise the next message, as `poll_next`.
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Incoming, Error>>> {
        self.poll_output(cx, Connection::poll_frame)
    }

    /// The I/O loop, yielding what `next` takes out of the engine.
    pub(crate) fn poll_output<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut next: impl FnMut(&mut Connection) -> Option<Result<T, ProtocolError>>,
    ) -> Poll<Option<Result<T, Error>>> {
        let mut reads = 0;
        loop {
            if let Some(event) = next(&mut self.conn) {
                match event {
                    Ok(msg) => return Poll::Ready(Some(Ok(msg))),
                    Err(e) => {
                        // Best effort: the close frame leaves now, even if the caller drops
                        // the connection on this error.
                        let _ = self.poll_write_out(cx);
                        return Poll::Ready(Some(Err(Error::Protocol(e))));
                    }
                }
            }
            if let Some(e) = self.pending_error.take() {
                let _ = self.poll_write_out(cx);
                return Poll::Ready(Some(Err(*e)));
            }
            if self.transport == Transport::Done {
                return Poll::Ready(None);
            }
            // Everything the last read produced (replies, pongs, a close) goes out now, in one
            // vectored write, before waiting for more input.
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => match self.lose_transport(e) {
                    Some(e) => return Poll::Ready(Some(Err(e))),
                    None => return Poll::Ready(None),
                },
                // Keep reading while the peer is slow to take our bytes, up to the outbound
                // limit: past it, stop reading so memory stays bounded.
                Poll::Pending
                    if self.conn.pending_transmit() >= self.conn.config().max_outbound_buffer =>
                {
                    return Poll::Pending;
                }
                Poll::Pending => {}
            }
            if self.transport == Transport::Open && self.conn.should_close_transport() {
                // RFC 6455 §7.1.1: the closing handshake is done; close the TCP connection.
                let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
                self.transport = if self.eof {
                    Transport::Done
                } else {
                    Transport::Draining
                };
                continue;
            }
            if let Poll::Ready(fired) = self.poll_timers(cx) {
                match fired {
                    Ok(()) => continue,
                    Err(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            if self.eof {
                self.transport = Transport::Done;
                continue;
            }
            if reads == READS_PER_WAKE {
                // Bounded work per wake-up: let other connections run.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            reads += 1;
            match ready!(self.poll_read(cx)) {
                Ok(0) => {
                    self.eof = true;
                    let was_closed = self.conn.state() == State::Closed;
                    self.conn.receive_eof();
                    if self.transport == Transport::Draining {
                        self.transport = Transport::Done;
                    } else if !was_closed {
                        // RFC 6455 §7.1.5: the transport closed before the closing handshake.
                        return Poll::Ready(Some(Err(Error::AbnormalClosure)));
                    }
                    // Otherwise the loop shuts our write side down too, then ends the stream.
                }
                Ok(_) => {
                    // Any bytes from the peer show it is alive, also the start of a message
                    // still arriving, and the messages a handler takes without returning
                    // (`WebSocket::for_each_ref`).
                    if let Some(k) = &mut self.keepalive {
                        k.on_receive();
                    }
                }
                Err(e) => match self.lose_transport(e) {
                    Some(e) => return Poll::Ready(Some(Err(e))),
                    None => return Poll::Ready(None),
                },
            }
        }
    }

    /// The transport failed. Once the peer's close frame has arrived (or the engine failed
    /// the connection) the closing handshake is settled: a reset then (a peer that closes its
    /// socket right after its close frame) ends the stream without an error.
    fn lose_transport(&mut self, e: io::Error) -> Option<Error> {
        let settled = self.conn.state() == State::Closed;
        self.conn.receive_eof();
        self.eof = true;
        self.transport = Transport::Done;
        (!settled).then_some(Error::Io(e))
    }

    /// Reads once and hands the bytes to the engine: straight into the engine's buffer while
    /// a large frame is arriving (no copy), otherwise into the thread's shared buffer.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.transport == Transport::Open
            && let Some(len) = self.conn.direct_read_len()
        {
            let io = Pin::new(&mut self.io);
            return self
                .conn
                .receive_into(len, |buf| tokio_util::io::poll_read_buf(io, cx, buf));
        }
        READ_BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => self.read_into(cx, &mut buf),
            // Re-entered from inside a transport's poll_read: use a buffer of our own.
            Err(_) => self.read_into(cx, &mut vec![0; 8 << 10]),
        })
    }

    fn read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut read_buf = ReadBuf::new(buf);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut read_buf))?;
        let filled = read_buf.filled();
        if self.transport == Transport::Open {
            self.conn.receive(filled);
        }
        Poll::Ready(Ok(filled.len()))
    }

    /// Writes everything queued, vectored where the transport supports it, then flushes the
    /// transport (TLS keeps its own buffer).
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.transport != Transport::Open {
            return Poll::Ready(Ok(()));
        }
        while self.conn.pending_transmit() > 0 {
            let written = if self.io.is_write_vectored() {
                let mut slices = [IoSlice::new(&[]); MAX_IO_SLICES];
                let n = self.conn.io_slices(&mut slices);
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]))?
            } else {
                ready!(Pin::new(&mut self.io).poll_write(cx, self.conn.transmit_chunk()))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.conn.advance_transmit(written);
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Polls the close timer and keepalive. `Ready(Ok)` when a timer fired and the loop should
    /// run again; `Ready(Err)` on idle timeout.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The engine's only timer is the closing handshake's (RFC 6455 §7.1.1): an open
        // connection has none, so it reads no clock here (once per read, in the hot loop).
        let now = (self.conn.state() != State::Open).then(Instant::now);
        if let Some(now) = now
            && let Some(deadline) = self.conn.poll_timeout(now.into_std())
        {
            let deadline = Instant::from_std(deadline);
            let timer = self
                .close_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if timer.as_mut().poll(cx).is_ready() {
                self.close_timer = None;
                self.conn
                    .handle_timeout(deadline.into_std().max(now.into_std()));
                return Poll::Ready(Ok(()));
            }
        } else if self.transport == Transport::Draining {
            // Give the peer a bounded time to close after our shutdown.
            let limit = self.conn.config().close_timeout;
            let timer = self
                .close_timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
            if timer.as_mut().poll(cx).is_ready() {
                self.close_timer = None;
                self.transport = Transport::Done;
                return Poll::Ready(Ok(()));
            }
        } else {
            self.close_timer = None;
        }
        if self.conn.state() == State::Open
            && let Some(keepalive) = &mut self.keepalive
        {
            match keepalive.poll(cx) {
                Poll::Ready(crate::keepalive::Due::Ping(payload)) => {
                    let _ = self.conn.send(Message::Ping(payload));
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(crate::keepalive::Due::IdleTimeout) => {
                    let _ = self.conn.close(Some(CloseFrame::new(
                        CloseCode::POLICY_VIOLATION,
                        "idle timeout",
                    )));
                    self.pending_error = Some(Box::new(Error::IdleTimeout));
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }

    /// How many queued bytes make the application's sends wait: half of
    /// `max_outbound_buffer`. Reads stop only past the whole limit (in `poll_next`), so what
    /// the application queues can never stop reads on its own. If it could, two peers that
    /// each stream more than they can queue, with a reader and a writer task each, would
    /// deadlock: each stops reading because its own sends fill the queue, so neither drains.
    /// The other half bounds what reads produce while the peer is slow to take our bytes
    /// (pongs, the close reply). A single message larger than half the limit still passes
    /// the sink whole (it waits for the queue to drain first).
    pub(crate) fn send_limit(&self) -> usize {
        (self.conn.config().max_outbound_buffer / 2).max(1)
    }

    /// Sink readiness: room in the outbound queue ([`Driver::send_limit`]).
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.conn.state() != State::Open {
            return Poll::Ready(Err(Error::ConnectionClosed));
        }
        if self.conn.pending_transmit() >= self.send_limit() {
            ready!(self.poll_write_out(cx))?;
        }
        Poll::Ready(Ok(()))
    }

    pub(crate) fn start_send(&mut self, msg: Message) -> Result<(), Error> {
        self.conn.send(msg).map_err(Error::from)
    }

    pub(crate) fn start_send_frame(&mut self, frame: DataFrame) -> Result<(), Error> {
        self.conn.send_frame(frame).map_err(Error::from)
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_write_out(cx).map_err(Error::Io)
    }

    /// Sends a close frame if none was sent, then drives the connection until the closing
    /// handshake is over and the transport is shut down, discarding incoming messages.
    pub(crate) fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        frame: &mut Option<Option<CloseFrame>>,
    ) -> Poll<Result<(), Error>> {
        if let Some(frame) = frame.take()
            && self.conn.state() == State::Open
        {
            self.conn.close(frame)?;
        }
        loop {
            match ready!(self.poll_next(cx)) {
                Some(Err(Error::Io(e))) => return Poll::Ready(Err(Error::Io(e))),
                Some(_) => continue,
                None => return Poll::Ready(Ok(())),
            }
        }
    }

    /// The default close frame for `Sink::poll_close`.
    pub(crate) fn normal_close() -> Option<Option<CloseFrame>> {
        Some(Some(CloseFrame::new(CloseCode::NORMAL, "")))
    }

    pub(crate) fn set_keepalive(&mut self, interval: Duration, timeout: Duration) {
        self.keepalive = Some(Box::new(Keepalive::new(interval, timeout)));
    }
}
