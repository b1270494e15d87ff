//! The result of a run: printed as text for people or as one JSON object for scripts.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::recorder::Totals;
use super::system::{CpuMeter, LOAD_BOUND_PERCENT};

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    /// `echo`, `connect`, `idle` or `fanout`.
    pub mode: &'static str,
    /// The server's URL.
    pub url: String,
    /// The workload's parameters, in the order printed (`connections`, `size`...).
    pub parameters: Vec<(&'static str, Value)>,
    /// The measured window.
    pub duration: Duration,
    /// Messages (handshakes for `connect`, deliveries for `fanout`) in the window.
    pub messages: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Their latencies in microseconds.
    pub histogram: Histogram<u64>,
    /// Things that went wrong (wrong echoes, failed connections, protocol errors).
    pub errors: u64,
    /// Messages that never arrived.
    pub drops: u64,
    /// The first error, for the text report.
    pub first_error: Option<String>,
    /// The load tool's CPU over the run, in percent of its threads' wall time.
    pub load_cpu_percent: Option<f64>,
    /// Mode-specific results (`server_rss_before_kib`, `deliveries`...).
    pub results: Vec<(&'static str, Value)>,
}

impl Report {
    /// A report of `totals` over a window of `duration`, with the CPU measured by `cpu`.
    pub fn new(
        mode: &'static str,
        url: &str,
        totals: &Totals,
        duration: Duration,
        cpu: &CpuMeter,
        threads: usize,
    ) -> Report {
        Report {
            mode,
            url: url.to_string(),
            parameters: Vec::new(),
            duration,
            messages: totals.messages.load(Ordering::Relaxed),
            bytes: totals.bytes.load(Ordering::Relaxed),
            histogram: totals.histogram(),
            errors: totals.errors.load(Ordering::Relaxed),
            drops: totals.drops.load(Ordering::Relaxed),
            first_error: totals.first_error(),
            load_cpu_percent: cpu.percent(threads),
            results: Vec::new(),
        }
    }

    /// Whether the load tool itself was the bottleneck.
    pub fn load_bound(&self) -> bool {
        self.load_cpu_percent
            .is_some_and(|percent| percent >= LOAD_BOUND_PERCENT)
    }

    fn seconds(&self) -> f64 {
        self.duration.as_secs_f64()
    }

    fn per_second(&self, count: u64) -> f64 {
        if self.seconds() > 0.0 {
            count as f64 / self.seconds()
        } else {
            0.0
        }
    }

    fn latency(&self) -> [(&'static str, u64); 4] {
        let h = &self.histogram;
        let q = |q: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(q)
            }
        };
        [
            ("p50", q(0.50)),
            ("p99", q(0.99)),
            ("p999", q(0.999)),
            ("max", if h.is_empty() { 0 } else { h.max() }),
        ]
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let mut object = Map::new();
        object.insert("mode".into(), json!(self.mode));
        object.insert("url".into(), json!(self.url));
        for (key, value) in &self.parameters {
            object.insert((*key).into(), value.clone());
        }
        object.insert("duration_s".into(), json!(round3(self.seconds())));
        object.insert("messages".into(), json!(self.messages));
        object.insert(
            "messages_per_s".into(),
            json!(round3(self.per_second(self.messages))),
        );
        object.insert(
            "mb_per_s".into(),
            json!(round3(self.per_second(self.bytes) / 1e6)),
        );
        let latency: Map<String, Value> = self
            .latency()
            .iter()
            .map(|(name, value)| ((*name).to_string(), json!(value)))
            .collect();
        object.insert("latency_us".into(), Value::Object(latency));
        object.insert("errors".into(), json!(self.errors));
        object.insert("drops".into(), json!(self.drops));
        if let Some(error) = &self.first_error {
            object.insert("first_error".into(), json!(error));
        }
        for (key, value) in &self.results {
            object.insert((*key).into(), value.clone());
        }
        object.insert(
            "load_cpu_percent".into(),
            json!(self.load_cpu_percent.map(round3)),
        );
        object.insert("load_bound".into(), json!(self.load_bound()));
        Value::Object(object)
    }

    /// Prints the report on stdout (JSON or text), and the load-bound warning on stderr.
    pub fn print(&self, as_json: bool) {
        if self.load_bound() {
            eprintln!(
                "tether bench: warning: the load tool used {:.0}% of its CPU time: these \
                 figures measure the load tool, not the server (add --threads or load processes)",
                self.load_cpu_percent.unwrap_or_default()
            );
        }
        if as_json {
            println!("{}", self.to_json());
        } else {
            println!("{}", self.to_text());
        }
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = format!("tether bench {} {}\n", self.mode, self.url);
        let parameters: Vec<String> = self
            .parameters
            .iter()
            .map(|(key, value)| format!("{key} {value}"))
            .collect();
        if !parameters.is_empty() {
            out += &format!("  {}\n", parameters.join(", "));
        }
        out += &format!(
            "  {} messages in {:.2} s: {:.0} messages/s, {:.2} MB/s of payload\n",
            self.messages,
            self.seconds(),
            self.per_second(self.messages),
            self.per_second(self.bytes) / 1e6
        );
        let latency: Vec<String> = self
            .latency()
            .iter()
            .map(|(name, us)| format!("{name} {}", format_us(*us)))
            .collect();
        out += &format!("  latency {}\n", latency.join(", "));
        for (key, value) in &self.results {
            out += &format!("  {key}: {value}\n");
        }
        out += &format!("  errors {}, drops {}", self.errors, self.drops);
        if let Some(error) = &self.first_error {
            out += &format!(" (first error: {error})");
        }
        if let Some(percent) = self.load_cpu_percent {
            out += &format!("\n  load tool CPU {percent:.0}%");
        }
        out
    }
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// `850 µs`, `12.3 ms`, `1.20 s`.
fn format_us(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::bench::recorder::Recorder;

    #[test]
    fn the_json_has_every_common_field() {
        let now = Instant::now();
        let totals = Totals::new(now, now + Duration::from_secs(10));
        {
            let mut recorder = Recorder::new(&totals);
            for i in 1..=1000 {
                recorder.record(now, Duration::from_micros(i), 16);
            }
        }
        let mut report = Report::new(
            "echo",
            "ws://x/",
            &totals,
            Duration::from_secs(2),
            &CpuMeter::start(),
            1,
        );
        report.parameters.push(("connections", json!(4)));
        let json = report.to_json();
        assert_eq!(json["messages"], 1000);
        assert_eq!(json["messages_per_s"], 500.0);
        assert_eq!(json["mb_per_s"], 0.008);
        assert_eq!(json["connections"], 4);
        let p50 = json["latency_us"]["p50"].as_u64().unwrap();
        assert!((495..=505).contains(&p50), "{p50}");
        assert_eq!(json["latency_us"]["max"], 1000);
        assert_eq!(json["errors"], 0);
        assert!(json["load_bound"].is_boolean());
        assert!(report.to_text().contains("500 messages/s"));
    }
}
