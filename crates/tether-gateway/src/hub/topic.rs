//! One topic's log: offsets, and the history kept for resume, bounded by count and age.
//!
//! The log numbers records 1, 2, 3... within an epoch. History keeps the newest `count`
//! records that are younger than `age`; a latest-per-key topic keeps, besides, only the newest
//! record of each key. Time is passed in (`now`), so tests drive it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::backplane::{Replay, ReplayFrom};
use super::record::{Epoch, Position, Record};

/// What a topic's history retains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryPolicy {
    /// At most this many records.
    pub count: usize,
    /// Records older than this are dropped.
    pub age: Duration,
    /// Keep only the newest record per key (keyless records are each kept on their own).
    pub latest_per_key: bool,
}

struct Entry {
    record: Arc<Record>,
    appended: Instant,
}

/// The log of one topic.
pub(crate) struct TopicLog {
    topic: Arc<str>,
    epoch: Epoch,
    last_offset: u64,
    /// The highest offset dropped by the count or age bound. Records replaced by a newer one
    /// of the same key are not counted: a latest-per-key resume does not need them.
    evicted_through: u64,
    entries: BTreeMap<u64, Entry>,
    /// For latest-per-key topics: the offset of each key's newest record.
    keys: HashMap<Arc<str>, u64>,
    policy: HistoryPolicy,
}

impl TopicLog {
    /// An empty log with a fresh epoch.
    pub(crate) fn new(topic: Arc<str>, epoch: Epoch, policy: HistoryPolicy) -> Self {
        TopicLog {
            topic,
            epoch,
            last_offset: 0,
            evicted_through: 0,
            entries: BTreeMap::new(),
            keys: HashMap::new(),
            policy,
        }
    }

    /// The position of the newest record (offset 0 when none was appended).
    pub(crate) fn position(&self) -> Position {
        Position {
            epoch: self.epoch,
            offset: self.last_offset,
        }
    }

    /// How many records history holds.
    pub(crate) fn retained(&self) -> usize {
        self.entries.len()
    }

    /// Applies a (possibly changed) policy from now on.
    pub(crate) fn set_policy(&mut self, policy: HistoryPolicy, now: Instant) {
        if policy != self.policy {
            if !policy.latest_per_key {
                self.keys.clear();
            }
            self.policy = policy;
            self.enforce_bounds(now);
        }
    }

    /// Appends a record with the next offset and trims history.
    pub(crate) fn append(
        &mut self,
        key: Option<Arc<str>>,
        timestamp_ms: u64,
        data: Bytes,
        now: Instant,
    ) -> Arc<Record> {
        self.last_offset += 1;
        let offset = self.last_offset;
        let position = Position {
            epoch: self.epoch,
            offset,
        };
        let record = Arc::new(Record::new(
            self.topic.clone(),
            position,
            key.clone(),
            timestamp_ms,
            data,
        ));
        if self.policy.latest_per_key
            && let Some(key) = key
            && let Some(previous) = self.keys.insert(key, offset)
        {
            self.entries.remove(&previous);
        }
        self.entries.insert(
            offset,
            Entry {
                record: record.clone(),
                appended: now,
            },
        );
        self.enforce_bounds(now);
        record
    }

    /// Drops records past the age bound.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((_, first)) = self.entries.first_key_value() {
            if now.saturating_duration_since(first.appended) <= self.policy.age {
                break;
            }
            self.evict_first();
        }
    }

    fn enforce_bounds(&mut self, now: Instant) {
        while self.entries.len() > self.policy.count {
            self.evict_first();
        }
        self.expire(now);
    }

    fn evict_first(&mut self) {
        if let Some((offset, entry)) = self.entries.pop_first() {
            self.evicted_through = offset;
            if let Some(key) = entry.record.key()
                && self.keys.get(key) == Some(&offset)
            {
                self.keys.remove(key);
            }
        }
    }

    /// What a subscriber starting `from` there gets: the current position, whether history
    /// covers everything it missed, and the retained records it missed, in offset order.
    pub(crate) fn replay(&mut self, from: ReplayFrom, now: Instant) -> Replay {
        self.expire(now);
        let (recovered, after) = match from {
            ReplayFrom::Now => (true, self.last_offset),
            ReplayFrom::Start => (self.evicted_through == 0, 0),
            ReplayFrom::After(since) => {
                if since.epoch != self.epoch || since.offset > self.last_offset {
                    // Another incarnation of the topic: all the client knew is void.
                    (false, 0)
                } else {
                    (since.offset >= self.evicted_through, since.offset)
                }
            }
        };
        let records = self
            .entries
            .range(after + 1..)
            .map(|(_, e)| e.record.clone())
            .collect();
        Replay {
            position: self.position(),
            recovered,
            records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(count: usize, age_secs: u64, latest_per_key: bool) -> HistoryPolicy {
        HistoryPolicy {
            count,
            age: Duration::from_secs(age_secs),
            latest_per_key,
        }
    }

    fn log(policy: HistoryPolicy) -> TopicLog {
        TopicLog::new("t".into(), Epoch::from_u64(1), policy)
    }

    fn offsets(replay: &Replay) -> Vec<u64> {
        replay.records.iter().map(|r| r.position().offset).collect()
    }

    fn at(epoch: u64, offset: u64) -> ReplayFrom {
        ReplayFrom::After(Position {
            epoch: Epoch::from_u64(epoch),
            offset,
        })
    }

    fn push(log: &mut TopicLog, key: Option<&str>, now: Instant) -> u64 {
        log.append(key.map(Into::into), 0, Bytes::from_static(b"1"), now)
            .position()
            .offset
    }

    #[test]
    fn offsets_start_at_one_and_increase() {
        let now = Instant::now();
        let mut log = log(policy(10, 60, false));
        assert_eq!(log.position().offset, 0);
        assert_eq!(push(&mut log, None, now), 1);
        assert_eq!(push(&mut log, None, now), 2);
        assert_eq!(log.position().epoch, Epoch::from_u64(1));
    }

    #[test]
    fn history_is_bounded_by_count() {
        let now = Instant::now();
        let mut log = log(policy(3, 60, false));
        for _ in 0..5 {
            push(&mut log, None, now);
        }
        assert_eq!(log.retained(), 3);
        let full = log.replay(ReplayFrom::Start, now);
        assert_eq!(offsets(&full), [3, 4, 5]);
        assert!(!full.recovered);
        // Missed 3..=5, all retained: recovered.
        let r = log.replay(at(1, 2), now);
        assert!(r.recovered);
        assert_eq!(offsets(&r), [3, 4, 5]);
        // Missed 2..=5, but 2 is gone: not recovered, the retained ones still come.
        let r = log.replay(at(1, 1), now);
        assert!(!r.recovered);
        assert_eq!(offsets(&r), [3, 4, 5]);
    }

    #[test]
    fn history_is_bounded_by_age() {
        let start = Instant::now();
        let mut log = log(policy(100, 10, false));
        push(&mut log, None, start);
        push(&mut log, None, start + Duration::from_secs(5));
        push(&mut log, None, start + Duration::from_secs(9));
        let r = log.replay(at(1, 0), start + Duration::from_secs(10));
        assert_eq!(offsets(&r), [1, 2, 3]);
        assert!(r.recovered);
        let r = log.replay(at(1, 0), start + Duration::from_secs(11));
        assert_eq!(offsets(&r), [2, 3]);
        assert!(!r.recovered);
        let r = log.replay(at(1, 1), start + Duration::from_secs(11));
        assert!(r.recovered);
        // Everything aged out: a client that had it all is still recovered, others are not.
        let later = start + Duration::from_secs(60);
        assert_eq!(log.replay(at(1, 3), later).records.len(), 0);
        assert!(log.replay(at(1, 3), later).recovered);
        assert!(!log.replay(at(1, 2), later).recovered);
        assert_eq!(log.retained(), 0);
        assert_eq!(log.position().offset, 3);
    }

    #[test]
    fn another_epoch_or_a_future_offset_is_not_recovered() {
        let now = Instant::now();
        let mut log = log(policy(10, 60, false));
        push(&mut log, None, now);
        push(&mut log, None, now);
        let r = log.replay(at(2, 1), now);
        assert!(!r.recovered);
        assert_eq!(offsets(&r), [1, 2]);
        let r = log.replay(at(1, 7), now);
        assert!(!r.recovered);
        assert_eq!(offsets(&r), [1, 2]);
    }

    #[test]
    fn now_replays_nothing_and_start_replays_everything() {
        let now = Instant::now();
        let mut log = log(policy(10, 60, false));
        push(&mut log, None, now);
        let r = log.replay(ReplayFrom::Now, now);
        assert!(r.records.is_empty());
        assert_eq!(r.position.offset, 1);
        let r = log.replay(ReplayFrom::Start, now);
        assert!(r.recovered);
        assert_eq!(offsets(&r), [1]);
    }

    #[test]
    fn latest_per_key_keeps_the_newest_record_of_each_key() {
        let now = Instant::now();
        let mut log = log(policy(10, 60, true));
        push(&mut log, Some("AAPL"), now); // 1
        push(&mut log, Some("MSFT"), now); // 2
        push(&mut log, Some("AAPL"), now); // 3
        push(&mut log, None, now); // 4
        push(&mut log, Some("GOOG"), now); // 5
        push(&mut log, Some("MSFT"), now); // 6
        let all = log.replay(ReplayFrom::Start, now);
        assert_eq!(offsets(&all), [3, 4, 5, 6]);
        // Replaced records do not count as lost: resuming from anywhere is recovered.
        assert!(all.recovered);
        let r = log.replay(at(1, 1), now);
        assert!(r.recovered);
        assert_eq!(offsets(&r), [3, 4, 5, 6]);
        let r = log.replay(at(1, 5), now);
        assert_eq!(offsets(&r), [6]);
    }

    #[test]
    fn latest_per_key_still_honours_the_count_bound() {
        let now = Instant::now();
        let mut log = log(policy(2, 60, true));
        push(&mut log, Some("a"), now); // 1
        push(&mut log, Some("b"), now); // 2
        push(&mut log, Some("c"), now); // 3, evicts 1 (key a)
        push(&mut log, Some("a"), now); // 4, evicts 2 (key b)
        let r = log.replay(at(1, 0), now);
        assert_eq!(offsets(&r), [3, 4]);
        assert!(!r.recovered);
        assert!(log.replay(at(1, 2), now).recovered);
        push(&mut log, Some("c"), now); // 5 replaces 3
        assert_eq!(offsets(&log.replay(ReplayFrom::Start, now)), [4, 5]);
    }

    #[test]
    fn zero_count_keeps_no_history() {
        let now = Instant::now();
        let mut log = log(policy(0, 60, false));
        push(&mut log, None, now);
        push(&mut log, None, now);
        assert_eq!(log.retained(), 0);
        assert!(log.replay(at(1, 2), now).recovered);
        assert!(!log.replay(at(1, 1), now).recovered);
    }

    #[test]
    fn a_tighter_policy_applies_at_once() {
        let now = Instant::now();
        let mut log = log(policy(10, 60, false));
        for _ in 0..5 {
            push(&mut log, None, now);
        }
        log.set_policy(policy(2, 60, false), now);
        assert_eq!(offsets(&log.replay(ReplayFrom::Start, now)), [4, 5]);
    }
}
