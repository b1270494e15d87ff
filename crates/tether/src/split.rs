//! A reader and a writer over one connection, for use from different tasks.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite};

use tether_proto::{CloseFrame, DataFrame, Incoming, Message};

use crate::Error;
use crate::driver::Driver;

/// The tasks waiting on either half. Either half's I/O can make progress for the other (the
/// reader flushes queued pongs, the writer's flush frees room), and a transport keeps one
/// waker per direction, so every registration wakes both halves.
#[derive(Default)]
struct Wakers {
    reader: Mutex<Option<Waker>>,
    writer: Mutex<Option<Waker>>,
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.reader, &self.writer] {
            if let Some(w) = lock(slot).take() {
                w.wake();
            }
        }
    }
}

struct Shared<S> {
    driver: Mutex<Driver<S>>,
    wakers: Arc<Wakers>,
    proxy: Waker,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while polling leaves nothing half-updated that matters more than the panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<S> Shared<S> {
    /// Runs `f` on the driver with a context whose waker wakes both halves.
    fn with<R>(
        &self,
        cx: &Context<'_>,
        slot: &Mutex<Option<Waker>>,
        f: impl FnOnce(&mut Driver<S>, &mut Context<'_>) -> R,
    ) -> R {
        {
            let mut registered = lock(slot);
            match &*registered {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *registered = Some(cx.waker().clone()),
            }
        }
        let mut proxy_cx = Context::from_waker(&self.proxy);
        f(&mut lock(&self.driver), &mut proxy_cx)
    }
}

pub(crate) fn split<S>(driver: Driver<S>) -> (ReadHalf<S>, WriteHalf<S>) {
    let wakers = Arc::new(Wakers::default());
    let proxy = Waker::from(wakers.clone());
    let shared = Arc::new(Shared {
        driver: Mutex::new(driver),
        wakers,
        proxy,
    });
    (
        ReadHalf {
            shared: shared.clone(),
        },
        WriteHalf {
            shared,
            close_frame: None,
        },
    )
}

/// The receiving half of a split [`WebSocket`](crate::WebSocket): a [`Stream`] of messages.
pub struct ReadHalf<S> {
    shared: Arc<Shared<S>>,
}

/// The sending half of a split [`WebSocket`](crate::WebSocket): a [`Sink`] of messages.
pub struct WriteHalf<S> {
    shared: Arc<Shared<S>>,
    close_frame: Option<Option<CloseFrame>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for ReadHalf<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let shared = &self.shared;
        shared.with(cx, &shared.wakers.reader, |d, cx| d.poll_next(cx))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    /// The next data frame, ping, pong or close, for a connection that streams frames
    /// ([`WebSocket::stream_frames`](crate::WebSocket::stream_frames)); without frame
    /// streaming, the next message as [`Incoming::Message`]. `None` once the connection is
    /// closed and the transport shut down. Cancel-safe, like the stream.
    pub async fn next_frame(&mut self) -> Option<Result<Incoming, Error>> {
        std::future::poll_fn(|cx| {
            let shared = &self.shared;
            shared.with(cx, &shared.wakers.reader, |d, cx| d.poll_frame(cx))
        })
        .await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WriteHalf<S> {
    /// Queues a message without writing it; it goes out on the next flush or read.
    pub fn queue(&self, msg: Message) -> Result<(), Error> {
        lock(&self.shared.driver).start_send(msg)
    }

    /// Sends one data frame and flushes it: waits for room as the sink does, then queues it
    /// with [`Connection::send_frame`](tether_proto::Connection::send_frame), which refuses
    /// a frame out of sequence (RFC 6455 §5.4).
    pub async fn send_frame(&mut self, frame: DataFrame) -> Result<(), Error> {
        std::future::poll_fn(|cx| {
            let shared = &self.shared;
            shared.with(cx, &shared.wakers.writer, |d, cx| d.poll_ready(cx))
        })
        .await?;
        lock(&self.shared.driver).start_send_frame(frame)?;
        std::future::poll_fn(|cx| {
            let shared = &self.shared;
            shared.with(cx, &shared.wakers.writer, |d, cx| d.poll_flush(cx))
        })
        .await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WriteHalf<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let shared = &self.shared;
        shared.with(cx, &shared.wakers.writer, |d, cx| d.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        lock(&self.shared.driver).start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let shared = &self.shared;
        shared.with(cx, &shared.wakers.writer, |d, cx| d.poll_flush(cx))
    }

    /// Sends a normal close (1000) and flushes it. The reader sees the peer's close and the
    /// end of the stream; this half does not wait for them.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let this = self.get_mut();
        let shared = &this.shared;
        if this.close_frame.is_none() {
            this.close_frame = Driver::<S>::normal_close();
            let mut driver = lock(&shared.driver);
            if let Some(Some(frame)) = this.close_frame.clone() {
                if driver.conn.state() == tether_proto::State::Open {
                    driver.conn.close(Some(frame))?;
                }
            }
        }
        shared.with(cx, &shared.wakers.writer, |d, cx| d.poll_flush(cx))
    }
}
