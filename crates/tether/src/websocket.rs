//! `WebSocket<S>`: a connection as a `Stream` of messages and a `Sink` for them.

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use tether_proto::{CloseFrame, Connection, Message, Role, SendOptions, State};

use crate::Error;
use crate::driver::Driver;
use crate::split::{ReadHalf, WriteHalf, split};

/// What the opening handshake agreed on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The subprotocol both ends use, if any.
    pub subprotocol: Option<String>,
    /// Whether permessage-deflate is in use.
    pub compression: bool,
}

/// A WebSocket connection over any byte stream `S` (TCP, TLS, an upgraded hyper connection, an
/// in-memory duplex).
///
/// As a [`Stream`] it yields every message and control frame from the peer (pings are answered
/// by the engine as they are yielded), and ends after the closing handshake. As a [`Sink`] it
/// takes messages; sending waits while half of `max_outbound_buffer` is queued (the other half
/// is room for what reads produce, so a full send queue never stops reads).
///
/// Reads are cancel-safe: everything read is held by the engine, so dropping a pending
/// `next()` loses nothing.
///
/// Writes are batched: bytes queued with [`SinkExt::feed`](https://docs.rs/futures/latest/futures/sink/trait.SinkExt.html#method.feed)
/// (or [`WebSocket::queue`]) go out in one vectored write when the stream next waits for
/// input, or on `flush`. An echo loop that `feed`s each reply writes all replies to one read
/// with one system call; `send` (feed + flush) writes once per message.
pub struct WebSocket<S> {
    driver: Driver<S>,
    /// `None` for the common agreement (no subprotocol, no compression): an idle connection
    /// then holds one pointer for it.
    negotiated: Option<Box<Negotiated>>,
}

/// What [`WebSocket::negotiated`] returns when nothing was agreed.
static NOTHING_NEGOTIATED: Negotiated = Negotiated {
    subprotocol: None,
    compression: false,
};

impl<S> fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("conn", &self.driver.conn)
            .field(
                "negotiated",
                self.negotiated.as_deref().unwrap_or(&NOTHING_NEGOTIATED),
            )
            .finish()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    /// Wraps a stream on which the opening handshake is already done. `leftover` holds bytes
    /// read past the handshake, which belong to the WebSocket stream.
    pub fn from_connection(
        io: S,
        conn: Connection,
        negotiated: Negotiated,
        leftover: &[u8],
    ) -> Self {
        let mut driver = Driver::new(io, conn);
        driver.conn.receive(leftover);
        let negotiated = (negotiated != NOTHING_NEGOTIATED).then(|| Box::new(negotiated));
        WebSocket { driver, negotiated }
    }

    /// What the handshake agreed on.
    pub fn negotiated(&self) -> &Negotiated {
        self.negotiated.as_deref().unwrap_or(&NOTHING_NEGOTIATED)
    }

    /// The subprotocol in use, if any.
    pub fn subprotocol(&self) -> Option<&str> {
        self.negotiated().subprotocol.as_deref()
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.driver.conn.role()
    }

    /// Where the connection is in its life.
    pub fn state(&self) -> State {
        self.driver.conn.state()
    }

    /// The transport.
    pub fn get_ref(&self) -> &S {
        &self.driver.io
    }

    /// The transport, mutably. Reading or writing it directly corrupts the stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.driver.io
    }

    /// Sends a ping after `interval` without incoming data, and fails the connection with
    /// [`Error::IdleTimeout`] (after sending close 1008) when nothing arrives for `timeout`.
    /// Timers run while the stream is polled.
    pub fn set_keepalive(&mut self, interval: Duration, timeout: Duration) {
        self.driver.set_keepalive(interval, timeout);
    }

    /// Runs the connection and lends every message and control frame to `f` as it arrives
    /// (the engine's [`Connection::for_each_ref`]): each is read where it lies in the read
    /// buffer, with no allocation or reference count, and `f` can queue replies with the
    /// [`Sender`](tether_proto::Sender) beside it. Replies leave together when the connection
    /// next waits for input, as with [`queue`](Self::queue): all the replies to one read in
    /// one write. This is the fastest way to receive, uWebSockets' way: a handler per message,
    /// no task wake-up or future between them.
    ///
    /// Returns `Some(Ok(()))` as soon as `f` breaks: the message `f` broke on stays lent, for
    /// [`take_lent`](Self::take_lent) (to keep it, or to wait for room to answer it). Returns
    /// `Some(Err(_))` when the connection fails, and `None` once it is closed and the
    /// transport shut down (after `f` saw the close). Pings and closes are answered by the
    /// engine, as with `next()`. Reading stops while `max_outbound_buffer` bytes are queued,
    /// so a peer that does not read cannot make the replies grow without bound; a
    /// [`send`](tether_proto::Sender::send) that finds the queue full fails with
    /// [`SendError::Full`](tether_proto::SendError::Full). Cancel-safe.
    ///
    /// An echo server:
    ///
    /// ```no_run
    /// use std::ops::ControlFlow;
    ///
    /// # async fn echo(mut ws: tether::WebSocket<tokio::net::TcpStream>) {
    /// let done = ws
    ///     .for_each_ref(|message, sender| {
    ///         if message.is_data() && sender.send_ref(message).is_err() {
    ///             return ControlFlow::Break(());
    ///         }
    ///         ControlFlow::Continue(())
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub fn for_each_ref<F>(&mut self, f: F) -> ForEachRef<'_, S, F>
    where
        F: FnMut(tether_proto::MessageRef<'_>, &mut tether_proto::Sender<'_>) -> ControlFlow<()>,
    {
        ForEachRef { ws: self, f }
    }

    /// Takes the message [`for_each_ref`](Self::for_each_ref) broke on as an owned
    /// [`Message`], as `next()` would have returned it. `None` if nothing is lent.
    pub fn take_lent(&mut self) -> Option<Message> {
        self.driver.conn.take_lent()
    }

    /// Queues a message without writing it (see the batching note on [`WebSocket`]).
    pub fn queue(&mut self, msg: Message) -> Result<(), Error> {
        self.driver.start_send(msg)
    }

    /// Queues a message with options: uncompressed, or fragmented into frames.
    pub fn queue_with(&mut self, msg: Message, options: SendOptions) -> Result<(), Error> {
        self.driver
            .conn
            .send_with(msg, options)
            .map_err(Error::from)
    }

    /// Queues a message framed once for many connections (fan-out).
    pub fn queue_prepared(&mut self, msg: &tether_proto::PreparedMessage) -> Result<(), Error> {
        self.driver.conn.send_prepared(msg).map_err(Error::from)
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.driver.conn.pending_transmit()
    }

    /// Starts the closing handshake with `frame` and waits until it is over and the transport
    /// is shut down. Messages that arrive meanwhile are discarded.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        let mut frame = Some(frame);
        std::future::poll_fn(|cx| self.driver.poll_close(cx, &mut frame)).await
    }

    /// Switches the engine to frame streaming
    /// ([`Connection::stream_frames`](tether_proto::Connection::stream_frames)): after the
    /// split, [`ReadHalf::next_frame`] yields data frames as they arrive and
    /// [`WriteHalf::send_frame`] sends them, so a relay passes messages on without
    /// reassembling them. Returns `false`, changing nothing, once data was sent or received.
    pub fn stream_frames(&mut self) -> bool {
        self.driver.conn.stream_frames()
    }

    /// The permessage-deflate parameters the handshake agreed on, if any.
    pub fn deflate_params(&self) -> Option<tether_proto::deflate::DeflateParams> {
        self.driver.conn.deflate_params()
    }

    /// Splits into a reader and a writer that can be used from different tasks.
    pub fn split(self) -> (ReadHalf<S>, WriteHalf<S>) {
        split(self.driver)
    }
}

/// The future of [`WebSocket::for_each_ref`]. A named type rather than an `async fn`: it holds
/// the connection's pointer and the handler, nothing else, so a task waiting in it (an idle
/// connection's) is no larger than one waiting in `next()`.
#[must_use = "futures do nothing unless polled"]
pub struct ForEachRef<'a, S, F> {
    ws: &'a mut WebSocket<S>,
    f: F,
}

impl<S, F> fmt::Debug for ForEachRef<'_, S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForEachRef").finish_non_exhaustive()
    }
}

impl<S, F> Future for ForEachRef<'_, S, F>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut(tether_proto::MessageRef<'_>, &mut tether_proto::Sender<'_>) -> ControlFlow<()>
        + Unpin,
{
    type Output = Option<Result<(), Error>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let f = &mut this.f;
        this.ws
            .driver
            .poll_output(cx, |conn| match conn.for_each_ref(&mut *f) {
                // Everything buffered was lent: the driver writes the replies and reads on.
                Ok(ControlFlow::Continue(())) => None,
                Ok(ControlFlow::Break(())) => Some(Ok(())),
                Err(e) => Some(Err(e)),
            })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().driver.poll_next(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().driver.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        self.get_mut().driver.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().driver.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        // The first call queues the close frame (the state is then no longer `Open`); later
        // calls only drive the closing handshake.
        let mut frame = if this.driver.conn.state() == State::Open {
            Driver::<S>::normal_close()
        } else {
            None
        };
        this.driver.poll_close(cx, &mut frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection's task holds: the engine, the transport and little else
    /// (docs/PERFORMANCE.md, memory per idle connection). 256 bytes in a release build;
    /// tokio with its test features (the dev-dependency) adds a few to `TcpStream`.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn an_idle_websocket_is_small() {
        let size = std::mem::size_of::<WebSocket<tokio::net::TcpStream>>();
        assert!(size <= 272, "WebSocket<TcpStream> is {size} bytes");
    }

    /// An idle connection's task waits in `for_each_ref` (the echo server's) or `next()`: the
    /// future holds one pointer and the handler, which captures nothing here.
    #[test]
    fn waiting_in_for_each_ref_costs_no_more_than_in_next() {
        fn size_of_for_each_ref<S: 'static, F>(_: &F) -> usize
        where
            F: FnMut(
                tether_proto::MessageRef<'_>,
                &mut tether_proto::Sender<'_>,
            ) -> ControlFlow<()>,
        {
            std::mem::size_of::<ForEachRef<'static, S, F>>()
        }
        let handler = |_: tether_proto::MessageRef<'_>, _: &mut tether_proto::Sender<'_>| {
            ControlFlow::Continue(())
        };
        let next = std::mem::size_of::<
            futures_util::stream::Next<'static, WebSocket<tokio::net::TcpStream>>,
        >();
        assert_eq!(
            size_of_for_each_ref::<tokio::net::TcpStream, _>(&handler),
            next
        );
    }

    #[tokio::test]
    async fn negotiated_reads_back_with_and_without_an_agreement() {
        let (a, _b) = tokio::io::duplex(64);
        let plain = WebSocket::from_connection(
            a,
            Connection::server(tether_proto::Config::default(), None),
            Negotiated::default(),
            &[],
        );
        assert_eq!(plain.negotiated(), &Negotiated::default());
        assert_eq!(plain.subprotocol(), None);
        let (a, _b) = tokio::io::duplex(64);
        let agreed = Negotiated {
            subprotocol: Some("chat".into()),
            compression: false,
        };
        let chat = WebSocket::from_connection(
            a,
            Connection::server(tether_proto::Config::default(), None),
            agreed.clone(),
            &[],
        );
        assert_eq!(chat.negotiated(), &agreed);
        assert_eq!(chat.subprotocol(), Some("chat"));
    }
}
