//! `[[routes]]`: which WebSocket service answers at which path.

use serde::Deserialize;
use serde::de::{self, Deserializer};

use super::bridge::{self, BINARY_SUBPROTOCOL, BridgeConfig};
use crate::protocol::SUBPROTOCOL;

/// What a WebSocket route does with its connections.
///
/// Adding a kind: a variant here, its name in [`RouteKind::NAMES`] and [`RouteKind::name`], its
/// default subprotocols in [`RouteKind::default_subprotocols`], and its session in
/// `crate::websocket`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RouteKind {
    /// Topic publish/subscribe through the hub (`tether.pubsub.v1`).
    Pubsub,
    /// Every text and binary message comes back as it went out.
    Echo,
    /// Each connection opens a TCP connection to a backend and carries its bytes in binary
    /// messages both ways (`crate::bridge`).
    Bridge,
    /// A reverse proxy: WebSockets and plain HTTP requests below the route's path go to the
    /// route's `upstream` (`crate::proxy`).
    Proxy,
}

impl RouteKind {
    /// The names accepted in `kind = "..."`, in the order error messages list them.
    pub const NAMES: &'static [&'static str] = &["pubsub", "echo", "bridge", "proxy"];

    /// The kind named `name` in a config file.
    pub fn from_name(name: &str) -> Option<RouteKind> {
        match name {
            "pubsub" => Some(RouteKind::Pubsub),
            "echo" => Some(RouteKind::Echo),
            "bridge" => Some(RouteKind::Bridge),
            "proxy" => Some(RouteKind::Proxy),
            _ => None,
        }
    }

    /// The name used in config files and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            RouteKind::Pubsub => "pubsub",
            RouteKind::Echo => "echo",
            RouteKind::Bridge => "bridge",
            RouteKind::Proxy => "proxy",
        }
    }

    /// Whether a route of this kind also answers every path below its own (`/app` serves
    /// `/app/x/y`), as bridge routes (a token in the path) and proxy routes (a mounted
    /// application) do. The other kinds match their path exactly.
    pub fn matches_prefix(self) -> bool {
        match self {
            RouteKind::Pubsub | RouteKind::Echo => false,
            RouteKind::Bridge | RouteKind::Proxy => true,
        }
    }

    /// The subprotocols a route of this kind speaks when the config names none.
    pub fn default_subprotocols(self) -> Vec<String> {
        match self {
            RouteKind::Pubsub => vec![SUBPROTOCOL.to_string()],
            RouteKind::Echo => vec![crate::inspect::SUBPROTOCOL.to_string()],
            RouteKind::Bridge => vec![BINARY_SUBPROTOCOL.to_string()],
            RouteKind::Proxy => Vec::new(),
        }
    }
}

impl<'de> Deserialize<'de> for RouteKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        RouteKind::from_name(&name).ok_or_else(|| {
            let expected = match RouteKind::NAMES {
                [] => String::new(),
                [only] => (*only).to_string(),
                [init @ .., last] => format!("{} or {last}", init.join(", ")),
            };
            de::Error::custom(format!("unknown kind {name:?}, expected {expected}"))
        })
    }
}

/// One `[[routes]]` entry: a path served by a WebSocket service.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(from = "RouteTable")]
pub struct RouteConfig {
    /// The request path, e.g. `"/ws"`; exact match, the query string is ignored.
    pub path: String,
    /// The service behind the path.
    pub kind: RouteKind,
    /// Subprotocols the route speaks, most preferred first. Default: the kind's own
    /// (`["tether.pubsub.v1"]` for pubsub, `["tether.inspect.v1"]` for echo, which adds the
    /// server's reports to the echo: [`crate::inspect`]). A client that offers none of them
    /// is still accepted, without a subprotocol.
    #[serde(default)]
    pub subprotocols: Option<Vec<String>>,
    /// Browser origins allowed to connect (e.g. `"https://example.com"`); others get 403.
    /// Default: the top-level `allowed_origins`.
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    /// The keys of `kind = "bridge"` routes (`target`, `token_file`, `allow`, ...), flat in
    /// the table.
    pub bridge: BridgeConfig,
    /// `proxy` routes: where requests below the path go, `ws://host:port/base` or `wss://...`
    /// (`/app/x?q` on route `/app` goes to `/base/x?q`). Required for proxy routes.
    pub upstream: Option<String>,
    /// `proxy` routes with a `wss://` upstream: a PEM file of certificate authorities trusted
    /// besides the webpki roots (private CAs, tests).
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// `proxy` routes: how long to wait for the upstream to connect and answer a handshake or
    /// a request head. Default 10 s; then `504`.
    pub upstream_timeout: Option<std::time::Duration>,
}

/// A `[[routes]]` table as written: the keys of every kind side by side, so an unknown key
/// is refused with its path, its line and the list of known keys (`serde(flatten)` would
/// lose all three).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteTable {
    path: String,
    kind: RouteKind,
    #[serde(default)]
    subprotocols: Option<Vec<String>>,
    #[serde(default)]
    allowed_origins: Option<Vec<String>>,
    // kind = "bridge": documented on BridgeConfig.
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    token_file: Option<std::path::PathBuf>,
    #[serde(default)]
    jwt_claim: Option<String>,
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default, deserialize_with = "bridge::optional_duration")]
    connect_timeout: Option<std::time::Duration>,
    #[serde(default, deserialize_with = "bridge::optional_size")]
    read_buffer_size: Option<usize>,
    #[serde(default)]
    tls: Option<bool>,
    #[serde(default)]
    tls_server_name: Option<String>,
    #[serde(default)]
    tls_ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    proxy_protocol: Option<bridge::ProxyProtocol>,
    // kind = "proxy": documented on RouteConfig.
    #[serde(default)]
    upstream: Option<String>,
    #[serde(default)]
    upstream_ca_file: Option<std::path::PathBuf>,
    #[serde(default, deserialize_with = "bridge::optional_duration")]
    upstream_timeout: Option<std::time::Duration>,
}

impl From<RouteTable> for RouteConfig {
    fn from(t: RouteTable) -> Self {
        RouteConfig {
            path: t.path,
            kind: t.kind,
            subprotocols: t.subprotocols,
            allowed_origins: t.allowed_origins,
            bridge: BridgeConfig {
                target: t.target,
                token_file: t.token_file,
                jwt_claim: t.jwt_claim,
                allow: t.allow,
                connect_timeout: t.connect_timeout,
                read_buffer_size: t.read_buffer_size,
                tls: t.tls,
                tls_server_name: t.tls_server_name,
                tls_ca_file: t.tls_ca_file,
                proxy_protocol: t.proxy_protocol,
            },
            upstream: t.upstream,
            upstream_ca_file: t.upstream_ca_file,
            upstream_timeout: t.upstream_timeout,
        }
    }
}

impl RouteConfig {
    /// A route of `kind` at `path` with the kind's defaults.
    pub fn new(path: impl Into<String>, kind: RouteKind) -> Self {
        RouteConfig {
            path: path.into(),
            kind,
            subprotocols: None,
            allowed_origins: None,
            bridge: BridgeConfig::default(),
            upstream: None,
            upstream_ca_file: None,
            upstream_timeout: None,
        }
    }

    /// The subprotocols this route speaks, most preferred first.
    /// Bridge routes speak `binary` after the configured ones, and refuse clients that
    /// offer none of them.
    pub fn effective_subprotocols(&self) -> Vec<String> {
        let mut protocols = self
            .subprotocols
            .clone()
            .unwrap_or_else(|| self.kind.default_subprotocols());
        if self.kind == RouteKind::Bridge && !protocols.iter().any(|p| p == BINARY_SUBPROTOCOL) {
            protocols.push(BINARY_SUBPROTOCOL.to_string());
        }
        protocols
    }

    /// Checks this route; errors name the key below `routes[i]`.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.path.starts_with('/') {
            return Err(("path", format!("{:?} must start with \"/\"", self.path)));
        }
        if self.path.contains(['?', '#', '\\']) || self.path.contains(char::is_whitespace) {
            return Err((
                "path",
                format!(
                    "{:?} must be a plain path (no query, fragment, backslash or space)",
                    self.path
                ),
            ));
        }
        if self.path == "/healthz" || self.path == "/metrics" || self.path.starts_with("/api/") {
            return Err((
                "path",
                format!("{:?} is reserved for the HTTP API", self.path),
            ));
        }
        for protocol in self.subprotocols.iter().flatten() {
            if protocol.is_empty() || !protocol.bytes().all(is_token_byte) {
                return Err((
                    "subprotocols",
                    format!("{protocol:?} is not a token (RFC 6455 §4.1)"),
                ));
            }
        }
        if let Some(origins) = &self.allowed_origins {
            super::validate_origins(origins).map_err(|p| ("allowed_origins", p))?;
        }
        bridge::validate(self)?;
        super::proxy::validate(self)
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        kind: RouteKind,
    }

    #[test]
    fn unknown_kind_lists_the_known_ones() {
        let err = toml::from_str::<Wrapper>("kind = \"foo\"").err().unwrap();
        assert!(
            err.message()
                .contains("unknown kind \"foo\", expected pubsub, echo, bridge or proxy"),
            "{err}"
        );
        assert_eq!(
            toml::from_str::<Wrapper>("kind = \"echo\"")
                .ok()
                .unwrap()
                .kind,
            RouteKind::Echo
        );
    }

    #[test]
    fn every_name_round_trips() {
        for name in RouteKind::NAMES {
            assert_eq!(RouteKind::from_name(name).unwrap().name(), *name);
        }
    }

    #[test]
    fn paths_and_subprotocols_are_checked() {
        let mut route = RouteConfig::new("ws", RouteKind::Echo);
        assert_eq!(route.validate().unwrap_err().0, "path");
        route.path = "/api/ws".into();
        assert!(route.validate().unwrap_err().1.contains("reserved"));
        route.path = "/ws".into();
        route.subprotocols = Some(vec!["bad protocol".into()]);
        assert_eq!(route.validate().unwrap_err().0, "subprotocols");
        route.subprotocols = None;
        assert_eq!(route.validate(), Ok(()));
        assert_eq!(
            route.effective_subprotocols(),
            vec![crate::inspect::SUBPROTOCOL.to_string()]
        );
        assert_eq!(
            RouteConfig::new("/ws", RouteKind::Pubsub).effective_subprotocols(),
            vec![SUBPROTOCOL.to_string()]
        );
    }
}
