//! Unit tests of the outbound queue: order, bound, policies, deduplication, resume merge.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Wake;

use bytes::Bytes;

use super::*;
use crate::hub::record::Epoch;

const EPOCH: Epoch = Epoch::from_u64(9);

fn record(topic: &str, offset: u64, key: Option<&str>, data_len: usize) -> Arc<Record> {
    Arc::new(Record::new(
        topic.into(),
        Position {
            epoch: EPOCH,
            offset,
        },
        key.map(Into::into),
        0,
        Bytes::from(format!("\"{}\"", "x".repeat(data_len.saturating_sub(2)))),
    ))
}

fn take_all(outbox: &Outbox) -> Result<Vec<(String, u64, bool)>, SlowConsumer> {
    let mut out = VecDeque::new();
    let mut cx = Context::from_waker(Waker::noop());
    match outbox.poll_take(&mut cx, &mut out, usize::MAX) {
        Poll::Ready(Err(e)) => return Err(e),
        Poll::Ready(Ok(())) | Poll::Pending => {}
    }
    Ok(out
        .into_iter()
        .map(|q| {
            (
                q.record.topic().to_string(),
                q.record.position().offset,
                q.live,
            )
        })
        .collect())
}

fn offsets(outbox: &Outbox) -> Vec<u64> {
    take_all(outbox).unwrap().into_iter().map(|t| t.1).collect()
}

#[test]
fn records_come_out_in_order_and_bytes_are_counted() {
    let stats = HubStats::default();
    let outbox = Outbox::new(1 << 20);
    for offset in 1..=3 {
        outbox.push(
            &record("a", offset, None, 10),
            SlowConsumerPolicy::Disconnect,
            &stats,
        );
    }
    assert_eq!(outbox.bytes(), 3 * record("a", 1, None, 10).frame_len());
    assert_eq!(offsets(&outbox), [1, 2, 3]);
    assert_eq!(outbox.bytes(), 0);
}

#[test]
fn the_same_record_is_queued_once() {
    let stats = HubStats::default();
    let outbox = Outbox::new(1 << 20);
    let r = record("a", 1, None, 10);
    outbox.push(&r, SlowConsumerPolicy::Disconnect, &stats);
    outbox.push(&r, SlowConsumerPolicy::Disconnect, &stats);
    outbox.push(
        &record("b", 1, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    assert_eq!(take_all(&outbox).unwrap().len(), 2);
}

#[test]
fn disconnect_policy_closes_an_overflowing_queue() {
    let stats = HubStats::default();
    let one = record("a", 1, None, 100).frame_len();
    let outbox = Outbox::new(one * 3);
    for offset in 1..=3 {
        outbox.push(
            &record("a", offset, None, 100),
            SlowConsumerPolicy::Disconnect,
            &stats,
        );
    }
    assert_eq!(stats.slow_consumer_disconnects(), 0);
    outbox.push(
        &record("a", 4, None, 100),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    assert_eq!(stats.slow_consumer_disconnects(), 1);
    assert_eq!(take_all(&outbox), Err(SlowConsumer));
    assert_eq!(outbox.bytes(), 0);
    // Later pushes are ignored, and counted only once.
    outbox.push(
        &record("a", 5, None, 100),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    assert_eq!(stats.slow_consumer_disconnects(), 1);
}

#[test]
fn drop_oldest_makes_room_and_counts_drops() {
    let stats = HubStats::default();
    let one = record("a", 1, None, 100).frame_len();
    let outbox = Outbox::new(one * 3);
    for offset in 1..=5 {
        outbox.push(
            &record("a", offset, None, 100),
            SlowConsumerPolicy::DropOldest,
            &stats,
        );
    }
    assert_eq!(stats.dropped(), 2);
    assert_eq!(offsets(&outbox), [3, 4, 5]);
    // A bigger record drops as many as it needs.
    for offset in 6..=8 {
        outbox.push(
            &record("a", offset, None, 100),
            SlowConsumerPolicy::DropOldest,
            &stats,
        );
    }
    outbox.push(
        &record("a", 9, None, 250),
        SlowConsumerPolicy::DropOldest,
        &stats,
    );
    assert_eq!(offsets(&outbox), [8, 9]);
    assert_eq!(stats.dropped(), 4);
}

#[test]
fn keep_latest_per_key_replaces_the_queued_record_of_the_same_key() {
    let stats = HubStats::default();
    let policy = SlowConsumerPolicy::KeepLatestPerKey;
    let one = record("p", 1, Some("AAPL"), 100).frame_len();
    let outbox = Outbox::new(one * 3);
    outbox.push(&record("p", 1, Some("AAPL"), 100), policy, &stats);
    outbox.push(&record("p", 2, Some("MSFT"), 100), policy, &stats);
    outbox.push(&record("p", 3, Some("GOOG"), 100), policy, &stats);
    outbox.push(&record("p", 4, Some("MSFT"), 100), policy, &stats);
    assert_eq!(stats.dropped(), 1);
    assert_eq!(outbox.bytes(), one * 3);
    // A key with nothing queued: the oldest goes.
    outbox.push(&record("p", 5, Some("TSLA"), 100), policy, &stats);
    assert_eq!(stats.dropped(), 2);
    assert_eq!(offsets(&outbox), [3, 4, 5]);
    // The same key on another topic is another key.
    outbox.push(&record("p", 6, Some("A"), 100), policy, &stats);
    outbox.push(&record("q", 1, Some("A"), 100), policy, &stats);
    outbox.push(&record("p", 7, Some("B"), 100), policy, &stats);
    outbox.push(&record("p", 8, Some("A"), 100), policy, &stats);
    let got: Vec<_> = take_all(&outbox)
        .unwrap()
        .into_iter()
        .map(|t| (t.0, t.1))
        .collect();
    assert_eq!(got, [("q".into(), 1), ("p".into(), 7), ("p".into(), 8)]);
}

fn synced(topic: &str, last: u64, records: Vec<Arc<Record>>) -> Synced {
    Synced {
        topic: topic.into(),
        replay: Replay {
            position: Position {
                epoch: EPOCH,
                offset: last,
            },
            recovered: true,
            records,
        },
        policy: SlowConsumerPolicy::Disconnect,
    }
}

#[test]
fn resume_merges_replay_and_held_live_records_without_gap_or_duplicate() {
    let stats = HubStats::default();
    let outbox = Outbox::new(1 << 20);
    outbox.begin_sync();
    // Live records race with the replay: 5 and 6 arrive while history is read.
    outbox.push(
        &record("a", 5, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    outbox.push(
        &record("a", 6, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    assert_eq!(take_all(&outbox).unwrap(), []);
    // The replay saw up to 5.
    let history = (3..=5).map(|o| record("a", o, None, 10)).collect();
    outbox.finish_sync(&[synced("a", 5, history)]);
    let out = take_all(&outbox).unwrap();
    let got: Vec<_> = out.iter().map(|t| (t.1, t.2)).collect();
    assert_eq!(got, [(3, false), (4, false), (5, false), (6, true)]);
    assert_eq!(outbox.bytes(), 0);
    outbox.push(
        &record("a", 6, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    outbox.push(
        &record("a", 7, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    assert_eq!(offsets(&outbox), [7]);
}

#[test]
fn an_acknowledged_position_skips_older_live_records() {
    let stats = HubStats::default();
    let outbox = Outbox::new(1 << 20);
    outbox.begin_sync();
    outbox.push(
        &record("a", 4, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    outbox.finish_sync(&[synced("a", 4, Vec::new())]);
    assert_eq!(offsets(&outbox), Vec::<u64>::new());
    assert_eq!(outbox.bytes(), 0);
}

#[test]
fn replayed_records_do_not_count_against_the_bound() {
    let stats = HubStats::default();
    let one = record("a", 10, None, 100).frame_len();
    let outbox = Outbox::new(one * 2);
    outbox.begin_sync();
    let history = (1..=10).map(|o| record("a", o, None, 100)).collect();
    outbox.finish_sync(&[synced("a", 10, history)]);
    outbox.push(
        &record("a", 11, None, 100),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    outbox.push(
        &record("a", 12, None, 100),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    assert_eq!(stats.slow_consumer_disconnects(), 0);
    assert_eq!(take_all(&outbox).unwrap().len(), 12);
}

#[test]
fn forgotten_topics_can_be_replayed_again() {
    let stats = HubStats::default();
    let outbox = Outbox::new(1 << 20);
    outbox.push(
        &record("a", 3, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    outbox.push(
        &record("b", 3, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    take_all(&outbox).unwrap();
    outbox.push(
        &record("a", 4, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    outbox.push(
        &record("b", 4, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    outbox.retain_topics(|t| t == "b");
    assert_eq!(outbox.bytes(), record("b", 4, None, 10).frame_len());
    assert_eq!(offsets(&outbox), [4]);
    outbox.begin_sync();
    let replays = [
        synced("a", 4, (1..=4).map(|o| record("a", o, None, 10)).collect()),
        synced("b", 4, (1..=4).map(|o| record("b", o, None, 10)).collect()),
    ];
    outbox.finish_sync(&replays);
    let got: Vec<_> = take_all(&outbox)
        .unwrap()
        .into_iter()
        .map(|t| (t.0, t.1))
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), 1),
            ("a".into(), 2),
            ("a".into(), 3),
            ("a".into(), 4)
        ]
    );
}

struct CountWakes(AtomicUsize);

impl Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn a_push_wakes_the_waiting_session_and_take_respects_the_budget() {
    let stats = HubStats::default();
    let outbox = Outbox::new(1 << 20);
    let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let mut out = VecDeque::new();
    assert!(outbox.poll_take(&mut cx, &mut out, 1).is_pending());
    outbox.push(
        &record("a", 1, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    outbox.push(
        &record("a", 2, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    assert!(outbox.poll_take(&mut cx, &mut out, 1).is_ready());
    assert_eq!(out.len(), 1);
    let closes = Arc::new(CountWakes(AtomicUsize::new(0)));
    let close_waker = Waker::from(closes.clone());
    let mut close_cx = Context::from_waker(&close_waker);
    assert!(outbox.poll_closed(&mut close_cx).is_pending());
    outbox.push(
        &record("a", 3, None, 10),
        SlowConsumerPolicy::Disconnect,
        &stats,
    );
    assert_eq!(closes.0.load(Ordering::SeqCst), 0);
    outbox.close();
    assert_eq!(closes.0.load(Ordering::SeqCst), 1);
    assert_eq!(outbox.poll_closed(&mut close_cx), Poll::Ready(SlowConsumer));
    assert_eq!(
        outbox.poll_take(&mut cx, &mut out, 1),
        Poll::Ready(Err(SlowConsumer))
    );
}
