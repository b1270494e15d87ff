//! The node's link to Redis: one task owns the command connection and the one pub/sub
//! subscription of this node, pings Redis, reconnects with backoff, and delivers every
//! notified record to the hub in offset order, filling gaps from the stream.
//!
//! ```text
//!   connect ──> subscribe CHANNEL ──> catch up every topic from its cursor ──> up
//!      ^                                                                    |
//!      |  backoff (doubling, capped)      ping fails / subscription ends     |
//!      +------------------------- down (publishes refused) <-----------------+
//! ```
//!
//! Each watched topic has a cursor: the position of the last record delivered. A notified
//! record at or below it is a duplicate and is dropped; one past the next offset means
//! records were missed (the subscription was down), and they are read from the stream
//! first. After a reconnect every cursor is caught up the same way, so subscribers get what
//! was published while this node's subscription was down, with no gap and no duplicate.
//!
//! A topic without a cursor (no record delivered yet since it was watched) needs no catch-up
//! if its pattern was watched while the current connection was up: every record since then
//! was notified, and the ones before are in the subscribers' replays. If the pattern was
//! watched before a reconnect, or records can go unnotified (`redis_wait_replicas`: the
//! node notifies after the `WAIT`, and a publish refused there stays in the stream), its
//! first record is caught up from the stream's start (the subscribers' queues drop what they
//! already have).
//!
//! With Redis Sentinel the link asks the sentinels for the master at every connect, and its
//! health check is `ROLE` rather than `PING`: a master demoted to replica (a failover) ends
//! the connected period like a silent one, and the next connect finds the new master.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use ::redis::{AsyncConnectionConfig, Client};
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::wire::{self, CHANNEL, TopicKeys};
use crate::hub::backplane::{BackplaneError, Health, RecordSink};
use crate::hub::lock;
use crate::hub::pattern::Pattern;
use crate::hub::record::{Epoch, Position, Record};

/// The first wait before a reconnect; it doubles up to `max_backoff`.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// How the link talks to Redis.
#[derive(Clone, Debug)]
pub(crate) struct LinkSettings {
    pub(crate) timeout: Duration,
    pub(crate) ping_interval: Duration,
    pub(crate) max_backoff: Duration,
    /// A record can be in a stream without a notification: with `redis_wait_replicas` the
    /// node notifies only after the `WAIT`, so a publish refused there (or a node that dies
    /// in between) leaves one that only a gap fill delivers.
    pub(crate) unnotified_records: bool,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub(crate) struct LinkStats {
    pub(crate) reconnects: u64,
    pub(crate) refused_publishes: u64,
    pub(crate) caught_up_records: u64,
    pub(crate) degraded_total: Duration,
    pub(crate) degraded_since: Option<Instant>,
}

/// Where the link finds Redis.
pub(crate) enum Source {
    /// One Redis at a fixed address.
    Direct(Client),
    /// The master named `service`, wherever the sentinels say it is now.
    Sentinel {
        /// The sentinels (only the link task uses them, one lookup at a time).
        sentinels: tokio::sync::Mutex<Sentinel>,
        /// The master's name.
        service: String,
        /// Credentials, database and TLS of the connection to the master.
        node: SentinelNodeConnectionInfo,
    },
}

impl Source {
    /// A client for the Redis to use now: the sentinels are asked every time.
    async fn client(&self, limit: Duration) -> Result<Client, String> {
        match self {
            Source::Direct(client) => Ok(client.clone()),
            Source::Sentinel {
                sentinels,
                service,
                node,
            } => {
                let mut sentinels = sentinels.lock().await;
                timed(
                    limit,
                    "sentinel master lookup",
                    sentinels.async_master_for(service, Some(node)),
                )
                .await
            }
        }
    }
}

/// What the backplane's methods and the link task share.
pub(crate) struct Shared {
    pub(crate) source: Source,
    pub(crate) settings: LinkSettings,
    /// The command connection while the link is up.
    conn: Mutex<Option<MultiplexedConnection>>,
    health: Mutex<Health>,
    pub(crate) sink: OnceLock<Arc<dyn RecordSink>>,
    /// The watched patterns, each with the number of the connected period it was watched in.
    pub(crate) watched: Mutex<HashMap<Pattern, u64>>,
    /// The number of the current connected period (1 for the first).
    period: AtomicU64,
    /// The replicas the master listed at the last `ROLE` (for `redis_wait_replicas = "all"`).
    replicas: AtomicU32,
    pub(crate) stats: Mutex<LinkStats>,
    /// A command failed: the link checks Redis now rather than at the next ping.
    trouble: Notify,
    /// The link came up: held publishes may go.
    link_up: Notify,
    /// The link came up: presence adds this node's entries again.
    pub(crate) came_up: Notify,
}

impl Shared {
    pub(crate) fn new(source: Source, settings: LinkSettings) -> Shared {
        Shared {
            source,
            settings,
            conn: Mutex::new(None),
            health: Mutex::new(Health::Degraded("connecting to redis".into())),
            sink: OnceLock::new(),
            watched: Mutex::new(HashMap::new()),
            period: AtomicU64::new(0),
            replicas: AtomicU32::new(0),
            stats: Mutex::new(LinkStats {
                degraded_since: Some(Instant::now()),
                ..LinkStats::default()
            }),
            trouble: Notify::new(),
            link_up: Notify::new(),
            came_up: Notify::new(),
        }
    }

    pub(crate) fn health(&self) -> Health {
        lock(&self.health).clone()
    }

    /// The command connection, or why there is none.
    pub(crate) fn connection(&self) -> Result<MultiplexedConnection, BackplaneError> {
        if let Some(conn) = lock(&self.conn).clone() {
            return Ok(conn);
        }
        let reason = match self.health() {
            Health::Degraded(reason) => reason,
            Health::Ok => "not connected".into(),
        };
        Err(BackplaneError(format!("redis is unavailable ({reason})")))
    }

    /// The command connection, once the link is up (at once if it is).
    pub(crate) async fn connected(&self) -> MultiplexedConnection {
        loop {
            let notified = self.link_up.notified();
            tokio::pin!(notified);
            // Registered before the check, so a link coming up in between still wakes us.
            notified.as_mut().enable();
            if let Some(conn) = lock(&self.conn).clone() {
                return conn;
            }
            notified.await;
        }
    }

    /// The replicas the master listed at the link's last health check.
    pub(crate) fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Acquire)
    }

    /// Asks the link to check Redis now rather than at the next ping.
    pub(crate) fn recheck(&self) {
        self.trouble.notify_one();
    }

    /// A command failed with `error`: count it, wake the link, and say why.
    pub(crate) fn failed(&self, what: &str, error: &::redis::RedisError) -> BackplaneError {
        self.recheck();
        BackplaneError(format!("redis {what} failed: {error}"))
    }

    /// Watches `pattern` from now on; `false` when the link is down (records appended now
    /// might never reach this node).
    pub(crate) fn watch(&self, pattern: &Pattern) -> bool {
        let conn = lock(&self.conn);
        if conn.is_none() {
            return false;
        }
        let period = self.period.load(Ordering::Acquire);
        lock(&self.watched).entry(pattern.clone()).or_insert(period);
        true
    }

    fn set_up(&self, conn: MultiplexedConnection) {
        let mut slot = lock(&self.conn);
        self.period.fetch_add(1, Ordering::AcqRel);
        *slot = Some(conn);
        drop(slot);
        *lock(&self.health) = Health::Ok;
        {
            let mut stats = lock(&self.stats);
            if let Some(since) = stats.degraded_since.take() {
                stats.degraded_total += since.elapsed();
            }
        }
        self.link_up.notify_waiters();
        self.came_up.notify_one();
    }

    fn set_down(&self, reason: String) {
        *lock(&self.conn) = None;
        *lock(&self.health) = Health::Degraded(reason);
        let mut stats = lock(&self.stats);
        stats.degraded_since.get_or_insert_with(Instant::now);
    }

    fn is_watched(&self, topic: &str) -> bool {
        lock(&self.watched).keys().any(|p| p.matches(topic))
    }

    /// Whether a pattern that matches `topic` was watched before the current connected
    /// period began.
    fn watched_before_reconnect(&self, topic: &str) -> bool {
        let current = self.period.load(Ordering::Acquire);
        lock(&self.watched)
            .iter()
            .any(|(p, &period)| period < current && p.matches(topic))
    }
}

/// Runs the link until the backplane is dropped (the task is aborted then).
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut cursors: HashMap<Arc<str>, Position> = HashMap::new();
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    loop {
        let Err(reason) = session(&shared, &mut cursors, &mut backoff).await;
        // Once when the link goes down (or cannot come up at start), then quietly.
        if first || shared.health() == Health::Ok {
            tracing::warn!("redis backplane down: {reason}; retrying with backoff");
        } else {
            tracing::debug!("redis backplane still down: {reason}; retrying in {backoff:?}");
        }
        first = false;
        shared.set_down(reason);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(shared.settings.max_backoff);
        lock(&shared.stats).reconnects += 1;
    }
}

async fn timed<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = ::redis::RedisResult<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

/// One connected period; returns why it ended.
async fn session(
    shared: &Shared,
    cursors: &mut HashMap<Arc<str>, Position>,
    backoff: &mut Duration,
) -> Result<std::convert::Infallible, String> {
    let timeout = shared.settings.timeout;
    let client = shared.source.client(timeout).await?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn = timed(
        timeout,
        "connect",
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await?;
    // A replica would refuse every publish: wait for a master (a failover in progress).
    check(shared, &mut conn).await?;
    let mut pubsub = timed(timeout, "connect (subscription)", client.get_async_pubsub()).await?;
    timed(timeout, "subscribe", pubsub.subscribe(CHANNEL)).await?;
    let mut messages = pubsub.into_on_message();
    // Records published while the subscription was down.
    let topics: Vec<(Arc<str>, Position)> = cursors.iter().map(|(t, p)| (t.clone(), *p)).collect();
    for (topic, cursor) in topics {
        if shared.is_watched(&topic) {
            catch_up(shared, &mut conn, cursors, &topic, cursor, None).await?;
        } else {
            cursors.remove(&topic);
        }
    }
    shared.set_up(conn.clone());
    tracing::info!("redis backplane up");
    *backoff = MIN_BACKOFF;
    let mut ping = tokio::time::interval(shared.settings.ping_interval);
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else {
                    return Err("the subscription connection closed".into());
                };
                match wire::parse_notification(message.get_payload_bytes()) {
                    Ok(record) => deliver(shared, &mut conn, cursors, record).await?,
                    Err(e) => tracing::warn!("ignoring a bad notification on {CHANNEL}: {e}"),
                }
            }
            _ = ping.tick() => check(shared, &mut conn).await?,
            () = shared.trouble.notified() => check(shared, &mut conn).await?,
        }
    }
}

/// Whether Redis answers, and as a master: `ROLE` (a replica refuses writes, so a master
/// demoted by a failover counts as down, and the next connect finds the new one). Also
/// counts the replicas the master lists.
async fn check(shared: &Shared, conn: &mut MultiplexedConnection) -> Result<(), String> {
    let role: ::redis::Value = timed(
        shared.settings.timeout,
        "health check (ROLE)",
        ::redis::cmd("ROLE").query_async(conn),
    )
    .await?;
    match wire::role(&role) {
        Some("master") => {
            let replicas = wire::role_replicas(&role).unwrap_or(0);
            shared.replicas.store(
                u32::try_from(replicas).unwrap_or(u32::MAX),
                Ordering::Release,
            );
            Ok(())
        }
        Some(other) => Err(format!("redis is a {other}, not the master")),
        None => Err(format!("redis answered ROLE with {role:?}")),
    }
}

/// Delivers `record` after any records between the topic's cursor and it.
async fn deliver(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    cursors: &mut HashMap<Arc<str>, Position>,
    record: Record,
) -> Result<(), String> {
    let topic = record.topic().clone();
    if !shared.is_watched(&topic) {
        cursors.remove(&topic);
        return Ok(());
    }
    let position = record.position();
    let cursor = match cursors.get(&topic) {
        Some(c) if c.epoch == position.epoch => *c,
        // See the module docs: from the start only if the link went down since the watch,
        // or if a record before this one may not have been notified.
        _ if shared.settings.unnotified_records || shared.watched_before_reconnect(&topic) => {
            Position {
                epoch: position.epoch,
                offset: 0,
            }
        }
        _ => Position {
            epoch: position.epoch,
            offset: position.offset.saturating_sub(1),
        },
    };
    if position.offset <= cursor.offset {
        return Ok(());
    }
    if position.offset > cursor.offset + 1 {
        catch_up(
            shared,
            conn,
            cursors,
            &topic,
            cursor,
            Some(position.offset - 1),
        )
        .await?;
    }
    hand_over(shared, cursors, Arc::new(record));
    Ok(())
}

/// Delivers the stream's records of `topic` after `cursor` (through `to` if given).
async fn catch_up(
    shared: &Shared,
    conn: &mut MultiplexedConnection,
    cursors: &mut HashMap<Arc<str>, Position>,
    topic: &Arc<str>,
    cursor: Position,
    to: Option<u64>,
) -> Result<(), String> {
    let keys = TopicKeys::new(topic);
    let to = to.map_or_else(|| "+".to_string(), |n| n.to_string());
    let reply = timed(
        shared.settings.timeout,
        "catch-up read",
        super::scripts::READ_SCRIPT
            .key(&keys.meta)
            .key(&keys.log)
            .key(&keys.keys)
            .arg(Epoch::random().to_string())
            .arg(cursor.epoch.to_string())
            .arg(cursor.offset)
            // Catch-up reads what is retained; the read's own age trim uses a year.
            .arg(365u64 * 24 * 3600 * 1000)
            .arg(0)
            .arg(to)
            .invoke_async::<::redis::Value>(conn),
    )
    .await?;
    let state = wire::parse_read_reply(topic, reply)?;
    if state.epoch != cursor.epoch {
        // Redis lost the topic (restarted without persistence): new records come as new.
        return Ok(());
    }
    let mut count = 0;
    for record in state.records {
        if record.position().offset > cursor.offset {
            hand_over(shared, cursors, record);
            count += 1;
        }
    }
    lock(&shared.stats).caught_up_records += count;
    Ok(())
}

fn hand_over(shared: &Shared, cursors: &mut HashMap<Arc<str>, Position>, record: Arc<Record>) {
    cursors.insert(record.topic().clone(), record.position());
    if let Some(sink) = shared.sink.get() {
        sink.deliver(record);
    }
}
