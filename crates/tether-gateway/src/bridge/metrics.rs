//! Counters of each bridge route, rendered with the gateway's at `GET /metrics` with a
//! `route` label (the route's path).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::metrics::label_value as label;

/// Upper bounds (seconds) of the session duration histogram's buckets.
const DURATION_BUCKETS: [f64; 10] = [0.01, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 1800.0, 3600.0];

/// The counters of one bridge route.
pub(crate) struct BridgeMetrics {
    route: String,
    open: AtomicI64,
    sessions: AtomicU64,
    to_backend: AtomicU64,
    to_client: AtomicU64,
    connect_failures: AtomicU64,
    backend_errors: AtomicU64,
    refused: AtomicU64,
    buckets: [AtomicU64; DURATION_BUCKETS.len()],
    duration_micros: AtomicU64,
    ended: AtomicU64,
}

impl BridgeMetrics {
    /// Counters for the route at `path`.
    pub(crate) fn new(path: &str) -> Self {
        BridgeMetrics {
            route: path.to_string(),
            open: AtomicI64::new(0),
            sessions: AtomicU64::new(0),
            to_backend: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            backend_errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            buckets: Default::default(),
            duration_micros: AtomicU64::new(0),
            ended: AtomicU64::new(0),
        }
    }

    /// Counts a session as open until the guard drops; the drop records its duration.
    pub(crate) fn session(self: &Arc<Self>) -> SessionGuard {
        self.sessions.fetch_add(1, Relaxed);
        self.open.fetch_add(1, Relaxed);
        SessionGuard {
            metrics: self.clone(),
            started: tokio::time::Instant::now(),
        }
    }

    /// Counts bytes written to the backend.
    pub(crate) fn to_backend(&self, n: usize) {
        self.to_backend.fetch_add(n as u64, Relaxed);
    }

    /// Counts bytes read from the backend and sent to the client.
    pub(crate) fn to_client(&self, n: usize) {
        self.to_client.fetch_add(n as u64, Relaxed);
    }

    /// Counts a backend that could not be reached (resolution, connect, TLS, timeout).
    pub(crate) fn connect_failure(&self) {
        self.connect_failures.fetch_add(1, Relaxed);
    }

    /// Counts a backend connection that failed mid-session (reset or another read or write
    /// error; the client got 1014). A backend's EOF is a normal end, not counted here.
    pub(crate) fn backend_error(&self) {
        self.backend_errors.fetch_add(1, Relaxed);
    }

    /// The path of the route these counters belong to.
    pub(crate) fn route(&self) -> &str {
        &self.route
    }

    /// Counts a handshake refused by this route (token, target, subprotocol).
    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Relaxed);
    }

    fn record_duration(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        for (bound, bucket) in DURATION_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.duration_micros.fetch_add(micros, Relaxed);
        self.ended.fetch_add(1, Relaxed);
    }
}

/// An open bridge session; dropping it closes the count and records the duration.
pub(crate) struct SessionGuard {
    metrics: Arc<BridgeMetrics>,
    started: tokio::time::Instant,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.metrics.open.fetch_sub(1, Relaxed);
        self.metrics.record_duration(self.started.elapsed());
    }
}

/// Appends the families of every bridge route in the Prometheus text format (none without
/// bridge routes).
pub(crate) fn render(routes: &[Arc<BridgeMetrics>], out: &mut String) {
    if routes.is_empty() {
        return;
    }
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&BridgeMetrics) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in routes {
            let _ = writeln!(out, "{name}{{route=\"{}\"}} {}", label(&r.route), value(r));
        }
    };
    family(
        "tether_bridge_sessions_open",
        "gauge",
        "Bridge sessions open (WebSocket accepted, backend being reached or connected).",
        &|r| u64::try_from(r.open.load(Relaxed)).unwrap_or(0),
    );
    family(
        "tether_bridge_sessions_total",
        "counter",
        "Bridge sessions started.",
        &|r| r.sessions.load(Relaxed),
    );
    family(
        "tether_bridge_backend_sent_bytes_total",
        "counter",
        "Bytes written to backends (from the clients' binary messages).",
        &|r| r.to_backend.load(Relaxed),
    );
    family(
        "tether_bridge_client_sent_bytes_total",
        "counter",
        "Bytes read from backends and sent to the clients as binary messages.",
        &|r| r.to_client.load(Relaxed),
    );
    family(
        "tether_bridge_connect_failures_total",
        "counter",
        "Backends not reached: resolution, refused connection, timeout or TLS failure.",
        &|r| r.connect_failures.load(Relaxed),
    );
    family(
        "tether_bridge_backend_errors_total",
        "counter",
        "Backend connections lost mid-session: reset, or a read or write error (close 1014).",
        &|r| r.backend_errors.load(Relaxed),
    );
    family(
        "tether_bridge_handshakes_refused_total",
        "counter",
        "Bridge handshakes refused: missing subprotocol, unknown token, target not allowed.",
        &|r| r.refused.load(Relaxed),
    );
    let name = "tether_bridge_session_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} How long bridge sessions lasted.\n# TYPE {name} histogram"
    );
    for r in routes {
        let route = label(&r.route);
        for (bound, bucket) in DURATION_BUCKETS.iter().zip(&r.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = r.ended.load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}"
        );
        let sum = r.duration_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {sum}");
        let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {count}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = Arc::new(BridgeMetrics::new("/vnc"));
        metrics.to_backend(10);
        metrics.to_client(20);
        metrics.connect_failure();
        metrics.backend_error();
        metrics.record_duration(Duration::from_millis(200));
        metrics.record_duration(Duration::from_secs(7200));
        let open = metrics.session();
        let mut out = String::new();
        render(std::slice::from_ref(&metrics), &mut out);
        assert!(
            out.contains("tether_bridge_sessions_open{route=\"/vnc\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("tether_bridge_backend_sent_bytes_total{route=\"/vnc\"} 10\n"));
        assert!(out.contains("tether_bridge_client_sent_bytes_total{route=\"/vnc\"} 20\n"));
        assert!(out.contains("tether_bridge_connect_failures_total{route=\"/vnc\"} 1\n"));
        assert!(out.contains("tether_bridge_backend_errors_total{route=\"/vnc\"} 1\n"));
        let bucket = |le: &str| format!("_bucket{{route=\"/vnc\",le=\"{le}\"}} ");
        assert!(out.contains(&format!("{}0\n", bucket("0.1"))));
        assert!(out.contains(&format!("{}1\n", bucket("0.5"))));
        assert!(out.contains(&format!("{}1\n", bucket("3600"))));
        assert!(out.contains(&format!("{}2\n", bucket("+Inf"))));
        assert!(
            out.contains("tether_bridge_session_duration_seconds_sum{route=\"/vnc\"} 7200.2\n")
        );
        drop(open);
        let mut out = String::new();
        render(&[metrics], &mut out);
        assert!(out.contains("tether_bridge_sessions_open{route=\"/vnc\"} 0\n"));
        assert!(out.contains("tether_bridge_session_duration_seconds_count{route=\"/vnc\"} 3\n"));
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
