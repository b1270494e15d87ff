//! The keys of a `kind = "bridge"` route: where its TCP connections go and how.
//!
//! ```toml
//! [[routes]]
//! path = "/vnc"
//! kind = "bridge"
//! subprotocols = ["rfb"]                 # besides "binary", which every bridge speaks
//! token_file = "vnc-tokens.txt"          # `token: host:port` lines; or target = "host:port"
//! allow = ["10.0.0.0/8:5900-5999"]       # every target must fall in it
//! ```

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::Deserializer;

use super::RouteConfig;
use super::units;
use crate::bridge::AllowRule;

/// The subprotocol every bridge route speaks: the WebSocket binary messages are the TCP
/// bytes, nothing else.
pub const BINARY_SUBPROTOCOL: &str = "binary";

/// How long a bridge waits for its backend (resolving, connecting, TLS) by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes read from the backend at a time by default: the largest binary message a bridge
/// sends, and the read buffer each session holds.
pub const DEFAULT_READ_BUFFER_SIZE: usize = 64 << 10;

/// The largest `read_buffer_size`.
pub const MAX_READ_BUFFER_SIZE: usize = 16 << 20;

/// A header a bridge writes to its backend before the first byte of the client's.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// HAProxy's PROXY protocol version 2 (binary), carrying the client's address.
    #[serde(rename = "v2")]
    V2,
}

/// A backend address as written in `target` and in token files: `host:port`, with IPv6
/// literals in brackets (`[::1]:6379`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// A host name or an IP literal (without the brackets).
    pub host: String,
    /// The TCP port, 1 to 65535.
    pub port: u16,
}

impl Target {
    /// Parses `host:port`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Target, String> {
        let text = text.trim();
        let bad = |why: &str| format!("{text:?} is not host:port ({why})");
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => {
                let inner = inner.strip_suffix(']').ok_or_else(|| bad("unclosed ["))?;
                inner
                    .parse::<std::net::Ipv6Addr>()
                    .map_err(|_| bad("not an IPv6 address in brackets"))?;
                inner
            }
            None if host.contains(':') => return Err(bad("IPv6 addresses go in brackets")),
            None => host,
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b))
        {
            return Err(bad("bad host name"));
        }
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok(Target {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The settings of a bridge route, flat in its `[[routes]]` table. Every key is optional
/// here; config validation says which combinations work (errors name the key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BridgeConfig {
    /// A fixed backend, `"host:port"`. Give this, or `token_file` and/or `jwt_claim`.
    pub target: Option<String>,
    /// A file of `token: host:port` lines (`#` starts a comment line); the client names its
    /// token in the path (`/vnc/<token>`) or as `?token=`. Re-read when it changes; a bad
    /// edit keeps the last good tokens. Relative paths start at the config file's directory.
    pub token_file: Option<PathBuf>,
    /// The claim holding `"host:port"` in a JWT verified with `[auth.jwt]`, given like a
    /// file token.
    pub jwt_claim: Option<String>,
    /// Networks and ports every target must fall in: `"10.0.0.0/8:5900-5999"`,
    /// `"127.0.0.1:6379"`, `"[fd00::/8]:22"`, `"0.0.0.0/0:*"`. Required with tokens; with a
    /// fixed target, default: the target itself.
    pub allow: Option<Vec<String>>,
    /// Time to resolve, connect to and (with TLS) handshake with the backend. Default 5 s.
    pub connect_timeout: Option<Duration>,
    /// Bytes read from the backend at a time: the largest binary message sent to the client
    /// and the read buffer each session holds. Default 64 KiB, at most 16 MiB.
    pub read_buffer_size: Option<usize>,
    /// Speak TLS to the backend. Default `false`.
    pub tls: Option<bool>,
    /// The name the backend's certificate must carry. Default: the target's host.
    pub tls_server_name: Option<String>,
    /// PEM file of the CA certificates that sign the backend's certificate. Default: the
    /// webpki (Mozilla) roots.
    pub tls_ca_file: Option<PathBuf>,
    /// `"v2"`: send a PROXY protocol v2 header with the client's address first.
    pub proxy_protocol: Option<ProxyProtocol>,
}

pub(super) fn optional_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    units::duration(d).map(Some)
}

pub(super) fn optional_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    units::size(d).map(Some)
}

impl BridgeConfig {
    /// Whether any bridge key is set (they are refused on other kinds).
    pub fn is_set(&self) -> bool {
        *self != BridgeConfig::default()
    }

    /// Whether targets come from tokens (file or JWT) rather than `target`.
    pub fn uses_tokens(&self) -> bool {
        self.token_file.is_some() || self.jwt_claim.is_some()
    }

    /// `connect_timeout` or its default.
    pub fn effective_connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT)
    }

    /// `read_buffer_size` or its default.
    pub fn effective_read_buffer_size(&self) -> usize {
        self.read_buffer_size.unwrap_or(DEFAULT_READ_BUFFER_SIZE)
    }
}

/// Checks the bridge keys of `route`; errors name the key below `routes[i]`.
pub(crate) fn validate(route: &RouteConfig) -> Result<(), (&'static str, String)> {
    let bridge = &route.bridge;
    if route.kind != super::RouteKind::Bridge {
        if bridge.is_set() {
            return Err((
                "kind",
                "target, token_file, jwt_claim, allow, connect_timeout, read_buffer_size, tls* \
                 and proxy_protocol are keys of kind = \"bridge\" routes"
                    .into(),
            ));
        }
        return Ok(());
    }
    match (&bridge.target, bridge.uses_tokens()) {
        (Some(_), true) => {
            return Err((
                "target",
                "give target or token_file/jwt_claim, not both".into(),
            ));
        }
        (None, false) => {
            return Err((
                "target",
                "a bridge needs target = \"host:port\", token_file or jwt_claim".into(),
            ));
        }
        (Some(target), false) => {
            Target::parse(target).map_err(|p| ("target", p))?;
        }
        (None, true) => {
            if bridge.allow.is_none() {
                return Err((
                    "allow",
                    "required with token_file or jwt_claim: the networks and ports tokens may \
                     reach, e.g. [\"10.0.0.0/8:5900-5999\"]"
                        .into(),
                ));
            }
        }
    }
    if bridge.jwt_claim.as_deref().is_some_and(str::is_empty) {
        return Err(("jwt_claim", "must name a claim, e.g. \"target\"".into()));
    }
    for rule in bridge.allow.iter().flatten() {
        AllowRule::parse(rule).map_err(|p| ("allow", p))?;
    }
    if let Some(size) = bridge.read_buffer_size
        && !(1..=MAX_READ_BUFFER_SIZE).contains(&size)
    {
        return Err((
            "read_buffer_size",
            format!("must be between 1 byte and 16 MiB, not {size}"),
        ));
    }
    if bridge.connect_timeout.is_some_and(|t| t.is_zero()) {
        return Err(("connect_timeout", "must be more than 0".into()));
    }
    if !bridge.tls.unwrap_or(false)
        && (bridge.tls_server_name.is_some() || bridge.tls_ca_file.is_some())
    {
        return Err((
            "tls",
            "tls_server_name and tls_ca_file need tls = true".into(),
        ));
    }
    if let Some(name) = &bridge.tls_server_name {
        rustls_pki_types::ServerName::try_from(name.as_str())
            .map_err(|e| ("tls_server_name", format!("{name:?}: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_names_and_literals() {
        let t = |s: &str| Target::parse(s);
        assert_eq!(
            t("redis.internal:6379"),
            Ok(Target {
                host: "redis.internal".into(),
                port: 6379
            })
        );
        assert_eq!(t("[::1]:22").unwrap().host, "::1");
        assert_eq!(t("[::1]:22").unwrap().to_string(), "[::1]:22");
        assert_eq!(t(" 10.0.0.1:5900 ").unwrap().to_string(), "10.0.0.1:5900");
        assert!(t("host").unwrap_err().contains("no port"));
        assert!(t("host:0").unwrap_err().contains("port 0"));
        assert!(t("host:70000").unwrap_err().contains("bad port"));
        assert!(t("::1:22").unwrap_err().contains("brackets"));
        assert!(t(":22").unwrap_err().contains("bad host"));
        assert!(t("a/b:22").unwrap_err().contains("bad host"));
    }

    fn route(toml_text: &str) -> RouteConfig {
        toml::from_str(&format!("path = \"/b\"\nkind = \"bridge\"\n{toml_text}")).unwrap()
    }

    #[test]
    fn a_bridge_needs_exactly_one_way_to_its_target() {
        assert_eq!(validate(&route("")).unwrap_err().0, "target");
        assert_eq!(
            validate(&route("target = \"a:1\"\ntoken_file = \"t\"\nallow = []"))
                .unwrap_err()
                .0,
            "target"
        );
        assert_eq!(
            validate(&route("token_file = \"t\"")).unwrap_err().0,
            "allow"
        );
        assert_eq!(validate(&route("target = \"a:1\"")), Ok(()));
        assert_eq!(
            validate(&route(
                "jwt_claim = \"target\"\nallow = [\"10.0.0.0/8:1-2\"]"
            )),
            Ok(())
        );
        assert_eq!(
            validate(&route("target = \"a:1\"\nallow = [\"10.0.0.0/33:1\"]"))
                .unwrap_err()
                .0,
            "allow"
        );
        assert_eq!(
            validate(&route("target = \"a:1\"\ntls_ca_file = \"ca.pem\""))
                .unwrap_err()
                .0,
            "tls"
        );
        assert_eq!(
            validate(&route("target = \"a:1\"\nread_buffer_size = \"1 GiB\""))
                .unwrap_err()
                .0,
            "read_buffer_size"
        );
    }

    #[test]
    fn bridge_keys_belong_to_bridges() {
        let echo: RouteConfig =
            toml::from_str("path = \"/e\"\nkind = \"echo\"\ntarget = \"a:1\"").unwrap();
        assert_eq!(validate(&echo).unwrap_err().0, "kind");
        let parsed =
            route("target = \"a:1\"\nconnect_timeout = \"250ms\"\nproxy_protocol = \"v2\"");
        assert_eq!(
            parsed.bridge.connect_timeout,
            Some(Duration::from_millis(250))
        );
        assert_eq!(parsed.bridge.proxy_protocol, Some(ProxyProtocol::V2));
    }

    #[test]
    fn unknown_keys_in_a_bridge_route_are_still_refused() {
        let e = crate::config::GatewayConfig::from_toml(
            "[[routes]]\npath = \"/b\"\nkind = \"bridge\"\ntarget = \"a:1\"\ntagret = \"b:2\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "routes[0].tagret");
        assert!(
            e.problem
                .contains("unknown field `tagret`, expected one of"),
            "{e}"
        );
        assert!(e.problem.contains("`token_file`"), "{e}");
        assert_eq!(e.location, Some((5, 1)));
        let e = crate::config::GatewayConfig::from_toml(
            "[[routes]]\npath = \"/b\"\nkind = \"bridge\"\ntarget = \"a:1\"\nconnect_timeout = \"soon\"\n",
        )
        .unwrap_err();
        assert!(e.problem.contains("not a duration"), "{e}");
    }
}
