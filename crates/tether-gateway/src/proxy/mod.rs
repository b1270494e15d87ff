//! `kind = "proxy"` routes: a reverse proxy for WebSockets and plain HTTP.
//!
//! ```text
//! client ── upgrade /app/x ──▶ gateway ── upgrade /base/x ──▶ upstream
//!            (offers)            │  forwards the offers, X-Forwarded-*, Forwarded
//!        ◀── 101 (upstream's ◀───┘◀── 101 (its subprotocol and extensions)
//!             choices)
//! client ◀══ messages, close ══▶ relay ◀══ messages, close ══▶ upstream
//!            (pings answered on each leg)
//! client ── GET /app/page ─────▶ gateway ── GET /base/page ──▶ upstream (bodies streamed)
//! ```
//!
//! The handshake ([`websocket`]) answers the client only once the upstream has: `101` with
//! what the upstream chose, `502` when it refuses the upgrade or cannot be reached, `504`
//! after `upstream_timeout`. The relay ([`relay`]) moves whole messages (see
//! docs/ARCHITECTURE.md for why not frames). Plain requests ([`http`]) go over a fresh
//! HTTP/1.1 connection each.

mod headers;
mod http;
mod relay;
mod upstream;
mod websocket;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub(crate) use headers::ClientScheme;
pub(crate) use http::{ProxiedBody, forward as forward_http};
pub(crate) use upstream::Upstream;
pub(crate) use websocket::upgrade;

/// Why a proxied request failed before the upstream answered it: the `reason` label of
/// `tether_proxy_upstream_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpstreamFailure {
    /// The upstream answered an upgrade with something else than `101` (502).
    NotWebSocket,
    /// The upstream answered `101` but broke a handshake rule (502).
    BadHandshake,
    /// No connection (refused, DNS, TLS) or the connection broke before an answer (502).
    Unreachable,
    /// No answer within `upstream_timeout` (504).
    Timeout,
    /// A relayed WebSocket's upstream connection broke, or ended without a close frame, or
    /// broke the protocol, mid-stream (the client got 1014).
    Lost,
}

impl UpstreamFailure {
    const ALL: [UpstreamFailure; 5] = [
        UpstreamFailure::NotWebSocket,
        UpstreamFailure::BadHandshake,
        UpstreamFailure::Unreachable,
        UpstreamFailure::Timeout,
        UpstreamFailure::Lost,
    ];

    fn label(self) -> &'static str {
        match self {
            UpstreamFailure::NotWebSocket => "not_websocket",
            UpstreamFailure::BadHandshake => "bad_handshake",
            UpstreamFailure::Unreachable => "unreachable",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Lost => "lost",
        }
    }
}

/// The counters of the proxy routes, each family labelled with the route's path, so an
/// operator sees which upstream fails. A route's counters outlive a reload that removes it
/// (counters never go back), and are shared by a route of the same path after it.
#[derive(Default)]
pub(crate) struct ProxyMetrics {
    routes: std::sync::Mutex<Vec<Arc<RouteCounters>>>,
}

/// The counters of one proxy route.
pub(crate) struct RouteCounters {
    path: String,
    failures: [AtomicU64; UpstreamFailure::ALL.len()],
    http_requests: AtomicU64,
}

impl RouteCounters {
    /// Counts a failed attempt to reach the upstream.
    pub(crate) fn failed(&self, why: UpstreamFailure) {
        if let Some(i) = UpstreamFailure::ALL.iter().position(|f| *f == why) {
            self.failures[i].fetch_add(1, Relaxed);
        }
    }

    /// Counts a plain HTTP request proxied (whatever the upstream answered).
    pub(crate) fn http_request(&self) {
        self.http_requests.fetch_add(1, Relaxed);
    }
}

impl ProxyMetrics {
    /// The counters of the proxy route at `path` (created at its first use; routes are few,
    /// bounded by the config).
    pub(crate) fn route(&self, path: &str) -> Arc<RouteCounters> {
        let mut routes = crate::hub::lock(&self.routes);
        if let Some(counters) = routes.iter().find(|c| c.path == path) {
            return counters.clone();
        }
        let counters = Arc::new(RouteCounters {
            path: path.to_string(),
            failures: Default::default(),
            http_requests: AtomicU64::new(0),
        });
        routes.push(counters.clone());
        counters
    }

    /// Appends the counters in the Prometheus text format (nothing before a proxy route was
    /// used).
    pub(crate) fn render(&self, out: &mut String) {
        let routes = crate::hub::lock(&self.routes).clone();
        if routes.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP tether_proxy_upstream_failures_total Proxied handshakes and requests that got \
             no usable answer from the upstream, and relayed WebSockets whose upstream was \
             lost mid-stream (lost), by route and reason.\n\
             # TYPE tether_proxy_upstream_failures_total counter"
        );
        for route in &routes {
            for (why, count) in UpstreamFailure::ALL.iter().zip(&route.failures) {
                let _ = writeln!(
                    out,
                    "tether_proxy_upstream_failures_total{{route=\"{}\",reason=\"{}\"}} {}",
                    crate::metrics::label_value(&route.path),
                    why.label(),
                    count.load(Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tether_proxy_http_requests_total Plain HTTP requests forwarded to an upstream, by route.\n\
             # TYPE tether_proxy_http_requests_total counter"
        );
        for route in &routes {
            let _ = writeln!(
                out,
                "tether_proxy_http_requests_total{{route=\"{}\"}} {}",
                crate::metrics::label_value(&route.path),
                route.http_requests.load(Relaxed)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_per_route_and_rendered_with_its_path() {
        let metrics = ProxyMetrics::default();
        let mut out = String::new();
        metrics.render(&mut out);
        assert_eq!(out, "", "no family before a proxy route is used");
        metrics.route("/app").failed(UpstreamFailure::Lost);
        metrics.route("/app").failed(UpstreamFailure::Lost);
        metrics.route("/other\"x").failed(UpstreamFailure::Timeout);
        metrics.route("/other\"x").http_request();
        metrics.render(&mut out);
        for line in [
            "tether_proxy_upstream_failures_total{route=\"/app\",reason=\"lost\"} 2\n",
            "tether_proxy_upstream_failures_total{route=\"/app\",reason=\"timeout\"} 0\n",
            "tether_proxy_upstream_failures_total{route=\"/other\\\"x\",reason=\"timeout\"} 1\n",
            "tether_proxy_upstream_failures_total{route=\"/other\\\"x\",reason=\"lost\"} 0\n",
            "tether_proxy_http_requests_total{route=\"/app\"} 0\n",
            "tether_proxy_http_requests_total{route=\"/other\\\"x\"} 1\n",
        ] {
            assert!(out.contains(line), "{line} in {out}");
        }
        assert_eq!(out.matches("# TYPE").count(), 2, "{out}");
    }
}
