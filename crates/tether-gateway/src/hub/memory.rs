//! The in-memory backplane: one node, topic logs in this process, history lost on restart.
//!
//! Its topics share one epoch, chosen at random when the backplane is made: a topic is never
//! deleted while the process runs, so the epoch names each topic's log exactly, and a restart
//! changes it for all (resuming clients learn `recovered: false`). A subscriber of a topic that
//! has no message yet is told that epoch and offset 0, without creating anything, so
//! subscribing cannot fill memory with empty topics, and resuming from there once messages
//! exist is recovered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use super::backplane::{
    Backplane, BackplaneError, BoxFuture, Health, Publication, RecordSink, Replay, ReplayFrom,
    TopicState,
};
use super::pattern::Pattern;
use super::presence::{LocalPresence, PresenceEntry, PresenceList};
use super::record::{Epoch, Position};
use super::topic::{HistoryPolicy, TopicLog};
use super::{lock, read, write};

/// How often publishing also trims the history of idle topics by age.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Topic logs in memory; the default backplane.
///
/// Publishing appends to the topic's log and delivers the record to the attached hub under
/// the topic's lock, so one topic's records reach subscribers in offset order. The futures it
/// returns are ready at once.
pub struct InMemoryBackplane {
    epoch: Epoch,
    topics: RwLock<HashMap<Arc<str>, Arc<Mutex<TopicLog>>>>,
    sink: OnceLock<Arc<dyn RecordSink>>,
    last_sweep: Mutex<Instant>,
    presence: Mutex<LocalPresence>,
}

impl Default for InMemoryBackplane {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for InMemoryBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryBackplane")
            .field("topics", &read(&self.topics).len())
            .finish()
    }
}

impl InMemoryBackplane {
    /// An empty backplane.
    pub fn new() -> Self {
        InMemoryBackplane {
            epoch: Epoch::random(),
            topics: RwLock::new(HashMap::new()),
            sink: OnceLock::new(),
            last_sweep: Mutex::new(Instant::now()),
            presence: Mutex::new(LocalPresence::default()),
        }
    }

    /// The log of `topic`, if it exists.
    fn existing(&self, topic: &str) -> Option<Arc<Mutex<TopicLog>>> {
        read(&self.topics).get(topic).cloned()
    }

    /// The log of `topic`, created if missing.
    fn log(&self, topic: &str, history: HistoryPolicy) -> Arc<Mutex<TopicLog>> {
        if let Some(log) = self.existing(topic) {
            return log;
        }
        write(&self.topics)
            .entry(topic.into())
            .or_insert_with_key(|topic| {
                Arc::new(Mutex::new(TopicLog::new(
                    topic.clone(),
                    self.epoch,
                    history,
                )))
            })
            .clone()
    }

    /// Trims every topic's history by age, at most once per [`SWEEP_INTERVAL`], so idle topics
    /// do not hold expired records until their next publish.
    fn maybe_sweep(&self, now: Instant) {
        {
            let Ok(mut last) = self.last_sweep.try_lock() else {
                return;
            };
            if now.saturating_duration_since(*last) < SWEEP_INTERVAL {
                return;
            }
            *last = now;
        }
        let logs: Vec<_> = read(&self.topics).values().cloned().collect();
        for log in logs {
            lock(&log).expire(now);
        }
    }
}

impl Backplane for InMemoryBackplane {
    fn attach(&self, sink: Arc<dyn RecordSink>) {
        // One hub per backplane: a second attach is ignored.
        let _ = self.sink.set(sink);
    }

    fn publish(&self, p: Publication) -> BoxFuture<'_, Result<Position, BackplaneError>> {
        let now = Instant::now();
        let log = self.log(&p.topic, p.history);
        let position = {
            let mut log = lock(&log);
            log.set_policy(p.history, now);
            let record = log.append(p.key, p.timestamp_ms, p.data, now);
            let position = record.position();
            // Delivered under the topic's lock: one topic's records reach the hub in order,
            // and only once they are in the log (visible to replay).
            if let Some(sink) = self.sink.get() {
                sink.deliver(record);
            }
            position
        };
        self.maybe_sweep(now);
        Box::pin(std::future::ready(Ok(position)))
    }

    fn replay<'a>(
        &'a self,
        topic: &'a str,
        from: ReplayFrom,
        history: HistoryPolicy,
    ) -> BoxFuture<'a, Result<Replay, BackplaneError>> {
        let now = Instant::now();
        let replay = match self.existing(topic) {
            Some(log) => lock(&log).replay(from, now),
            // What the topic's log will be: this epoch, empty.
            None => TopicLog::new(topic.into(), self.epoch, history).replay(from, now),
        };
        Box::pin(std::future::ready(Ok(replay)))
    }

    fn topics_matching<'a>(
        &'a self,
        pattern: &'a Pattern,
    ) -> BoxFuture<'a, Result<Vec<Arc<str>>, BackplaneError>> {
        let topics = read(&self.topics)
            .keys()
            .filter(|t| pattern.matches(t))
            .cloned()
            .collect();
        Box::pin(std::future::ready(Ok(topics)))
    }

    fn watch<'a>(&'a self, _pattern: &'a Pattern) -> BoxFuture<'a, Result<(), BackplaneError>> {
        // Every record is delivered already.
        Box::pin(std::future::ready(Ok(())))
    }

    fn unwatch(&self, _pattern: &Pattern) {}

    fn topics(&self) -> Vec<TopicState> {
        let now = Instant::now();
        let logs: Vec<_> = read(&self.topics)
            .iter()
            .map(|(t, l)| (t.clone(), l.clone()))
            .collect();
        logs.into_iter()
            .map(|(topic, log)| {
                let mut log = lock(&log);
                log.expire(now);
                TopicState {
                    topic,
                    position: log.position(),
                    retained: log.retained(),
                }
            })
            .collect()
    }

    fn health(&self) -> Health {
        Health::Ok
    }

    fn join_presence<'a>(
        &'a self,
        topic: &'a str,
        entry: &'a PresenceEntry,
    ) -> BoxFuture<'a, Result<(), BackplaneError>> {
        lock(&self.presence).join(topic, entry);
        Box::pin(std::future::ready(Ok(())))
    }

    fn leave_presence(&self, topic: &str, entry: &PresenceEntry) {
        lock(&self.presence).leave(topic, entry);
    }

    fn presence<'a>(
        &'a self,
        topic: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<PresenceList, BackplaneError>> {
        let list = lock(&self.presence).list(topic, limit);
        Box::pin(std::future::ready(Ok(list)))
    }

    fn local_presence_entries(&self) -> usize {
        lock(&self.presence).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::record::Record;
    use bytes::Bytes;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Arc<Record>>>);

    impl RecordSink for Collect {
        fn deliver(&self, record: Arc<Record>) {
            lock(&self.0).push(record);
        }
    }

    fn history() -> HistoryPolicy {
        HistoryPolicy {
            count: 10,
            age: Duration::from_secs(60),
            latest_per_key: false,
        }
    }

    fn publication(topic: &str) -> Publication {
        Publication {
            topic: topic.into(),
            key: None,
            data: Bytes::from_static(b"{}"),
            timestamp_ms: 1,
            history: history(),
        }
    }

    #[tokio::test]
    async fn publish_appends_and_delivers_in_order() {
        let backplane = InMemoryBackplane::new();
        let sink = Arc::new(Collect::default());
        backplane.attach(sink.clone());
        let first = backplane.publish(publication("a.b")).await.unwrap();
        let second = backplane.publish(publication("a.b")).await.unwrap();
        assert_eq!((first.offset, second.offset), (1, 2));
        assert_eq!(first.epoch, second.epoch);
        let delivered: Vec<_> = lock(&sink.0).iter().map(|r| r.position()).collect();
        assert_eq!(delivered, [first, second]);
        let other = backplane.publish(publication("c")).await.unwrap();
        assert_eq!((other.epoch, other.offset), (first.epoch, 1));
        let restarted = InMemoryBackplane::new();
        let after_restart = restarted.publish(publication("c")).await.unwrap();
        assert_ne!(after_restart.epoch, first.epoch);
    }

    #[tokio::test]
    async fn replay_of_a_missing_topic_creates_nothing_and_resumes_into_it() {
        let backplane = InMemoryBackplane::new();
        let replay = backplane
            .replay("new.topic", ReplayFrom::Now, history())
            .await
            .unwrap();
        assert_eq!(replay.position.offset, 0);
        assert!(backplane.topics().is_empty());
        let published = backplane.publish(publication("new.topic")).await.unwrap();
        assert_eq!(published.epoch, replay.position.epoch);
        let resumed = backplane
            .replay("new.topic", ReplayFrom::After(replay.position), history())
            .await
            .unwrap();
        assert!(resumed.recovered);
        assert_eq!(resumed.records.len(), 1);
        backplane.publish(publication("other")).await.unwrap();
        let mut matching = backplane
            .topics_matching(&Pattern::parse("new.*").unwrap())
            .await
            .unwrap();
        matching.sort();
        assert_eq!(matching, [Arc::from("new.topic")]);
        let mut all: Vec<_> = backplane
            .topics()
            .into_iter()
            .map(|t| (t.topic.to_string(), t.retained))
            .collect();
        all.sort();
        assert_eq!(all, [("new.topic".into(), 1), ("other".into(), 1)]);
        assert_eq!(backplane.health(), Health::Ok);
    }

    #[tokio::test]
    async fn presence_joins_once_leaves_and_lists_up_to_the_limit() {
        let backplane = InMemoryBackplane::new();
        let a = PresenceEntry::new("n-1", Some("alice"));
        let b = PresenceEntry::new("n-2", None);
        backplane.join_presence("room", &a).await.unwrap();
        backplane.join_presence("room", &a).await.unwrap();
        backplane.join_presence("room", &b).await.unwrap();
        assert_eq!(backplane.local_presence_entries(), 2);
        let list = backplane.presence("room", 10).await.unwrap();
        assert_eq!(list.count, 2);
        assert_eq!(list.clients, [a.clone(), b.clone()]);
        let short = backplane.presence("room", 1).await.unwrap();
        assert_eq!((short.count, short.clients), (2, vec![a.clone()]));
        backplane.leave_presence("room", &a);
        backplane.leave_presence("room", &a);
        let list = backplane.presence("room", 10).await.unwrap();
        assert_eq!((list.count, list.clients), (1, vec![b.clone()]));
        assert_eq!(backplane.presence("elsewhere", 10).await.unwrap().count, 0);
        backplane.leave_presence("room", &b);
        assert_eq!(backplane.local_presence_entries(), 0);
        // Presence creates no topic.
        assert!(backplane.topics().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_topics_are_swept_by_age() {
        let backplane = InMemoryBackplane::new();
        let short = HistoryPolicy {
            age: Duration::from_secs(5),
            ..history()
        };
        backplane
            .publish(Publication {
                history: short,
                ..publication("idle")
            })
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(6)).await;
        backplane.publish(publication("busy")).await.unwrap();
        let idle = lock(&read(&backplane.topics)["idle"]).retained();
        assert_eq!(idle, 0);
    }
}
