//! The Redis backplane: several gateway nodes act as one hub.
//!
//! ```text
//!  node A: publish ──EVALSHA publish──> Redis: meta (epoch, last) + stream per topic
//!                                          |  PUBLISH tether:records (same script)
//!            +-----------------------------+-----------------------------+
//!            v                             v                             v
//!      node A link task             node B link task              node C link task
//!      (one subscription)           cursors, gap fill             -> local subscribers
//! ```
//!
//! Order and offsets are defined in Redis by one script per publish (see
//! [`scripts`](self::scripts) and [`wire`](self::wire)), so every node delivers the same
//! records with the same epoch and offsets, and a client resumes on any node. Each node holds
//! one pub/sub subscription (not one per client), and fills from the stream whatever the
//! subscription missed. While Redis is unreachable, publishes are refused (HTTP 503, the
//! WebSocket `unavailable` error), or with `hub.redis_outage = "buffer"` held unacknowledged
//! until Redis is back (see [`buffer`](self::buffer)); a publish is never acknowledged
//! without being in the stream. Local connections go on; `/healthz` says `degraded`.
//!
//! Presence (topics with `presence = true`) is a sorted set per topic with an expiry per
//! entry that every node refreshes for its own clients; see [`presence`](self::presence).
//!
//! Standalone Redis (`redis://` and `rediss://` URLs, `redis+unix://`), or the master that
//! Redis Sentinel names (`hub.redis_sentinels`, followed across failovers; with
//! `hub.redis_wait_replicas = "all"` a publish is acknowledged only once every replica has
//! it, so a failover loses none). Cluster is not supported: the publish script also touches the
//! `tether:topics` set, in another slot.

mod buffer;
mod link;
mod presence;
mod scripts;
mod wire;

use std::sync::Arc;

use ::redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use ::redis::{Client, ConnectionAddr, IntoConnectionInfo, TlsMode};

use self::buffer::PublishBuffer;
use self::link::{LinkSettings, Shared, Source};
use self::wire::{TOPICS_KEY, TopicKeys};
use super::backplane::{
    Backplane, BackplaneError, BoxFuture, Health, Publication, RecordSink, Replay, ReplayFrom,
    TopicState,
};
use super::config::{BackplaneKind, HubConfig, OutagePolicy, WaitReplicas};
use super::pattern::Pattern;
use super::presence::{PresenceEntry, PresenceList};
use super::record::{Epoch, Position};
use super::topic::HistoryPolicy;
use super::{Hub, lock};

/// A [`Backplane`] on Redis streams and pub/sub.
pub struct RedisBackplane {
    shared: Arc<Shared>,
    topics: std::sync::Mutex<std::collections::HashMap<Arc<str>, TopicState>>,
    /// With `hub.redis_outage = "buffer"`: publishes held while Redis is unreachable.
    buffer: Option<PublishBuffer>,
    /// Replicas that must confirm a publish before it is acknowledged (`WAIT`).
    wait_replicas: WaitReplicas,
    presence: Arc<presence::Presence>,
    link: tokio::task::JoinHandle<()>,
    refresh: tokio::task::JoinHandle<()>,
}

/// Where `config` says Redis is: one URL, or the master the sentinels name. Errors name the
/// key.
fn source(config: &HubConfig) -> Result<Source, (String, String)> {
    let key = |k: &str| k.to_string();
    if config.redis_sentinels.is_empty() {
        let url = config.redis_url.as_deref().ok_or_else(|| {
            (
                key("hub.redis_url"),
                "required when hub.backplane = \"redis\"".to_string(),
            )
        })?;
        let client = Client::open(url).map_err(|e| (key("hub.redis_url"), e.to_string()))?;
        return Ok(Source::Direct(client));
    }
    let service = config.redis_master.clone().ok_or_else(|| {
        (
            key("hub.redis_master"),
            "required with hub.redis_sentinels".into(),
        )
    })?;
    let sentinels = Sentinel::build(config.redis_sentinels.clone())
        .map_err(|e| (key("hub.redis_sentinels"), e.to_string()))?;
    let mut node = SentinelNodeConnectionInfo::default();
    if let Some(url) = &config.redis_url {
        let info = url
            .as_str()
            .into_connection_info()
            .map_err(|e| (key("hub.redis_url"), e.to_string()))?;
        node = node.set_redis_connection_info(info.redis_settings().clone());
        if let ConnectionAddr::TcpTls { insecure, .. } = info.addr() {
            node = node.set_tls_mode(if *insecure {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            });
        }
    }
    Ok(Source::Sentinel {
        sentinels: tokio::sync::Mutex::new(sentinels),
        service,
        node,
    })
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("health", &self.shared.health())
            .finish_non_exhaustive()
    }
}

impl RedisBackplane {
    /// A backplane on the Redis at `config.redis_url`; its link task starts now (so this must
    /// run within a tokio runtime) and connects in the background: until it does, the
    /// backplane is degraded. Errors name the config key.
    pub fn new(config: &HubConfig) -> Result<RedisBackplane, (String, String)> {
        let source = source(config)?;
        let settings = LinkSettings {
            timeout: config.redis_timeout,
            ping_interval: config.redis_ping_interval,
            max_backoff: config.redis_max_backoff,
            unnotified_records: config.redis_wait_replicas != WaitReplicas::Count(0),
        };
        let shared = Arc::new(Shared::new(source, settings));
        let link = tokio::spawn(link::run(shared.clone()));
        let buffer = (config.redis_outage == OutagePolicy::Buffer)
            .then(|| PublishBuffer::new(config.redis_buffer_bytes, config.redis_buffer_wait));
        let presence = Arc::new(presence::Presence::new(config.presence_ttl));
        let refresh = tokio::spawn(presence::run(shared.clone(), presence.clone()));
        Ok(RedisBackplane {
            shared,
            topics: Default::default(),
            buffer,
            wait_replicas: config.redis_wait_replicas,
            presence,
            link,
            refresh,
        })
    }

    /// How many replicas a publish must reach before its ack (`None`: no wait). With
    /// `"all"`, every replica the master listed at the link's last `ROLE`, and at least one.
    fn replicas_to_wait_for(&self) -> Option<u32> {
        match self.wait_replicas {
            WaitReplicas::Count(0) => None,
            WaitReplicas::Count(n) => Some(n),
            WaitReplicas::All => Some(self.shared.replicas().max(1)),
        }
    }

    /// Waits until `wanted` replicas have every write of `conn` so far (Redis `WAIT`),
    /// within half of `redis_timeout` (the connection's own limit).
    async fn replicated(
        &self,
        conn: &mut ::redis::aio::MultiplexedConnection,
        wanted: u32,
    ) -> Result<(), BackplaneError> {
        // Half, so the WAIT's own answer comes well within the connection's response limit.
        let limit = self.shared.settings.timeout / 2;
        let millis = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX).max(1);
        let confirmed: i64 = ::redis::cmd("WAIT")
            .arg(wanted)
            .arg(millis)
            .query_async(conn)
            .await
            .map_err(|e| self.shared.failed("replication wait", &e))?;
        if confirmed < i64::from(wanted) {
            // A replica may have gone: the link's next ROLE check counts again.
            self.shared.recheck();
            return Err(BackplaneError(format!(
                "redis stored the publish but only {confirmed} of {wanted} replicas confirmed \
                 it within {limit:?} (hub.redis_wait_replicas); it may still be delivered"
            )));
        }
        Ok(())
    }

    fn remember(&self, topic: &Arc<str>, position: Position, retained: usize) {
        let mut topics = lock(&self.topics);
        let state = topics.entry(topic.clone()).or_insert_with(|| TopicState {
            topic: topic.clone(),
            position,
            retained,
        });
        if state.position.epoch != position.epoch || state.position.offset <= position.offset {
            state.position = position;
            state.retained = retained;
        }
    }
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        self.link.abort();
        self.refresh.abort();
    }
}

impl Hub {
    /// The hub `config` asks for: on the in-memory backplane, or on Redis
    /// (`hub.backplane = "redis"`). Must run within a tokio runtime; the error names the key.
    pub fn from_config(config: HubConfig) -> Result<Arc<Hub>, (String, String)> {
        match config.backplane {
            BackplaneKind::Memory => Ok(Hub::new(config)),
            BackplaneKind::Redis => {
                let backplane = Arc::new(RedisBackplane::new(&config)?);
                Ok(Hub::with_backplane(config, backplane))
            }
        }
    }
}

fn flag(on: bool) -> u8 {
    u8::from(on)
}

fn age_ms(history: &HistoryPolicy) -> u64 {
    u64::try_from(history.age.as_millis()).unwrap_or(u64::MAX)
}

impl Backplane for RedisBackplane {
    fn attach(&self, sink: Arc<dyn RecordSink>) {
        let _ = self.shared.sink.set(sink);
    }

    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<Position, BackplaneError>> {
        Box::pin(async move {
            let refused = |e: BackplaneError| {
                lock(&self.shared.stats).refused_publishes += 1;
                e
            };
            // While publishes are held, a new one queues behind them (see `buffer`).
            let (mut conn, _held) = match (&self.buffer, self.shared.connection()) {
                (Some(buffer), Ok(conn)) if !buffer.busy() => (conn, None),
                (None, Ok(conn)) => (conn, None),
                (None, Err(e)) => return Err(refused(e)),
                (Some(buffer), _) => {
                    let size = publication.data.len()
                        + publication.topic.len()
                        + publication.key.as_ref().map_or(0, |k| k.len());
                    let (held, conn) = buffer.hold(size, &self.shared).await.map_err(refused)?;
                    (conn, Some(held))
                }
            };
            let keys = TopicKeys::new(&publication.topic);
            let history = publication.history;
            let wait = self.replicas_to_wait_for();
            let reply = scripts::PUBLISH_SCRIPT
                .key(&keys.meta)
                .key(&keys.log)
                .key(&keys.keys)
                .key(TOPICS_KEY)
                .arg(Epoch::random().to_string())
                .arg(&*publication.topic)
                .arg(history.count)
                .arg(age_ms(&history))
                .arg(flag(history.latest_per_key))
                .arg(flag(publication.key.is_some()))
                .arg(publication.key.as_deref().unwrap_or(""))
                .arg(publication.timestamp_ms)
                .arg(&publication.data[..])
                // Waiting for replicas: the notification goes out only once they have the
                // record, so no node delivers one that a failover could lose.
                .arg(if wait.is_some() { "" } else { wire::CHANNEL })
                .invoke_async::<::redis::Value>(&mut conn)
                .await
                .map_err(|e| refused(self.shared.failed("publish", &e)))?;
            let published = wire::parse_publish_reply(&reply).map_err(BackplaneError)?;
            let position = published.position;
            self.remember(&publication.topic, position, published.retained);
            if let Some(notification) = published.notification {
                // Not notified, it still reaches the nodes with the next record's gap fill.
                if let Some(wanted) = wait {
                    self.replicated(&mut conn, wanted).await.map_err(refused)?;
                }
                ::redis::cmd("PUBLISH")
                    .arg(wire::CHANNEL)
                    .arg(notification)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| refused(self.shared.failed("notification", &e)))?;
            }
            Ok(position)
        })
    }

    fn replay<'a>(
        &'a self,
        topic: &'a str,
        from: ReplayFrom,
        history: HistoryPolicy,
    ) -> BoxFuture<'a, Result<Replay, BackplaneError>> {
        Box::pin(async move {
            let mut conn = self.shared.connection()?;
            let keys = TopicKeys::new(topic);
            let (client_epoch, after) = wire::read_arguments(from);
            let reply = scripts::READ_SCRIPT
                .key(&keys.meta)
                .key(&keys.log)
                .key(&keys.keys)
                .arg(Epoch::random().to_string())
                .arg(client_epoch)
                .arg(after)
                .arg(age_ms(&history))
                .arg(flag(history.latest_per_key))
                .arg("+")
                .invoke_async::<::redis::Value>(&mut conn)
                .await
                .map_err(|e| self.shared.failed("replay", &e))?;
            let topic: Arc<str> = topic.into();
            let state = wire::parse_read_reply(&topic, reply).map_err(BackplaneError)?;
            let position = Position {
                epoch: state.epoch,
                offset: state.last,
            };
            if state.last > 0 {
                self.remember(&topic, position, state.retained);
            }
            Ok(Replay {
                position,
                recovered: wire::recovered(from, &state),
                records: state.records,
            })
        })
    }

    fn topics_matching<'a>(
        &'a self,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<Vec<Arc<str>>, BackplaneError>> {
        Box::pin(async move {
            let mut conn = self.shared.connection()?;
            let all: Vec<String> = ::redis::cmd("SMEMBERS")
                .arg(TOPICS_KEY)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.shared.failed("topic listing", &e))?;
            Ok(all
                .into_iter()
                .filter(|t| pattern.matches(t))
                .map(Arc::from)
                .collect())
        })
    }

    fn watch<'a>(&'a self, pattern: &'a Pattern) -> BoxFuture<'a, Result<(), BackplaneError>> {
        Box::pin(async move {
            // Records appended while the subscription is down would reach this node only
            // through a cursor it does not have yet: refuse rather than miss them.
            if self.shared.watch(pattern) {
                return Ok(());
            }
            Err(self
                .shared
                .connection()
                .err()
                .unwrap_or_else(|| BackplaneError("redis is unavailable (reconnecting)".into())))
        })
    }

    fn unwatch(&self, pattern: &Pattern) {
        lock(&self.shared.watched).remove(pattern);
    }

    fn topics(&self) -> Vec<TopicState> {
        lock(&self.topics).values().cloned().collect()
    }

    fn health(&self) -> Health {
        self.shared.health()
    }

    fn join_presence<'a>(
        &'a self,
        topic: &'a str,
        entry: &'a PresenceEntry,
    ) -> BoxFuture<'a, Result<(), BackplaneError>> {
        Box::pin(self.presence.join(&self.shared, topic, entry))
    }

    fn leave_presence(&self, topic: &str, entry: &PresenceEntry) {
        self.presence.leave(&self.shared, topic, entry);
    }

    fn presence<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<PresenceList, BackplaneError>> {
        Box::pin(self.presence.query(&self.shared, topic, limit))
    }

    fn local_presence_entries(&self) -> usize {
        lock(&self.presence.local).len()
    }

    fn render_metrics(&self, out: &mut String) {
        let stats = lock(&self.shared.stats);
        let degraded = stats.degraded_total
            + stats
                .degraded_since
                .map_or(std::time::Duration::ZERO, |s| s.elapsed());
        let lines = [
            (
                "tether_backplane_reconnects_total",
                "counter",
                "Reconnection attempts to Redis.",
                stats.reconnects.to_string(),
            ),
            (
                "tether_backplane_refused_publishes_total",
                "counter",
                "Publishes refused because Redis failed or was unreachable.",
                stats.refused_publishes.to_string(),
            ),
            (
                "tether_backplane_caught_up_records_total",
                "counter",
                "Records read from the stream to fill a gap in this node's subscription.",
                stats.caught_up_records.to_string(),
            ),
            (
                "tether_backplane_degraded_seconds_total",
                "counter",
                "Time the Redis link was down.",
                format!("{:.3}", degraded.as_secs_f64()),
            ),
        ];
        drop(stats);
        let mut held = Vec::new();
        if let Some(buffer) = &self.buffer {
            use std::sync::atomic::Ordering::Relaxed;
            held = vec![
                (
                    "tether_backplane_held_publishes_total",
                    "counter",
                    "Publishes held while Redis was unreachable (hub.redis_outage = buffer).",
                    buffer.held_total.load(Relaxed).to_string(),
                ),
                (
                    "tether_backplane_held_refused_total",
                    "counter",
                    "Held publishes refused: the buffer was full or Redis did not come back in time.",
                    buffer.refused_total.load(Relaxed).to_string(),
                ),
                (
                    "tether_backplane_held_bytes",
                    "gauge",
                    "Bytes of the publishes held now.",
                    buffer.held_bytes().to_string(),
                ),
            ];
        }
        for (name, kind, help, value) in lines.into_iter().chain(held) {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
    }
}
