//! The hub's counters and its publish-to-send latency histogram, in Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets plus the `+Inf` one.
const SLOTS: usize = LATENCY_BUCKETS.len() + 1;

/// Counters of the hub, updated without locks.
#[derive(Debug, Default)]
pub struct HubStats {
    publishes: AtomicU64,
    deliveries: AtomicU64,
    dropped: AtomicU64,
    slow_consumer_disconnects: AtomicU64,
    subscriptions: AtomicUsize,
    latency: Histogram,
}

#[derive(Debug, Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; SLOTS],
    sum_nanos: AtomicU64,
}

/// A copy of the latency histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencySnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, ending with
    /// `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

impl HubStats {
    /// Messages published (accepted by the backplane).
    pub fn publishes(&self) -> u64 {
        self.publishes.load(Relaxed)
    }

    /// Messages handed to subscribers' sockets.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Relaxed)
    }

    /// Messages dropped from slow subscribers' queues (`drop_oldest`, `keep_latest_per_key`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Connections closed with 1008 because their queue overflowed.
    pub fn slow_consumer_disconnects(&self) -> u64 {
        self.slow_consumer_disconnects.load(Relaxed)
    }

    /// Current subscriptions on this node.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions.load(Relaxed)
    }

    /// The publish-to-send latency histogram.
    pub fn latency(&self) -> LatencySnapshot {
        let mut cumulative = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(&self.latency.counts)
            .map(|(le, count)| {
                cumulative += count.load(Relaxed);
                (le, cumulative)
            })
            .collect();
        LatencySnapshot {
            buckets,
            sum_seconds: self.latency.sum_nanos.load(Relaxed) as f64 / 1e9,
            count: cumulative,
        }
    }

    pub(crate) fn count_publish(&self) {
        self.publishes.fetch_add(1, Relaxed);
    }

    pub(crate) fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }

    pub(crate) fn count_slow_consumer_disconnect(&self) {
        self.slow_consumer_disconnects.fetch_add(1, Relaxed);
    }

    pub(crate) fn add_subscriptions(&self, n: usize) {
        self.subscriptions.fetch_add(n, Relaxed);
    }

    pub(crate) fn remove_subscriptions(&self, n: usize) {
        self.subscriptions.fetch_sub(n, Relaxed);
    }

    /// Adds a session's batch of deliveries and their latencies.
    pub(crate) fn merge(&self, batch: &mut DeliveryBatch) {
        if batch.deliveries == 0 {
            return;
        }
        self.deliveries.fetch_add(batch.deliveries, Relaxed);
        for (slot, n) in self.latency.counts.iter().zip(&batch.counts) {
            if *n > 0 {
                slot.fetch_add(*n, Relaxed);
            }
        }
        self.latency.sum_nanos.fetch_add(batch.sum_nanos, Relaxed);
        *batch = DeliveryBatch::default();
    }

    /// Appends the Prometheus text format of every metric; `topics` is the topic gauge.
    pub(crate) fn render(&self, out: &mut String, topics: usize) {
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        metric(
            "tether_pubsub_publishes_total",
            "counter",
            "Messages published.",
            self.publishes().to_string(),
        );
        metric(
            "tether_pubsub_deliveries_total",
            "counter",
            "Messages handed to subscribers' sockets.",
            self.deliveries().to_string(),
        );
        metric(
            "tether_pubsub_dropped_total",
            "counter",
            "Messages dropped from slow subscribers' queues.",
            self.dropped().to_string(),
        );
        metric(
            "tether_pubsub_slow_consumer_disconnects_total",
            "counter",
            "Connections closed because their outbound queue overflowed.",
            self.slow_consumer_disconnects().to_string(),
        );
        metric(
            "tether_pubsub_subscriptions",
            "gauge",
            "Current subscriptions.",
            self.subscriptions().to_string(),
        );
        metric(
            "tether_pubsub_topics",
            "gauge",
            "Topics known.",
            topics.to_string(),
        );
        let name = "tether_pubsub_publish_to_send_seconds";
        let latency = self.latency();
        let _ = writeln!(
            out,
            "# HELP {name} Time from publish to the frame being handed to a subscriber's socket.\n# TYPE {name} histogram"
        );
        for (le, count) in &latency.buckets {
            let le = if le.is_infinite() {
                "+Inf".to_owned()
            } else {
                le.to_string()
            };
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_sum {}", latency.sum_seconds);
        let _ = writeln!(out, "{name}_count {}", latency.count);
    }
}

/// Deliveries counted by one session between merges, so fan-out to many connections does
/// not contend on shared counters message by message.
#[derive(Debug, Default)]
pub(crate) struct DeliveryBatch {
    deliveries: u64,
    counts: [u64; SLOTS],
    sum_nanos: u64,
}

impl DeliveryBatch {
    /// One message handed to the socket; `latency` is `None` for replayed history.
    pub(crate) fn observe(&mut self, latency: Option<Duration>) {
        self.deliveries += 1;
        if let Some(latency) = latency {
            let seconds = latency.as_secs_f64();
            let slot = LATENCY_BUCKETS
                .iter()
                .position(|&le| seconds <= le)
                .unwrap_or(SLOTS - 1);
            self.counts[slot] += 1;
            self.sum_nanos = self
                .sum_nanos
                .saturating_add(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_cumulative_buckets() {
        let stats = HubStats::default();
        let mut batch = DeliveryBatch::default();
        batch.observe(Some(Duration::from_micros(50)));
        batch.observe(Some(Duration::from_micros(100)));
        batch.observe(Some(Duration::from_millis(3)));
        batch.observe(Some(Duration::from_secs(60)));
        batch.observe(None);
        stats.merge(&mut batch);
        assert_eq!(stats.deliveries(), 5);
        let latency = stats.latency();
        assert_eq!(latency.count, 4);
        assert_eq!(latency.buckets[0], (0.0001, 2));
        assert_eq!(latency.buckets[4], (0.0025, 2));
        assert_eq!(latency.buckets[5], (0.005, 3));
        assert_eq!(latency.buckets[15], (10.0, 3));
        assert_eq!(latency.buckets[16], (f64::INFINITY, 4));
        assert!((latency.sum_seconds - 60.00315).abs() < 1e-9);
        // The batch was reset by the merge.
        stats.merge(&mut batch);
        assert_eq!(stats.deliveries(), 5);
    }

    #[test]
    fn render_writes_every_metric_with_help_and_type() {
        let stats = HubStats::default();
        stats.count_publish();
        stats.count_dropped(3);
        stats.count_slow_consumer_disconnect();
        stats.add_subscriptions(2);
        stats.remove_subscriptions(1);
        let mut out = String::new();
        stats.render(&mut out, 7);
        for line in [
            "# TYPE tether_pubsub_publishes_total counter",
            "tether_pubsub_publishes_total 1",
            "tether_pubsub_deliveries_total 0",
            "tether_pubsub_dropped_total 3",
            "tether_pubsub_slow_consumer_disconnects_total 1",
            "# TYPE tether_pubsub_subscriptions gauge",
            "tether_pubsub_subscriptions 1",
            "tether_pubsub_topics 7",
            "# TYPE tether_pubsub_publish_to_send_seconds histogram",
            "tether_pubsub_publish_to_send_seconds_bucket{le=\"0.0001\"} 0",
            "tether_pubsub_publish_to_send_seconds_bucket{le=\"10\"} 0",
            "tether_pubsub_publish_to_send_seconds_bucket{le=\"+Inf\"} 0",
            "tether_pubsub_publish_to_send_seconds_sum 0",
            "tether_pubsub_publish_to_send_seconds_count 0",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        assert_eq!(out.matches("# HELP ").count(), 7);
    }
}
