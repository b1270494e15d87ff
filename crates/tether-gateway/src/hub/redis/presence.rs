//! Presence on Redis: a sorted set per topic (`tether:{T}:presence`), whose members are the
//! clients' entries and whose scores are their expiry by Redis's clock (the scripts call
//! `TIME`, so the nodes' clocks do not matter).
//!
//! ```text
//!   join ──> local entries ──ZADD now+ttl──> Redis          query ──> drop expired, ZCARD, ZRANGE
//!              |      ^
//!              |      +── leave (ZREM)
//!              +── every ttl/3, and when the link comes back: all of them, one pipeline
//! ```
//!
//! Each node keeps its own entries (bounded by its connections and their subscriptions) and
//! refreshes all of them every third of the TTL, so an entry outlives its node by at most
//! the TTL: a node killed without leaving loses its clients within `hub.presence_ttl`.
//! While Redis is unreachable the entries stay local; once the link is back (even to a Redis
//! that lost everything), one refresh adds them all again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{Value, pipe};

use super::link::Shared;
use super::scripts::{PRESENCE_READ_SCRIPT, PRESENCE_REFRESH_SCRIPT};
use super::wire::{self, TopicKeys};
use crate::hub::backplane::BackplaneError;
use crate::hub::lock;
use crate::hub::presence::{LocalPresence, PresenceEntry, PresenceList};

/// The most members one refresh script call adds, so no call holds Redis for long; a
/// refresh sends as many calls as needed, in one pipeline.
const REFRESH_BATCH: usize = 256;

/// This node's presence: its entries and their TTL.
pub(crate) struct Presence {
    pub(crate) local: Mutex<LocalPresence>,
    pub(crate) ttl: Duration,
    /// Held while a join, a refresh or a leave writes to Redis, so that a refresh in flight
    /// cannot add back an entry whose leave it raced with: the leave waits for it.
    writes: tokio::sync::Mutex<()>,
}

impl Presence {
    pub(crate) fn new(ttl: Duration) -> Presence {
        Presence {
            local: Mutex::new(LocalPresence::default()),
            ttl,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    /// Keeps `entry` and adds it to Redis now.
    pub(crate) async fn join(
        &self,
        shared: &Shared,
        topic: &str,
        entry: &PresenceEntry,
    ) -> Result<(), BackplaneError> {
        lock(&self.local).join(topic, entry);
        let mut conn = shared.connection()?;
        let _writing = self.writes.lock().await;
        PRESENCE_REFRESH_SCRIPT
            .key(TopicKeys::new(topic).presence)
            .arg(self.ttl_ms())
            .arg(entry.to_member())
            .invoke_async::<u64>(&mut conn)
            .await
            .map_err(|e| shared.failed("presence join", &e))?;
        Ok(())
    }

    /// Forgets `entry` and removes it from Redis in the background (if that fails, it
    /// expires within the TTL, as nothing refreshes it any more). If the entry joins again
    /// before the removal runs, it stays.
    pub(crate) fn leave(self: &Arc<Self>, shared: &Shared, topic: &str, entry: &PresenceEntry) {
        if !lock(&self.local).leave(topic, entry) {
            return;
        }
        let (Ok(mut conn), Ok(runtime)) =
            (shared.connection(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let key = TopicKeys::new(topic).presence;
        let (presence, topic, entry) = (self.clone(), topic.to_string(), entry.clone());
        runtime.spawn(async move {
            let _writing = presence.writes.lock().await;
            if lock(&presence.local).contains(&topic, &entry) {
                return;
            }
            let removed = ::redis::cmd("ZREM")
                .arg(key)
                .arg(entry.to_member())
                .query_async::<u64>(&mut conn)
                .await;
            if let Err(e) = removed {
                tracing::debug!("presence leave failed (the entry will expire): {e}");
            }
        });
    }

    /// The presence of `topic`, from Redis: the count and at most `limit` entries.
    pub(crate) async fn query(
        &self,
        shared: &Shared,
        topic: &str,
        limit: usize,
    ) -> Result<PresenceList, BackplaneError> {
        let mut conn = shared.connection()?;
        let reply = PRESENCE_READ_SCRIPT
            .key(TopicKeys::new(topic).presence)
            .arg(limit)
            .invoke_async::<Value>(&mut conn)
            .await
            .map_err(|e| shared.failed("presence query", &e))?;
        wire::parse_presence_reply(&reply).map_err(BackplaneError)
    }

    /// Refreshes every local entry in one pipeline.
    async fn refresh(&self, conn: &mut MultiplexedConnection) -> ::redis::RedisResult<()> {
        let _writing = self.writes.lock().await;
        let snapshot = lock(&self.local).snapshot();
        if snapshot.is_empty() {
            return Ok(());
        }
        let ttl_ms = self.ttl_ms();
        let mut pipeline = pipe();
        // A pipeline does not load scripts by itself (and a restarted Redis has none).
        pipeline.load_script(&PRESENCE_REFRESH_SCRIPT).ignore();
        for (topic, entries) in &snapshot {
            let key = TopicKeys::new(topic).presence;
            for batch in entries.chunks(REFRESH_BATCH) {
                let mut invocation = PRESENCE_REFRESH_SCRIPT.prepare_invoke();
                invocation.key(&key).arg(ttl_ms);
                for entry in batch {
                    invocation.arg(entry.to_member());
                }
                pipeline.invoke_script(&invocation).ignore();
            }
        }
        pipeline.query_async::<()>(conn).await
    }
}

/// Refreshes this node's entries every third of the TTL and whenever the link comes up,
/// until the backplane is dropped (the task is aborted then).
pub(crate) async fn run(shared: Arc<Shared>, presence: Arc<Presence>) {
    let mut tick = tokio::time::interval(presence.ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.came_up.notified() => {}
        }
        let Ok(mut conn) = shared.connection() else {
            continue;
        };
        if let Err(e) = presence.refresh(&mut conn).await {
            // The next tick or the next reconnect tries again.
            let _ = shared.failed("presence refresh", &e);
            tracing::debug!("presence refresh failed: {e}");
        }
    }
}
