//! The line between node-local fan-out and cross-node delivery.
//!
//! The [`Hub`](super::Hub) keeps what is local to this node: which connections subscribe to
//! what, and their outbound queues. A [`Backplane`] owns what all nodes must agree on: the order
//! of each topic's records, their offsets and epochs, and the history kept for resume. The
//! in-memory backplane ([`InMemoryBackplane`](super::InMemoryBackplane)) is the default and
//! serves one node; a Redis backplane (a stream per topic defines order and offsets, one
//! subscription per node feeds its local subscribers) can take its place without touching
//! the hub.
//!
//! # Contract
//!
//! - [`attach`](Backplane::attach) is called once, by the hub, before anything else. From then
//!   on the backplane hands every record of every topic this node watches to
//!   [`RecordSink::deliver`]: published here or on another node.
//! - For one topic, `deliver` is called in offset order and never concurrently.
//! - A record is visible to [`replay`](Backplane::replay) before `deliver` is called for it.
//!   With this rule the hub subscribes without gap or duplicate: it registers the subscriber
//!   first, then replays, and drops the live records the replay already covered.
//! - When [`watch`](Backplane::watch) resolves, every record appended afterwards to a topic the
//!   pattern matches is delivered. A backplane may also deliver topics nobody watches (the
//!   in-memory one delivers everything); the hub ignores them.
//! - Presence ([`join_presence`](Backplane::join_presence)) is shared by every node on the
//!   same backplane: a [`presence`](Backplane::presence) query on any node lists the entries
//!   joined on all of them. An entry whose node stopped without leaving disappears within
//!   the backplane's presence TTL.
//! - Methods never block the thread: slow work happens in the returned futures, which are
//!   `Send` so a connection's task can await them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::pattern::Pattern;
use super::presence::{PresenceEntry, PresenceList};
use super::record::{Position, Record};
use super::topic::HistoryPolicy;

/// A boxed future, as the backplane's async methods return (no async-trait needed).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backplane failure, for people (a lost Redis connection, a refused write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackplaneError(pub String);

impl fmt::Display for BackplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackplaneError {}

/// Where a backplane hands the records this node's subscribers may want.
pub trait RecordSink: Send + Sync {
    /// One record; see the module's contract for order and timing.
    fn deliver(&self, record: Arc<Record>);
}

/// A message to append to a topic's log.
#[derive(Clone, Debug)]
pub struct Publication {
    /// A valid topic name.
    pub topic: Arc<str>,
    /// The key, for latest-per-key history.
    pub key: Option<Arc<str>>,
    /// The payload, JSON text.
    pub data: Bytes,
    /// Publish time, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// What the topic's history retains (from the hub's config).
    pub history: HistoryPolicy,
}

/// Where a replay starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Nothing to replay: only the current position is wanted.
    Now,
    /// Everything retained (a topic new to the client).
    Start,
    /// What came after this position.
    After(Position),
}

/// The answer to a replay.
#[derive(Clone, Debug)]
pub struct Replay {
    /// The topic's current position: the newest record's offset (0 if none yet).
    pub position: Position,
    /// Whether the records cover everything the client missed: same epoch, and history still
    /// reaches back far enough. Always `true` for [`ReplayFrom::Now`].
    pub recovered: bool,
    /// The retained records after the starting point, in offset order. For a latest-per-key
    /// topic, the newest record of each key.
    pub records: Vec<Arc<Record>>,
}

/// What a backplane knows of one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicState {
    /// The topic.
    pub topic: Arc<str>,
    /// Its current position.
    pub position: Position,
    /// Records retained in its history.
    pub retained: usize,
}

/// Whether the hub can do its job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "snake_case")]
pub enum Health {
    /// Everything works.
    Ok,
    /// Publishing or resuming may fail; the reason is for people.
    Degraded(String),
}

/// Cross-node delivery: ordering, offsets and history. See the module docs for the contract.
pub trait Backplane: Send + Sync + 'static {
    /// Tells the backplane where to deliver records. Called once by the hub.
    fn attach(&self, sink: Arc<dyn RecordSink>);

    /// Appends a message to its topic's log (creating the topic with a fresh epoch) and
    /// returns its position.
    fn publish(&self, publication: Publication) -> BoxFuture<'_, Result<Position, BackplaneError>>;

    /// The topic's position and the records after `from`. For a topic with no message yet,
    /// the position its log will start from (the epoch it will have, offset 0), so that a
    /// subscriber can resume from there once messages exist.
    fn replay<'a>(
        &'a self,
        topic: &'a str,
        from: ReplayFrom,
        history: HistoryPolicy,
    ) -> BoxFuture<'a, Result<Replay, BackplaneError>>;

    /// The existing topics that `pattern` matches.
    fn topics_matching<'a>(
        &'a self,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<Vec<Arc<str>>, BackplaneError>>;

    /// This node has subscribers for `pattern` now: deliver its topics from when this
    /// resolves on. Called when the first local subscriber arrives.
    fn watch<'a>(&'a self, pattern: &'a Pattern) -> BoxFuture<'a, Result<(), BackplaneError>>;

    /// The last local subscriber of `pattern` is gone.
    fn unwatch(&self, pattern: &Pattern);

    /// The topics this node knows of (a backplane may answer from a cache).
    fn topics(&self) -> Vec<TopicState>;

    /// Whether the backplane works.
    fn health(&self) -> Health;

    /// Adds `entry` to the presence of `topic` (again: no change), kept until
    /// [`leave_presence`](Backplane::leave_presence). When the backplane fails, the entry is
    /// still kept here and shared once it works again.
    fn join_presence<'a>(
        &'a self,
        topic: &'a str,
        entry: &'a PresenceEntry,
    ) -> BoxFuture<'a, Result<(), BackplaneError>>;

    /// Removes `entry` from the presence of `topic` (nothing if it is not there). Called
    /// from `Drop`, so it does not wait.
    fn leave_presence(&self, topic: &str, entry: &PresenceEntry);

    /// The presence of `topic`, every node's: the count, and at most `limit` entries.
    fn presence<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<PresenceList, BackplaneError>>;

    /// This node's presence entries, over all topics.
    fn local_presence_entries(&self) -> usize;

    /// Appends the backplane's own Prometheus text-format lines to `out` (none by default).
    fn render_metrics(&self, _out: &mut String) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_serializes_with_a_status() {
        assert_eq!(
            serde_json::to_string(&Health::Ok).unwrap(),
            r#"{"status":"ok"}"#
        );
        assert_eq!(
            serde_json::to_string(&Health::Degraded("redis down".into())).unwrap(),
            r#"{"status":"degraded","reason":"redis down"}"#
        );
    }
}
