//! `kind = "bridge"` routes: each WebSocket carries one TCP connection to a backend, the
//! binary messages in both directions being the TCP bytes (noVNC to a VNC server, a Citrix
//! HTML5 client to ICA, RESP to Redis).
//!
//! Before the `101` ([`BridgeRoute::admit`]): the target comes from `target`, or from the
//! client's token (a path segment, `?token=` or `Authorization: Bearer`) looked up in the
//! token file or read from a JWT claim; its host is resolved and only the addresses in
//! `allow` are kept. No token: 401; unknown token or nothing allowed: 403. After the `101`
//! ([`session::serve`]): the connection to the backend, then bytes both ways.
//!
//! ```text
//!  client ──ws binary──> ReadHalf ──write_all──> backend (TCP, TLS?)   each waits for the other
//!  client <──ws binary── WriteHalf <──read──────  backend                (bounded both ways)
//! ```

mod allow;
mod backend;
mod handshake;
pub(crate) mod metrics;
mod proxy_header;
mod session;
mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

pub(crate) use allow::{AllowList, AllowRule};
use tokens::TokenFile;

pub(crate) use session::serve;

use crate::auth::Authenticator;
use crate::config::{ConfigError, ProxyProtocol, RouteConfig, Target};
use crate::request::{bearer_token, percent_decode};
use backend::BackendTls;
use metrics::BridgeMetrics;

/// Where a route's targets come from.
enum Targets {
    /// `target = "host:port"`.
    Fixed(Target),
    /// The client's token, in the file and/or a JWT claim.
    Tokens {
        file: Option<TokenFile>,
        jwt_claim: Option<String>,
    },
}

/// A bridge route, ready to admit clients.
pub(crate) struct BridgeRoute {
    targets: Targets,
    /// `None` for a fixed target without `allow`: its own addresses are allowed.
    allow: Option<AllowList>,
    connect_timeout: Duration,
    read_buffer_size: usize,
    tls: Option<BackendTls>,
    proxy_protocol: Option<ProxyProtocol>,
    pub(crate) metrics: Arc<BridgeMetrics>,
}

/// Why a bridge refused a handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A token route and no token (401).
    MissingToken,
    /// A token neither in the file nor a valid JWT with the claim (403).
    UnknownToken(String),
    /// The target resolves to no address in `allow` (403).
    NotAllowed(String),
    /// A fixed-target route asked for a path below its own (404).
    NoSuchPath,
}

impl Refused {
    /// The HTTP status and the body's text. The details of why a token failed go to the log,
    /// not to the client.
    pub(crate) fn answer(&self) -> (http::StatusCode, &'static str) {
        use http::StatusCode;
        match self {
            Refused::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "this bridge needs a token: /path/<token>, ?token=<token> or Authorization: Bearer",
            ),
            Refused::UnknownToken(_) => (StatusCode::FORBIDDEN, "unknown or invalid bridge token"),
            Refused::NotAllowed(_) => (
                StatusCode::FORBIDDEN,
                "the bridge's target is not in the route's allow list",
            ),
            Refused::NoSuchPath => (StatusCode::NOT_FOUND, "no WebSocket route at this path"),
        }
    }
}

/// A client admitted to a bridge: where to connect, for the session after the `101`.
pub(crate) struct Admitted {
    target: Target,
    /// The allowed addresses of the target, or why resolving failed (closed with 1011).
    addrs: Result<Vec<SocketAddr>, String>,
    client: SocketAddr,
    /// The gateway's address the client connected to (the PROXY header's destination).
    local: Option<SocketAddr>,
}

impl BridgeRoute {
    /// The bridge of `config`, a `kind = "bridge"` route; `key` is its place in the config
    /// (`routes[2]`) for error messages. Reads the token file and the CA file.
    pub(crate) fn new(config: &RouteConfig, key: &str) -> Result<BridgeRoute, ConfigError> {
        let bridge = &config.bridge;
        let targets = match &bridge.target {
            Some(target) => Targets::Fixed(
                Target::parse(target).map_err(|p| ConfigError::new(format!("{key}.target"), p))?,
            ),
            None => Targets::Tokens {
                file: bridge
                    .token_file
                    .as_deref()
                    .map(TokenFile::open)
                    .transpose()
                    .map_err(|p| ConfigError::new(format!("{key}.token_file"), p))?,
                jwt_claim: bridge.jwt_claim.clone(),
            },
        };
        let allow = bridge
            .allow
            .as_deref()
            .map(AllowList::parse)
            .transpose()
            .map_err(|p| ConfigError::new(format!("{key}.allow"), p))?;
        let tls = match bridge.tls {
            Some(true) => Some(BackendTls::new(
                key,
                bridge.tls_ca_file.as_deref(),
                bridge.tls_server_name.as_deref(),
            )?),
            _ => None,
        };
        Ok(BridgeRoute {
            targets,
            allow,
            connect_timeout: bridge.effective_connect_timeout(),
            read_buffer_size: bridge.effective_read_buffer_size(),
            tls,
            proxy_protocol: bridge.proxy_protocol,
            metrics: Arc::new(BridgeMetrics::new(&config.path)),
        })
    }

    /// Whether the target comes from the client's token, which then is the credential
    /// (the gateway's `[auth]` tokens do not apply).
    pub(crate) fn uses_tokens(&self) -> bool {
        matches!(self.targets, Targets::Tokens { .. })
    }

    /// Decides, before the `101`, where this client's connection goes. `rest` is the path
    /// below the route's (`/<token>` or empty).
    pub(crate) async fn admit(
        &self,
        auth: &Authenticator,
        rest: &str,
        headers: &HeaderMap,
        query: Option<&str>,
        client: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<Admitted, Refused> {
        let target = self.target(auth, rest, headers, query)?;
        let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
        let addrs = match tokio::time::timeout(self.connect_timeout, lookup).await {
            Err(_) => Err(format!("resolving {target} timed out")),
            Ok(Err(e)) => Err(format!("cannot resolve {target}: {e}")),
            Ok(Ok(resolved)) => {
                let resolved: Vec<SocketAddr> = resolved.collect();
                let allowed: Vec<SocketAddr> = match &self.allow {
                    None => resolved.clone(),
                    Some(list) => resolved
                        .iter()
                        .copied()
                        .filter(|a| list.allows(*a))
                        .collect(),
                };
                if allowed.is_empty() {
                    return Err(Refused::NotAllowed(format!(
                        "{target} resolves to {resolved:?}, none in the allow list"
                    )));
                }
                if allowed.len() < resolved.len() {
                    tracing::debug!(%target, "addresses outside the allow list skipped: {resolved:?}");
                }
                Ok(allowed)
            }
        };
        Ok(Admitted {
            target,
            addrs,
            client,
            local,
        })
    }

    fn target(
        &self,
        auth: &Authenticator,
        rest: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Target, Refused> {
        let (file, jwt_claim) = match &self.targets {
            Targets::Fixed(target) if rest.is_empty() || rest == "/" => return Ok(target.clone()),
            Targets::Fixed(_) => return Err(Refused::NoSuchPath),
            Targets::Tokens { file, jwt_claim } => (file, jwt_claim),
        };
        let token = match rest.strip_prefix('/') {
            Some(segment) if segment.contains('/') => return Err(Refused::NoSuchPath),
            Some(segment) if !segment.is_empty() => Some(
                percent_decode(segment, false)
                    .ok_or_else(|| Refused::UnknownToken("badly escaped token".into()))?,
            ),
            _ => bearer_token(headers, query),
        }
        .ok_or(Refused::MissingToken)?;
        if let Some(target) = file.as_ref().and_then(|f| f.tokens().get(&token).cloned()) {
            return Ok(target);
        }
        let Some(claim) = jwt_claim else {
            return Err(Refused::UnknownToken("not in the token file".into()));
        };
        let claims = auth
            .verified_jwt_claims(&token)
            .map_err(|e| Refused::UnknownToken(e.to_string()))?;
        match claims.get(claim) {
            Some(serde_json::Value::String(target)) => Target::parse(target)
                .map_err(|e| Refused::UnknownToken(format!("claim `{claim}`: {e}"))),
            _ => Err(Refused::UnknownToken(format!(
                "the JWT has no string claim `{claim}`"
            ))),
        }
    }
}
