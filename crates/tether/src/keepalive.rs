//! Optional keepalive pings and idle timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

/// What a keepalive timer asks for.
pub(crate) enum Due {
    /// Send a ping with this payload.
    Ping(Bytes),
    /// Nothing arrived for the whole idle timeout: give up on the peer.
    IdleTimeout,
}

/// Sends a ping after `interval` without incoming data; fails after `timeout` without any.
pub(crate) struct Keepalive {
    interval: Duration,
    timeout: Duration,
    last_receive: Instant,
    sleep: Pin<Box<Sleep>>,
    pinged: bool,
}

impl Keepalive {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        let now = Instant::now();
        Keepalive {
            interval,
            timeout,
            last_receive: now,
            sleep: Box::pin(tokio::time::sleep_until(now + interval)),
            pinged: false,
        }
    }

    /// Anything from the peer (bytes of a message, ping or pong) shows it is alive.
    pub(crate) fn on_receive(&mut self) {
        self.last_receive = Instant::now();
        self.pinged = false;
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Due> {
        loop {
            let ping_at = self.last_receive + self.interval;
            let give_up_at = self.last_receive + self.timeout;
            let next = if self.pinged {
                give_up_at
            } else {
                ping_at.min(give_up_at)
            };
            if self.sleep.deadline() != next {
                self.sleep.as_mut().reset(next);
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let now = Instant::now();
            if now >= give_up_at {
                return Poll::Ready(Due::IdleTimeout);
            }
            if !self.pinged && now >= ping_at {
                self.pinged = true;
                return Poll::Ready(Due::Ping(Bytes::from_static(b"tether keepalive")));
            }
        }
    }
}
