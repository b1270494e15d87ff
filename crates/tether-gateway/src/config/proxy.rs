//! The keys of `kind = "proxy"` routes: the upstream URL, its certificate authority and the
//! timeout of reaching it.

use std::path::PathBuf;
use std::time::Duration;

use super::routes::{RouteConfig, RouteKind};

/// How long a proxy route waits for its upstream (connect, TLS, the answer to the handshake or
/// the head of an HTTP response) when `upstream_timeout` is not set.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// An upstream URL of a proxy route, taken apart: `ws://host:port/base` or `wss://...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// `wss://`: TLS towards the upstream.
    pub secure: bool,
    /// Host name or IP address (without the brackets of an IPv6 literal).
    pub host: String,
    /// Port (default 80 for `ws://`, 443 for `wss://`).
    pub port: u16,
    /// `host[:port]` as it goes in `Host` (RFC 6455 §4.1: the port only when not the default).
    pub authority: String,
    /// The path the route's own path maps onto, without a trailing `/` (empty for `/`).
    pub base_path: String,
}

impl UpstreamUrl {
    /// Parses `ws://host[:port][/path]` or `wss://...`; no query, fragment or user info.
    pub fn parse(url: &str) -> Result<UpstreamUrl, String> {
        let (secure, rest) = if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else {
            return Err(format!(
                "{url:?} must start with ws:// or wss:// (plain HTTP requests are proxied to \
                 the same host as http:// or https://)"
            ));
        };
        if rest.contains(['?', '#', ' ', '\\', '@']) {
            return Err(format!(
                "{url:?} must be scheme://host[:port][/path]: no query, fragment, user info or \
                 spaces"
            ));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("{url:?} has no valid host[:port]"))?;
        let default_port = if secure { 443 } else { 80 };
        let port = port.unwrap_or(default_port);
        let authority = if port == default_port {
            bracket(&host)
        } else {
            format!("{}:{port}", bracket(&host))
        };
        Ok(UpstreamUrl {
            secure,
            host,
            port,
            authority,
            base_path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The upstream request target for `rest`, the request path below the route's own path
    /// (empty or starting with `/`), and the request's query: `/app/x?q` on a route `/app`
    /// with upstream `.../base` becomes `/base/x?q`.
    pub fn target(&self, rest: &str, query: Option<&str>) -> String {
        let mut target = format!("{}{rest}", self.base_path);
        if target.is_empty() {
            target.push('/');
        }
        if let Some(q) = query {
            target.push('?');
            target.push_str(q);
        }
        target
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains([':', '[', ']']) && !authority.starts_with('[') {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host.to_string(), port))
}

/// The proxy keys of one route, checked: errors name the key below `routes[i]`.
pub(crate) fn validate(route: &RouteConfig) -> Result<(), (&'static str, String)> {
    if route.kind != RouteKind::Proxy {
        let stray = [
            ("upstream", route.upstream.is_some()),
            ("upstream_ca_file", route.upstream_ca_file.is_some()),
            ("upstream_timeout", route.upstream_timeout.is_some()),
        ];
        if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
            return Err((key, "applies only to kind = \"proxy\" routes".into()));
        }
        return Ok(());
    }
    let Some(upstream) = &route.upstream else {
        return Err((
            "upstream",
            "a proxy route needs an upstream such as \"ws://127.0.0.1:3000/\"".into(),
        ));
    };
    let url = UpstreamUrl::parse(upstream).map_err(|p| ("upstream", p))?;
    if route.upstream_ca_file.is_some() && !url.secure {
        return Err((
            "upstream_ca_file",
            "applies only to a wss:// upstream".into(),
        ));
    }
    if route.upstream_timeout.is_some_and(|t| t.is_zero()) {
        return Err(("upstream_timeout", "must be longer than 0".into()));
    }
    if route.subprotocols.is_some() {
        return Err((
            "subprotocols",
            "a proxy route forwards the client's subprotocols and the upstream chooses; \
             remove this key"
                .into(),
        ));
    }
    Ok(())
}

/// What a proxy route needs from its config, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProxySettings {
    pub(crate) url: UpstreamUrl,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) timeout: Duration,
}

impl ProxySettings {
    /// The settings of a validated proxy route; `None` for other kinds.
    pub(crate) fn of(route: &RouteConfig) -> Option<ProxySettings> {
        let url = UpstreamUrl::parse(route.upstream.as_deref()?).ok()?;
        Some(ProxySettings {
            url,
            ca_file: route.upstream_ca_file.clone(),
            timeout: route.upstream_timeout.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_taken_apart() {
        let u = UpstreamUrl::parse("ws://127.0.0.1:3000/base/").unwrap();
        assert_eq!(
            (u.secure, u.host.as_str(), u.port, u.authority.as_str()),
            (false, "127.0.0.1", 3000, "127.0.0.1:3000")
        );
        assert_eq!(u.base_path, "/base");
        let u = UpstreamUrl::parse("wss://[::1]").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.authority.as_str()),
            ("::1", 443, "[::1]")
        );
        assert_eq!(u.base_path, "");
        for bad in [
            "http://h/",
            "ws://",
            "ws://h:0/",
            "ws://h:99999/",
            "ws://h/?q",
            "ws://u@h/",
            "ws://::1/",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_path_below_the_route_maps_onto_the_upstream_path() {
        let base = UpstreamUrl::parse("ws://h/base").unwrap();
        assert_eq!(base.target("/x", Some("q=1")), "/base/x?q=1");
        assert_eq!(base.target("", None), "/base");
        assert_eq!(base.target("/", None), "/base/");
        let root = UpstreamUrl::parse("ws://h:1").unwrap();
        assert_eq!(root.target("", None), "/");
        assert_eq!(root.target("/a/b", Some("")), "/a/b?");
    }

    #[test]
    fn proxy_keys_are_checked() {
        let mut route = RouteConfig::new("/app", RouteKind::Proxy);
        assert_eq!(validate(&route).unwrap_err().0, "upstream");
        route.upstream = Some("ws://127.0.0.1:3000".into());
        assert_eq!(validate(&route), Ok(()));
        route.upstream_ca_file = Some("ca.pem".into());
        assert_eq!(validate(&route).unwrap_err().0, "upstream_ca_file");
        route.upstream = Some("wss://127.0.0.1:3000".into());
        route.upstream_timeout = Some(Duration::ZERO);
        assert_eq!(validate(&route).unwrap_err().0, "upstream_timeout");
        route.upstream_timeout = Some(Duration::from_secs(1));
        route.subprotocols = Some(vec!["chat".into()]);
        assert_eq!(validate(&route).unwrap_err().0, "subprotocols");
        let mut echo = RouteConfig::new("/e", RouteKind::Echo);
        echo.upstream = Some("ws://h".into());
        assert_eq!(validate(&echo).unwrap_err().0, "upstream");
    }
}
