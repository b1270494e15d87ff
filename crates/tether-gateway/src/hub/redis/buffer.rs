//! Publishes held while Redis is unreachable (`hub.redis_outage = "buffer"`).
//!
//! A held publish is not acknowledged while it waits: its caller (an HTTP publish request, a
//! WebSocket `publish`) simply gets its answer later. When the link is up again the held
//! publishes go to Redis one at a time, in the order they arrived, each through the same
//! script as any publish, and each caller then gets the position Redis gave it. A publish
//! that would take the held bytes over `redis_buffer_bytes`, or that waits longer than
//! `redis_buffer_wait`, is refused like any publish during an outage. So nothing is
//! acknowledged that is not in Redis, and a node that dies while holding publishes loses only
//! publishes that nobody was told had succeeded.
//!
//! While publishes are held, new ones queue behind them even once the link is up, so that
//! none overtakes an older one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;

use super::link::Shared;
use crate::hub::backplane::BackplaneError;
use crate::hub::lock;

/// What a held publish costs beyond its payload, topic and key: the bookkeeping of its
/// waiting future, so that many tiny publishes are bounded too.
const OVERHEAD: usize = 256;

/// The held publishes of one node.
pub(crate) struct PublishBuffer {
    limit: usize,
    wait: Duration,
    /// Bytes of the publishes held now.
    held: Mutex<usize>,
    /// Publishes held now (waiting for their turn or for the link).
    waiting: AtomicUsize,
    /// Arrival order: tokio's mutex is fair, so turns are taken in the order they were asked.
    turn: tokio::sync::Mutex<()>,
    /// Publishes that had to wait (counted when they start waiting).
    pub(crate) held_total: AtomicU64,
    /// Held publishes refused: the buffer was full, or Redis did not come back in time.
    pub(crate) refused_total: AtomicU64,
}

/// A held publish's place: while it lives, the publish's bytes count as held and no later
/// publish takes its turn.
pub(crate) struct Held<'a> {
    _reservation: Reservation<'a>,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

/// Bytes counted as held, given back when dropped: also when the caller gives up waiting
/// (a client that disconnects drops its publish's future).
struct Reservation<'a> {
    buffer: &'a PublishBuffer,
    bytes: usize,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        *lock(&self.buffer.held) -= self.bytes;
        self.buffer.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PublishBuffer {
    /// A buffer of at most `limit` bytes, each publish waiting at most `wait`.
    pub(crate) fn new(limit: usize, wait: Duration) -> PublishBuffer {
        PublishBuffer {
            limit,
            wait,
            held: Mutex::new(0),
            waiting: AtomicUsize::new(0),
            turn: tokio::sync::Mutex::new(()),
            held_total: AtomicU64::new(0),
            refused_total: AtomicU64::new(0),
        }
    }

    /// Whether publishes are held now: a new one must queue behind them.
    pub(crate) fn busy(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Bytes held now.
    pub(crate) fn held_bytes(&self) -> usize {
        *lock(&self.held)
    }

    /// Holds a publish of `size` payload bytes until it is its turn and the link is up;
    /// returns its place (keep it until the publish is done) and the connection to send it
    /// on. Refused when the buffer is full or the wait runs out.
    pub(crate) async fn hold<'a>(
        &'a self,
        size: usize,
        shared: &Shared,
    ) -> Result<(Held<'a>, MultiplexedConnection), BackplaneError> {
        let bytes = size.saturating_add(OVERHEAD);
        {
            let mut held = lock(&self.held);
            if held.saturating_add(bytes) > self.limit {
                drop(held);
                self.refused_total.fetch_add(1, Ordering::Relaxed);
                return Err(BackplaneError(format!(
                    "redis is unavailable and this node already holds {} of publishes for it \
                     (hub.redis_buffer_bytes = {})",
                    self.held_bytes(),
                    self.limit
                )));
            }
            *held += bytes;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let reservation = Reservation {
            buffer: self,
            bytes,
        };
        self.held_total.fetch_add(1, Ordering::Relaxed);
        let waited = tokio::time::timeout(self.wait, async {
            let turn = self.turn.lock().await;
            let conn = shared.connected().await;
            (turn, conn)
        })
        .await;
        match waited {
            Ok((turn, conn)) => Ok((
                Held {
                    _reservation: reservation,
                    _turn: turn,
                },
                conn,
            )),
            Err(_) => {
                drop(reservation);
                self.refused_total.fetch_add(1, Ordering::Relaxed);
                Err(BackplaneError(format!(
                    "redis is unavailable: the publish was held for {:?} \
                     (hub.redis_buffer_wait) and redis did not come back",
                    self.wait
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::redis::link::LinkSettings;

    fn shared() -> Shared {
        // A URL nobody listens on: the link is never up in these tests unless set up.
        let client = ::redis::Client::open("redis://127.0.0.1:1/").unwrap();
        Shared::new(
            crate::hub::redis::link::Source::Direct(client),
            LinkSettings {
                timeout: Duration::from_millis(100),
                ping_interval: Duration::from_millis(100),
                max_backoff: Duration::from_millis(100),
                unnotified_records: false,
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_publish_is_refused_when_the_wait_runs_out() {
        let shared = shared();
        let buffer = PublishBuffer::new(1 << 20, Duration::from_millis(500));
        let err = buffer.hold(10, &shared).await.err().unwrap();
        assert!(err.0.contains("hub.redis_buffer_wait"), "{err}");
        assert_eq!(buffer.held_bytes(), 0);
        assert!(!buffer.busy());
        assert_eq!(buffer.refused_total.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_buffer_refuses_what_would_go_over_its_bytes() {
        let shared = shared();
        let buffer = PublishBuffer::new(2 * (100 + OVERHEAD), Duration::from_secs(60));
        let mut first = Box::pin(buffer.hold(100, &shared));
        let mut second = Box::pin(buffer.hold(100, &shared));
        let third = buffer.hold(1, &shared);
        // The first two are held (pending); the third does not fit.
        assert!(futures_util::poll!(first.as_mut()).is_pending());
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        let err = third.await.err().unwrap();
        assert!(err.0.contains("hub.redis_buffer_bytes"), "{err}");
        assert_eq!(buffer.held_bytes(), 2 * (100 + OVERHEAD));
        assert!(buffer.busy());
        // A caller that gives up (its future dropped) gives its bytes back.
        drop(first);
        assert_eq!(buffer.held_bytes(), 100 + OVERHEAD);
        drop(second);
        assert_eq!(buffer.held_bytes(), 0);
        assert!(!buffer.busy());
    }
}
