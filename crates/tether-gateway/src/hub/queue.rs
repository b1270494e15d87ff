//! A connection's outbound queue: bounded in bytes, filled by publishers, emptied by the
//! connection's task, with the slow-consumer policies.
//!
//! Publishing never waits on a subscriber: it pushes a shared record here and wakes the
//! session. Only live records count against the bound; records replayed from history are
//! already held by the history (and bounded by it), so a resuming client is not cut off for
//! the size of its backlog.
//!
//! The queue also removes duplicates. It remembers the newest position queued per topic and
//! skips anything at or below it: a message matching two subscriptions of one client goes out
//! once, and a live record racing with a resume is not sent twice. While a subscribe is
//! replaying history, live records wait aside (`held`) and are released, deduplicated, after
//! the replayed ones.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::backplane::Replay;
use super::config::SlowConsumerPolicy;
use super::lock;
use super::record::{Position, Record};
use super::stats::HubStats;

/// A record waiting to be written.
#[derive(Clone, Debug)]
pub(crate) struct Queued {
    pub(crate) record: Arc<Record>,
    /// Live (counted against the bound, timed for latency) rather than replayed.
    pub(crate) live: bool,
}

impl Queued {
    fn counted_bytes(&self) -> usize {
        if self.live {
            self.record.frame_len()
        } else {
            0
        }
    }
}

/// One topic's replay, as a subscribe hands it to [`Outbox::finish_sync`].
#[derive(Debug)]
pub(crate) struct Synced {
    pub(crate) topic: Arc<str>,
    pub(crate) replay: Replay,
    pub(crate) policy: SlowConsumerPolicy,
}

/// The queue was closed because the subscriber fell behind under the `disconnect` policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlowConsumer;

/// The outbound queue of one connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    bound: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Queued records; `None` marks one replaced under `keep_latest_per_key`.
    slots: VecDeque<Option<Queued>>,
    /// The sequence number of `slots[0]`.
    head_seq: u64,
    /// Bytes of live records in `slots` and `held`.
    bytes: usize,
    /// For `keep_latest_per_key`: the sequence number of the newest queued record per
    /// topic and key.
    latest: HashMap<(Arc<str>, Arc<str>), u64>,
    /// `Some` while a subscribe replays history: live records wait here.
    held: Option<VecDeque<(Queued, SlowConsumerPolicy)>>,
    /// The newest position queued per topic.
    cursors: HashMap<Arc<str>, Position>,
    /// The session, waiting for records.
    waker: Option<Waker>,
    /// The session, waiting only to learn of a close (its socket is full).
    close_waker: Option<Waker>,
    closed: bool,
}

impl Outbox {
    /// An empty queue of at most `bound` bytes of live records.
    pub(crate) fn new(bound: usize) -> Self {
        Outbox {
            bound,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Queues a live record, applying `policy` when the queue is over its bound.
    pub(crate) fn push(&self, record: &Arc<Record>, policy: SlowConsumerPolicy, stats: &HubStats) {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return;
        }
        let item = Queued {
            record: record.clone(),
            live: true,
        };
        if inner.held.is_none() && !inner.advance(record) {
            return;
        }
        let size = record.frame_len();
        if inner.bytes + size > self.bound
            && !inner.make_room(self.bound, size, record, policy, stats)
        {
            inner.close();
            stats.count_slow_consumer_disconnect();
            return;
        }
        inner.bytes += size;
        match &mut inner.held {
            Some(held) => held.push_back((item, policy)),
            None => inner.append(item, policy),
        }
    }

    /// Starts holding live records aside while history is replayed.
    pub(crate) fn begin_sync(&self) {
        let mut inner = lock(&self.inner);
        if inner.held.is_none() {
            inner.held = Some(VecDeque::new());
        }
    }

    /// Queues replayed records (each topic's in offset order, skipping what was queued
    /// already), moves each topic's cursor up to the position its replay reported, then
    /// releases the live records held since [`begin_sync`](Self::begin_sync), skipping those
    /// the replay covered.
    pub(crate) fn finish_sync(&self, replays: &[Synced]) {
        let mut inner = lock(&self.inner);
        let held = inner.held.take().unwrap_or_default();
        if inner.closed {
            return;
        }
        for synced in replays {
            for record in &synced.replay.records {
                if inner.advance(record) {
                    let item = Queued {
                        record: record.clone(),
                        live: false,
                    };
                    inner.append(item, synced.policy);
                }
            }
            inner.raise_cursor(synced.topic.clone(), synced.replay.position);
        }
        for (item, policy) in held {
            if inner.advance(&item.record) {
                inner.append(item, policy);
            } else {
                inner.bytes -= item.counted_bytes();
            }
        }
        inner.wake();
    }

    /// Keeps only the topics `keep` accepts (those a subscription still covers): the others'
    /// queued records are dropped and their cursors forgotten, so a later subscribe can
    /// replay them again.
    pub(crate) fn retain_topics(&self, keep: impl Fn(&str) -> bool) {
        let mut inner = lock(&self.inner);
        let inner = &mut *inner;
        inner.cursors.retain(|topic, _| keep(topic));
        let mut freed = 0;
        for slot in &mut inner.slots {
            if slot.as_ref().is_some_and(|item| !keep(item.record.topic())) {
                freed += slot.take().map_or(0, |item| item.counted_bytes());
            }
        }
        if let Some(held) = &mut inner.held {
            held.retain(|(item, _)| {
                let kept = keep(item.record.topic());
                if !kept {
                    freed += item.counted_bytes();
                }
                kept
            });
        }
        inner.latest.retain(|(topic, _), _| keep(topic));
        inner.bytes -= freed;
    }

    /// Takes queued records, at least one and about `budget` bytes, into `out`. Pending
    /// (with the waker registered) when the queue is empty.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        out: &mut VecDeque<Queued>,
        budget: usize,
    ) -> Poll<Result<(), SlowConsumer>> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return Poll::Ready(Err(SlowConsumer));
        }
        let mut taken = 0;
        while taken < budget {
            let Some(item) = inner.pop_front() else {
                break;
            };
            taken += item.record.frame_len();
            inner.bytes -= item.counted_bytes();
            out.push_back(item);
        }
        if taken == 0 {
            inner.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    /// Ready once the queue is closed; otherwise registers to be woken by the close only
    /// (not by every push), for a session that cannot write now.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<SlowConsumer> {
        let mut inner = lock(&self.inner);
        if inner.closed {
            return Poll::Ready(SlowConsumer);
        }
        if !inner
            .close_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            inner.close_waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Closes the queue (the connection is over); publishers skip it from now on.
    pub(crate) fn close(&self) {
        lock(&self.inner).close();
    }

    /// Bytes of live records queued.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        lock(&self.inner).bytes
    }
}

impl Inner {
    /// Records `record` as queued for its topic; `false` if it (or a newer one) already was.
    fn advance(&mut self, record: &Arc<Record>) -> bool {
        let position = record.position();
        match self.cursors.get_mut(record.topic()) {
            Some(cursor) if cursor.epoch == position.epoch && cursor.offset >= position.offset => {
                false
            }
            Some(cursor) => {
                *cursor = position;
                true
            }
            None => {
                self.cursors.insert(record.topic().clone(), position);
                true
            }
        }
    }

    fn raise_cursor(&mut self, topic: Arc<str>, position: Position) {
        let cursor = self.cursors.entry(topic).or_insert(position);
        if cursor.epoch != position.epoch || cursor.offset < position.offset {
            *cursor = position;
        }
    }

    fn append(&mut self, item: Queued, policy: SlowConsumerPolicy) {
        let seq = self.head_seq + self.slots.len() as u64;
        if policy == SlowConsumerPolicy::KeepLatestPerKey
            && let Some(key) = item.record.key()
        {
            self.latest
                .insert((item.record.topic().clone(), key.clone()), seq);
        }
        self.slots.push_back(Some(item));
        self.wake();
    }

    fn pop_front(&mut self) -> Option<Queued> {
        while let Some(slot) = self.slots.pop_front() {
            let seq = self.head_seq;
            self.head_seq += 1;
            let Some(item) = slot else { continue };
            if let Some(key) = item.record.key() {
                let id = (item.record.topic().clone(), key.clone());
                if self.latest.get(&id) == Some(&seq) {
                    self.latest.remove(&id);
                }
            }
            return Some(item);
        }
        None
    }

    /// Applies the slow-consumer policy so that `size` more bytes fit; `false` means
    /// disconnect.
    fn make_room(
        &mut self,
        bound: usize,
        size: usize,
        record: &Record,
        policy: SlowConsumerPolicy,
        stats: &HubStats,
    ) -> bool {
        let mut dropped = 0;
        match policy {
            SlowConsumerPolicy::Disconnect => return false,
            SlowConsumerPolicy::DropOldest => {}
            SlowConsumerPolicy::KeepLatestPerKey => {
                if let Some(key) = record.key()
                    && let Some(seq) = self.latest.remove(&(record.topic().clone(), key.clone()))
                    && let Some(index) = seq.checked_sub(self.head_seq)
                    && let Some(slot) = self.slots.get_mut(index as usize)
                    && let Some(old) = slot.take()
                {
                    self.bytes -= old.counted_bytes();
                    dropped += 1;
                }
            }
        }
        while self.bytes + size > bound {
            let item = match self.pop_front() {
                Some(item) => item,
                None => match self.held.as_mut().and_then(VecDeque::pop_front) {
                    Some((item, _)) => item,
                    None => break,
                },
            };
            self.bytes -= item.counted_bytes();
            dropped += 1;
        }
        stats.count_dropped(dropped);
        true
    }

    fn close(&mut self) {
        self.closed = true;
        self.slots.clear();
        self.held = None;
        self.latest.clear();
        self.bytes = 0;
        self.wake();
        if let Some(waker) = self.close_waker.take() {
            waker.wake();
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests;
