//! Counting and timing without slowing the run: each connection task records into a small
//! fixed batch of its own and folds it into the shared totals and histogram now and then.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The highest latency the histogram tells apart: one hour, in microseconds.
const HIGHEST_LATENCY_US: u64 = 3_600_000_000;

/// Latencies a task keeps before folding them into the shared histogram.
const BATCH: usize = 256;

/// How often a task folds its counts in at least, so the progress line stays current.
const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// The run's totals, shared by every task.
#[derive(Debug)]
pub struct Totals {
    /// The measured window starts here (after the warmup)...
    pub measure_from: Instant,
    /// ...and ends here.
    pub measure_until: Instant,
    /// Messages (or handshakes, or deliveries) completed in the window.
    pub messages: AtomicU64,
    /// Payload bytes of those messages.
    pub bytes: AtomicU64,
    /// Wrong echoes, failed connections, protocol errors: anything that should not happen.
    pub errors: AtomicU64,
    /// Messages that never arrived.
    pub drops: AtomicU64,
    /// Messages that arrived twice.
    pub duplicates: AtomicU64,
    histogram: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

impl Totals {
    /// Empty totals for a window from `measure_from` to `measure_until`.
    pub fn new(measure_from: Instant, measure_until: Instant) -> Totals {
        let histogram =
            Histogram::new_with_bounds(1, HIGHEST_LATENCY_US, 3).expect("valid histogram bounds");
        Totals {
            measure_from,
            measure_until,
            messages: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            histogram: Mutex::new(histogram),
            first_error: Mutex::new(None),
        }
    }

    /// Counts an error; the first one's text is kept for the report.
    pub fn error(&self, message: impl FnOnce() -> String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(message);
        }
    }

    /// The first error counted, if any.
    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A copy of the latency histogram.
    pub fn histogram(&self) -> Histogram<u64> {
        self.histogram
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether `at` falls in the measured window.
    pub fn in_window(&self, at: Instant) -> bool {
        at >= self.measure_from && at <= self.measure_until
    }
}

/// One task's batch of counts and latencies, folded into [`Totals`] when full, every
/// quarter second, and when dropped.
#[derive(Debug)]
pub struct Recorder<'a> {
    totals: &'a Totals,
    latencies_us: [u64; BATCH],
    len: usize,
    messages: u64,
    bytes: u64,
    last_flush: Instant,
}

impl<'a> Recorder<'a> {
    /// A recorder folding into `totals`.
    pub fn new(totals: &'a Totals) -> Recorder<'a> {
        Recorder {
            totals,
            latencies_us: [0; BATCH],
            len: 0,
            messages: 0,
            bytes: 0,
            last_flush: Instant::now(),
        }
    }

    /// The totals this recorder folds into.
    pub fn totals(&self) -> &'a Totals {
        self.totals
    }

    /// Records a message of `bytes` payload that took `latency` and completed at `now`;
    /// outside the measured window it is not counted.
    pub fn record(&mut self, now: Instant, latency: Duration, bytes: usize) {
        if !self.totals.in_window(now) {
            return;
        }
        self.latencies_us[self.len] = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.len += 1;
        self.messages += 1;
        self.bytes += bytes as u64;
        if self.len == BATCH || now.duration_since(self.last_flush) >= FLUSH_INTERVAL {
            self.flush(now);
        }
    }

    /// Records a message of `bytes` payload that took `latency_us` microseconds, with no
    /// check of the window or the clock: for callers that take many messages at one time
    /// and check that time once ([`Totals::in_window`], then [`Self::tick`]).
    pub fn record_us(&mut self, latency_us: u64, bytes: usize) {
        self.latencies_us[self.len] = latency_us;
        self.len += 1;
        self.messages += 1;
        self.bytes += bytes as u64;
        if self.len == BATCH {
            self.fold_latencies();
        }
    }

    /// Folds the counts in if the last time was long enough ago (for [`Self::record_us`]).
    pub fn tick(&mut self, now: Instant) {
        if now.duration_since(self.last_flush) >= FLUSH_INTERVAL {
            self.flush(now);
        }
    }

    /// Folds the batch of latencies into the shared histogram.
    fn fold_latencies(&mut self) {
        let mut histogram = self
            .totals
            .histogram
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for &latency in &self.latencies_us[..self.len] {
            histogram.saturating_record(latency);
        }
        self.len = 0;
    }

    /// Folds the batch into the totals.
    pub fn flush(&mut self, now: Instant) {
        self.last_flush = now;
        if self.len > 0 {
            self.fold_latencies();
        }
        self.totals
            .messages
            .fetch_add(std::mem::take(&mut self.messages), Ordering::Relaxed);
        self.totals
            .bytes
            .fetch_add(std::mem::take(&mut self.bytes), Ordering::Relaxed);
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        self.flush(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_window_counts_and_drops_flush() {
        let start = Instant::now();
        let totals = Totals::new(
            start + Duration::from_secs(1),
            start + Duration::from_secs(2),
        );
        {
            let mut recorder = Recorder::new(&totals);
            recorder.record(start, Duration::from_micros(5), 10);
            for i in 0..300 {
                let at = start + Duration::from_millis(1000 + i);
                recorder.record(at, Duration::from_micros(100 + i), 16);
            }
        }
        assert_eq!(totals.messages.load(Ordering::Relaxed), 300);
        assert_eq!(totals.bytes.load(Ordering::Relaxed), 300 * 16);
        let histogram = totals.histogram();
        assert_eq!(histogram.len(), 300);
        assert!(histogram.min() >= 100 && histogram.max() <= 400);
    }

    #[test]
    fn unchecked_records_fold_in_batches_and_on_tick() {
        let start = Instant::now();
        let totals = Totals::new(start, start + Duration::from_secs(10));
        let mut recorder = Recorder::new(&totals);
        for i in 0..(BATCH as u64 + 10) {
            recorder.record_us(50 + i, 16);
        }
        assert_eq!(
            totals.histogram().len(),
            BATCH as u64,
            "a full batch folds at once"
        );
        recorder.tick(start);
        assert_eq!(totals.messages.load(Ordering::Relaxed), 0, "not yet due");
        recorder.tick(recorder.last_flush + FLUSH_INTERVAL);
        assert_eq!(totals.messages.load(Ordering::Relaxed), BATCH as u64 + 10);
        assert_eq!(
            totals.bytes.load(Ordering::Relaxed),
            (BATCH as u64 + 10) * 16
        );
        assert_eq!(totals.histogram().len(), BATCH as u64 + 10);
    }

    #[test]
    fn the_first_error_is_kept() {
        let now = Instant::now();
        let totals = Totals::new(now, now);
        totals.error(|| "one".into());
        totals.error(|| "two".into());
        assert_eq!(totals.errors.load(Ordering::Relaxed), 2);
        assert_eq!(totals.first_error().as_deref(), Some("one"));
    }
}
