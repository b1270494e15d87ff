//! Counters of the gateway, rendered in the Prometheus text format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tether_proto::handshake::HandshakeError;

use crate::bridge::metrics::BridgeMetrics;
use crate::config::RouteKind;

/// Why an opening handshake (or a connection before it) was refused: the `reason` label of
/// `tether_handshakes_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A malformed or incomplete upgrade request (400).
    BadRequest,
    /// A missing or unsupported `Sec-WebSocket-Version` (426).
    Version,
    /// A request head over the size or header-count limit (431).
    TooLarge,
    /// An `Origin` not in the allow-list (403).
    Origin,
    /// No token, or a bad one (401).
    Unauthorized,
    /// `limits.max_connections` reached (503).
    ConnectionLimit,
    /// `limits.max_connections_per_ip` reached (503).
    IpLimit,
    /// `limits.max_pending_per_ip` reached: a transport connection refused before its
    /// request (503, or closed on TLS).
    PendingLimit,
    /// The gateway is shutting down (503).
    ShuttingDown,
    /// TLS or the request head did not complete within `limits.handshake_timeout`.
    Timeout,
    /// The TLS handshake failed.
    Tls,
    /// The client offered none of a bridge route's subprotocols (400).
    Subprotocol,
    /// A bridge token that is unknown, or whose target is not allowed (403).
    BridgeTarget,
}

impl Refusal {
    const ALL: [Refusal; 13] = [
        Refusal::BadRequest,
        Refusal::Version,
        Refusal::TooLarge,
        Refusal::Origin,
        Refusal::Unauthorized,
        Refusal::ConnectionLimit,
        Refusal::IpLimit,
        Refusal::PendingLimit,
        Refusal::ShuttingDown,
        Refusal::Timeout,
        Refusal::Tls,
        Refusal::Subprotocol,
        Refusal::BridgeTarget,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::Version => "version",
            Refusal::TooLarge => "too_large",
            Refusal::Origin => "origin",
            Refusal::Unauthorized => "unauthorized",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::IpLimit => "ip_limit",
            Refusal::PendingLimit => "pending_limit",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::Timeout => "timeout",
            Refusal::Tls => "tls",
            Refusal::Subprotocol => "subprotocol",
            Refusal::BridgeTarget => "bridge_target",
        }
    }

    /// The reason for a handshake the engine refused, by the status it answers with.
    pub(crate) fn of(error: &HandshakeError) -> Refusal {
        match error.status() {
            403 => Refusal::Origin,
            426 => Refusal::Version,
            431 => Refusal::TooLarge,
            _ => Refusal::BadRequest,
        }
    }
}

/// Counters of one kind of WebSocket route.
#[derive(Default)]
struct RouteCounters {
    open: AtomicI64,
    total: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
}

/// The gateway's counters. Updates are relaxed atomic adds: cheap, and each counter is exact.
pub(crate) struct Metrics {
    http_connections_open: AtomicI64,
    connections_accepted: AtomicU64,
    accept_errors: AtomicU64,
    http_requests_total: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    routes: Vec<(RouteKind, RouteCounters)>,
    /// The counters of each bridge route, by path.
    bridges: Mutex<Vec<Arc<BridgeMetrics>>>,
    /// The proxy routes' upstream counters.
    pub(crate) proxy: crate::proxy::ProxyMetrics,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {
            http_connections_open: AtomicI64::new(0),
            connections_accepted: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            http_requests_total: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            refused: Default::default(),
            routes: RouteKind::NAMES
                .iter()
                .filter_map(|n| RouteKind::from_name(n))
                .map(|k| (k, RouteCounters::default()))
                .collect(),
            bridges: Mutex::default(),
            proxy: Default::default(),
        }
    }

    /// Renders these bridge routes' counters with the gateway's (replacing the last list).
    pub(crate) fn set_bridges(&self, bridges: Vec<Arc<BridgeMetrics>>) {
        *self.bridges.lock().unwrap_or_else(|p| p.into_inner()) = bridges;
    }

    /// The counters of the bridge route at `path`, if it is rendered.
    pub(crate) fn bridge(&self, path: &str) -> Option<Arc<BridgeMetrics>> {
        let bridges = self.bridges.lock().unwrap_or_else(|p| p.into_inner());
        bridges.iter().find(|b| b.route() == path).cloned()
    }

    fn route(&self, kind: RouteKind) -> Option<&RouteCounters> {
        self.routes.iter().find(|(k, _)| *k == kind).map(|(_, c)| c)
    }

    /// Counts bytes received on a connection.
    pub(crate) fn bytes_received(&self, n: usize) {
        self.bytes_in.fetch_add(n as u64, Relaxed);
    }

    /// Counts bytes sent on a connection.
    pub(crate) fn bytes_sent(&self, n: usize) {
        self.bytes_out.fetch_add(n as u64, Relaxed);
    }

    /// Counts a refused handshake or connection.
    pub(crate) fn refused(&self, why: Refusal) {
        if let Some(i) = Refusal::ALL.iter().position(|r| *r == why) {
            self.refused[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a failed `accept` (out of file descriptors, most often).
    pub(crate) fn accept_error(&self) {
        self.accept_errors.fetch_add(1, Relaxed);
    }

    /// Counts an HTTP request.
    pub(crate) fn request(&self) {
        self.http_requests_total.fetch_add(1, Relaxed);
    }

    /// Counts a transport connection until the guard drops.
    pub(crate) fn connection(self: &Arc<Self>) -> Gauge {
        self.connections_accepted.fetch_add(1, Relaxed);
        self.http_connections_open.fetch_add(1, Relaxed);
        Gauge {
            metrics: self.clone(),
            route: None,
        }
    }

    /// Counts an open WebSocket of `kind` until the guard drops.
    pub(crate) fn websocket(self: &Arc<Self>, kind: RouteKind) -> Gauge {
        if let Some(c) = self.route(kind) {
            c.total.fetch_add(1, Relaxed);
            c.open.fetch_add(1, Relaxed);
        }
        Gauge {
            metrics: self.clone(),
            route: Some(kind),
        }
    }

    /// Counts messages received and sent on a route whose service does not count its own.
    pub(crate) fn messages(&self, kind: RouteKind, received: u64, sent: u64) {
        if let Some(c) = self.route(kind) {
            c.messages_in.fetch_add(received, Relaxed);
            c.messages_out.fetch_add(sent, Relaxed);
        }
    }

    /// Appends the gateway's counters in the Prometheus text format (version 0.0.4).
    pub(crate) fn render(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, i64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let one = |v: i64| vec![(String::new(), v)];
        let load = |a: &AtomicU64| i64::try_from(a.load(Relaxed)).unwrap_or(i64::MAX);
        metric(
            "tether_connections_total",
            "counter",
            "TCP connections accepted (TLS included).",
            &one(load(&self.connections_accepted)),
        );
        metric(
            "tether_accept_errors_total",
            "counter",
            "Failed accepts (such as EMFILE, out of file descriptors); retried with backoff.",
            &one(load(&self.accept_errors)),
        );
        metric(
            "tether_http_connections_open",
            "gauge",
            "Connections open and speaking HTTP; upgraded ones count as WebSocket connections.",
            &one(self.http_connections_open.load(Relaxed)),
        );
        metric(
            "tether_http_requests_total",
            "counter",
            "HTTP requests received, upgrades included.",
            &one(load(&self.http_requests_total)),
        );
        let per_route = |f: &dyn Fn(&RouteCounters) -> i64| -> Vec<(String, i64)> {
            self.routes
                .iter()
                .map(|(k, c)| (format!("{{kind=\"{}\"}}", k.name()), f(c)))
                .collect()
        };
        // The hub counts pub/sub messages itself (its lines follow the gateway's); bridges
        // count bytes (tether_bridge_*).
        let per_counted_route = |f: &dyn Fn(&RouteCounters) -> i64| -> Vec<(String, i64)> {
            self.routes
                .iter()
                .filter(|(k, _)| !matches!(k, RouteKind::Pubsub | RouteKind::Bridge))
                .map(|(k, c)| (format!("{{kind=\"{}\"}}", k.name()), f(c)))
                .collect()
        };
        metric(
            "tether_websocket_connections_open",
            "gauge",
            "WebSocket connections open, by route kind.",
            &per_route(&|c| c.open.load(Relaxed)),
        );
        metric(
            "tether_websocket_connections_total",
            "counter",
            "WebSocket connections accepted, by route kind.",
            &per_route(&|c| load(&c.total)),
        );
        metric(
            "tether_websocket_messages_received_total",
            "counter",
            "WebSocket messages received, by route kind (pub/sub counts in the hub's lines).",
            &per_counted_route(&|c| load(&c.messages_in)),
        );
        metric(
            "tether_websocket_messages_sent_total",
            "counter",
            "WebSocket messages sent, by route kind (pub/sub counts in the hub's lines).",
            &per_counted_route(&|c| load(&c.messages_out)),
        );
        metric(
            "tether_handshakes_refused_total",
            "counter",
            "Connections and WebSocket handshakes refused, by reason.",
            &Refusal::ALL
                .iter()
                .zip(&self.refused)
                .map(|(r, n)| (format!("{{reason=\"{}\"}}", r.label()), load(n)))
                .collect::<Vec<_>>(),
        );
        metric(
            "tether_received_bytes_total",
            "counter",
            "Bytes received on all connections (after TLS decryption).",
            &one(load(&self.bytes_in)),
        );
        metric(
            "tether_sent_bytes_total",
            "counter",
            "Bytes sent on all connections (before TLS encryption).",
            &one(load(&self.bytes_out)),
        );
        let bridges = self.bridges.lock().unwrap_or_else(|p| p.into_inner());
        crate::bridge::metrics::render(&bridges, out);
        self.proxy.render(out);
    }
}

/// Decrements an "open" gauge when dropped.
pub(crate) struct Gauge {
    metrics: Arc<Metrics>,
    route: Option<RouteKind>,
}

impl Drop for Gauge {
    fn drop(&mut self) {
        match self.route {
            None => {
                self.metrics.http_connections_open.fetch_sub(1, Relaxed);
            }
            Some(kind) => {
                if let Some(c) = self.metrics.route(kind) {
                    c.open.fetch_sub(1, Relaxed);
                }
            }
        }
    }
}

/// A Prometheus label value: `\`, `"` and newlines escaped.
pub(crate) fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let metrics = Arc::new(Metrics::new());
        metrics.refused(Refusal::Origin);
        metrics.refused(Refusal::Origin);
        let _ws = metrics.websocket(RouteKind::Echo);
        metrics.messages(RouteKind::Echo, 3, 2);
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(
            out.contains("tether_handshakes_refused_total{reason=\"origin\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("tether_websocket_connections_open{kind=\"echo\"} 1\n"));
        assert!(out.contains("tether_websocket_messages_received_total{kind=\"echo\"} 3\n"));
        assert!(out.contains("# TYPE tether_http_connections_open gauge\n"));
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("tether_"), "{line}");
            value.parse::<i64>().unwrap();
        }
    }

    #[test]
    fn gauges_go_down_when_dropped() {
        let metrics = Arc::new(Metrics::new());
        drop(metrics.connection());
        let mut out = String::new();
        metrics.render(&mut out);
        assert!(out.contains("tether_http_connections_open 0\n"));
        assert!(out.contains("tether_connections_total 1\n"));
    }

    #[test]
    fn refusal_follows_the_status() {
        assert_eq!(
            Refusal::of(&HandshakeError::MissingVersion),
            Refusal::Version
        );
        assert_eq!(
            Refusal::of(&HandshakeError::MissingKey),
            Refusal::BadRequest
        );
        assert_eq!(
            Refusal::of(&HandshakeError::HeadTooLarge { limit: 1 }),
            Refusal::TooLarge
        );
    }
}
