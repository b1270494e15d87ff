//! The pub/sub hub: topics with history and resume, fan-out to WebSocket subscribers, bounded
//! per-connection queues with slow-consumer policies, and metrics.
//!
//! ```text
//!  publish (HTTP or WebSocket)              this node
//!        |                        +-------------------------------+
//!        v                        |  Registry: pattern -> queues  |
//!   Backplane  --- deliver ---->  |  Record: envelope framed once |
//!   (order, offsets, history)     +-------------------------------+
//!                                    |  push (never waits)   |
//!                                    v                       v
//!                                 Outbox (bounded)        Outbox ...
//!                                    |  session task: batches, socket backpressure
//!                                    v
//!                                 WebSocket
//! ```
//!
//! The wire protocol (`tether.pubsub.v1`) is in `docs/PROTOCOL.md` and
//! [`crate::protocol`]. The [`Backplane`] trait separates what is local to this node (who
//! subscribes, their queues) from what nodes share (order, offsets, history); the in-memory
//! backplane is the default.

mod backplane;
mod config;
mod member;
mod memory;
mod pattern;
mod presence;
mod queue;
mod record;
mod redis;
mod registry;
mod stats;
mod topic;

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

pub use backplane::{
    Backplane, BackplaneError, BoxFuture, Health, Publication, RecordSink, Replay, ReplayFrom,
    TopicState,
};
pub use config::{
    BackplaneKind, HubConfig, OutagePolicy, SlowConsumerPolicy, TopicPolicy, TopicSettings,
    WaitReplicas,
};
pub use memory::InMemoryBackplane;
pub use pattern::{MAX_TOPIC_LEN, Pattern, Permissions, validate_topic};
pub use presence::{MAX_USER_LEN, PresenceEntry, PresenceError, PresenceList};
pub use record::{Epoch, Position, Record};
pub use redis::RedisBackplane;
pub use stats::{HubStats, LATENCY_BUCKETS, LatencySnapshot};
pub use topic::HistoryPolicy;

pub(crate) use member::{Member, Resume};
pub(crate) use queue::{Queued, SlowConsumer};
pub(crate) use stats::DeliveryBatch;

use config::Policies;
use registry::{Fanout, Registry};

/// What one topic looks like from this node, for listings.
#[derive(Clone, Debug, Serialize)]
pub struct TopicInfo {
    /// The topic.
    pub topic: String,
    /// Connections on this node that receive it.
    pub subscribers: usize,
    /// Its epoch.
    pub epoch: String,
    /// The offset of its newest message (0 when none yet).
    pub offset: u64,
    /// Messages retained in its history.
    pub retained: usize,
}

/// Why a publish was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishError {
    /// The topic name is not valid; the text says why.
    InvalidTopic(String),
    /// The encoded message would exceed the per-connection queue bound (`queue_bytes`).
    TooLarge {
        /// The bound, in bytes of encoded message.
        limit: usize,
    },
    /// The backplane failed.
    Backplane(String),
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::InvalidTopic(why) => write!(f, "invalid topic: {why}"),
            PublishError::TooLarge { limit } => {
                write!(
                    f,
                    "message too large: the encoded message must fit in {limit} bytes"
                )
            }
            PublishError::Backplane(why) => write!(f, "backplane unavailable: {why}"),
        }
    }
}

impl std::error::Error for PublishError {}

/// The pub/sub hub of one node.
pub struct Hub {
    policies: Policies,
    queue_bytes: usize,
    backplane: Arc<dyn Backplane>,
    registry: RwLock<Registry>,
    stats: HubStats,
    next_connection: AtomicU64,
    /// This process's random id, the first part of its client ids.
    node_id: String,
    presence_max_clients: usize,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("queue_bytes", &self.queue_bytes)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with the in-memory backplane. `config` should have passed
    /// [`HubConfig::validate`]; topic policies whose pattern does not parse are ignored.
    pub fn new(config: HubConfig) -> Arc<Hub> {
        Hub::with_backplane(config, Arc::new(InMemoryBackplane::new()))
    }

    /// A hub over `backplane`, which it attaches to.
    pub fn with_backplane(config: HubConfig, backplane: Arc<dyn Backplane>) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            policies: Policies::new(&config),
            queue_bytes: config.queue_bytes,
            backplane,
            registry: RwLock::new(Registry::default()),
            stats: HubStats::default(),
            next_connection: AtomicU64::new(1),
            node_id: presence::node_id(),
            presence_max_clients: config.presence_max_clients,
        });
        hub.backplane.attach(Arc::new(Fanout(Arc::downgrade(&hub))));
        hub
    }

    /// Publishes to `topic`. `data` is the payload as JSON text (the HTTP API passes the
    /// request body; if it is not valid JSON it is delivered as a JSON string). `key` enables
    /// latest-per-key.
    pub async fn publish(
        &self,
        topic: &str,
        data: Bytes,
        key: Option<String>,
    ) -> Result<Position, PublishError> {
        validate_topic(topic).map_err(PublishError::InvalidTopic)?;
        let data = as_json(data);
        if record::frame_len_bound(topic, key.as_deref(), data.len()) > self.queue_bytes {
            return Err(PublishError::TooLarge {
                limit: self.queue_bytes,
            });
        }
        let publication = Publication {
            topic: topic.into(),
            key: key.map(Into::into),
            data,
            timestamp_ms: now_ms(),
            history: self.policies.for_topic(topic).history,
        };
        let position = self
            .backplane
            .publish(publication)
            .await
            .map_err(|e| PublishError::Backplane(e.0))?;
        self.stats.count_publish();
        Ok(position)
    }

    /// Which clients subscribe to `topic` (exactly, on any node): the count and at most
    /// `hub.presence_max_clients` entries. Only for topics whose policy enables presence.
    pub async fn presence(&self, topic: &str) -> Result<PresenceList, PresenceError> {
        validate_topic(topic).map_err(PresenceError::InvalidTopic)?;
        if !self.policies.for_topic(topic).presence {
            return Err(PresenceError::NotEnabled(topic.to_string()));
        }
        self.backplane
            .presence(topic, self.presence_max_clients)
            .await
            .map_err(|e| PresenceError::Backplane(e.0))
    }

    /// This process's id, the first part of the client id of each of its connections.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Every topic known, sorted by name, with this node's subscriber counts.
    pub fn topics(&self) -> Vec<TopicInfo> {
        let states = self.backplane.topics();
        let registry = read(&self.registry);
        let mut topics: Vec<TopicInfo> = states
            .into_iter()
            .map(|s| TopicInfo {
                subscribers: registry.count_matching(&s.topic),
                topic: s.topic.to_string(),
                epoch: s.position.epoch.to_string(),
                offset: s.position.offset,
                retained: s.retained,
            })
            .collect();
        topics.sort_by(|a, b| a.topic.cmp(&b.topic));
        topics
    }

    /// Runs one pub/sub connection until it ends. When `shutdown` turns true: send close 1001
    /// "going away", then drain. Returns when the connection is over.
    pub async fn serve<S>(
        self: &Arc<Self>,
        ws: tether::WebSocket<S>,
        permissions: Permissions,
        shutdown: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let member = Member::identified(self.clone(), permissions.user.as_deref());
        crate::session::run(member, ws, permissions, shutdown).await;
    }

    /// The hub's counters.
    pub fn stats(&self) -> &HubStats {
        &self.stats
    }

    /// Appends Prometheus text-format lines for the hub's metrics to `out`.
    pub fn render_metrics(&self, out: &mut String) {
        self.stats.render(out, self.backplane.topics().len());
        let up = u8::from(self.backplane.health() == Health::Ok);
        out.push_str(&format!(
            "# HELP tether_backplane_up Whether the backplane works (1) or is degraded (0).\n\
             # TYPE tether_backplane_up gauge\ntether_backplane_up {up}\n"
        ));
        let entries = self.backplane.local_presence_entries();
        out.push_str(&format!(
            "# HELP tether_presence_entries Presence entries of this node's connections.\n\
             # TYPE tether_presence_entries gauge\ntether_presence_entries {entries}\n"
        ));
        self.backplane.render_metrics(out);
    }

    /// Whether the hub works (the in-memory backplane always does).
    pub fn health(&self) -> Health {
        self.backplane.health()
    }
}

/// `data` if it is JSON text, else `data` as a JSON string.
fn as_json(data: Bytes) -> Bytes {
    if serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_ok() {
        return data;
    }
    let text = String::from_utf8_lossy(&data);
    Bytes::from(serde_json::to_string(&*text).expect("a string always serializes"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Locks, ignoring poisoning: every critical section leaves the data consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
