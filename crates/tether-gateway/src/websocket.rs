//! WebSocket routes: the checks before the `101` (handshake, Origin, token, bridge target,
//! connection limits), then the session task of the route's kind.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use tether::AcceptOptions;

use crate::bridge::{self, BridgeRoute};
use crate::config::proxy::ProxySettings;
use crate::config::{RouteConfig, RouteKind};
use crate::hub::Permissions;
use crate::limiter::Permit;
use crate::metrics::Refusal;
use crate::proxy::Upstream;
use crate::request::bearer_token;
use crate::response::{self, Body};
use crate::server::State;
use crate::{echo, inspect};

/// A WebSocket route, ready to accept.
pub(crate) struct Route {
    /// The request path: exact, or with every path below it when `prefix` is set.
    pub(crate) path: String,
    /// Whether paths below `path` belong to this route too ([`RouteKind::matches_prefix`]).
    pub(crate) prefix: bool,
    /// The service behind it.
    pub(crate) kind: RouteKind,
    /// Subprotocols and Origin policy for the handshake.
    pub(crate) options: AcceptOptions,
    /// The engine settings of this route's connections.
    pub(crate) connection_config: tether::Config,
    /// A bridge route's targets, TLS and counters (set by the server for `kind = "bridge"`).
    pub(crate) bridge: Option<Arc<BridgeRoute>>,
    /// The upstream of a proxy route.
    pub(crate) upstream: Option<Arc<Upstream>>,
}

impl Route {
    /// The route of `config`; `default_origins` applies when the route names none, and
    /// `connection_config` holds the gateway-wide engine limits. Errors (a proxy route's
    /// certificate file) name the key below `routes[i]`.
    pub(crate) fn new(
        config: &RouteConfig,
        default_origins: Option<&Vec<String>>,
        connection_config: &tether::Config,
    ) -> Result<Self, (&'static str, String)> {
        let mut connection_config = connection_config.clone();
        if config.kind == RouteKind::Pubsub {
            if let Some(deflate) = connection_config.deflate.as_mut() {
                // Fan-out compresses each published message once and sends the same frame to
                // every subscriber. That is only valid when no subscriber's decompressor
                // depends on earlier messages, so pub/sub routes require the server to reset
                // its context after every message (RFC 7692 §7.1.1.1). Clients that negotiate
                // a smaller server window get the plain frame (PreparedMessage::fits).
                deflate.server_no_context_takeover = true;
            }
        }
        if config.kind == RouteKind::Bridge {
            // A bridge carries another protocol's bytes, often compressed or encrypted
            // already (VNC, ICA, TLS): compressing them again costs CPU for nothing.
            connection_config.deflate = None;
        }
        let upstream = match ProxySettings::of(config) {
            Some(settings) => Some(Arc::new(Upstream::new(&settings)?)),
            None => None,
        };
        Ok(Route {
            path: config.path.clone(),
            prefix: config.kind.matches_prefix(),
            kind: config.kind,
            options: AcceptOptions {
                subprotocols: config.effective_subprotocols(),
                allowed_origins: config
                    .allowed_origins
                    .clone()
                    .or_else(|| default_origins.cloned()),
                extra_headers: Vec::new(),
            },
            connection_config,
            bridge: None,
            upstream,
        })
    }
}

impl Route {
    /// Whether this route answers `path`: its own path, or for a prefix route any path below
    /// it (`/app/...`, not `/application`). On a match, the rest of the path after the
    /// route's (empty, or starting with `/`).
    pub(crate) fn match_path<'p>(&self, path: &'p str) -> Option<&'p str> {
        let rest = path.strip_prefix(self.path.as_str())?;
        if rest.is_empty() {
            return Some(rest);
        }
        if !self.prefix {
            return None;
        }
        if self.path.ends_with('/') {
            // "/" and "/app/" keep the slash they end with in the rest.
            return Some(&path[self.path.len() - 1..]);
        }
        rest.starts_with('/').then_some(rest)
    }
}

/// The route that answers `path`: an exact match first, else the prefix route with the
/// longest path above it.
pub(crate) fn find<'r>(routes: &'r [Route], path: &str) -> Option<&'r Route> {
    routes.iter().find(|r| r.path == path).or_else(|| {
        routes
            .iter()
            .filter(|r| r.match_path(path).is_some())
            .max_by_key(|r| r.path.len())
    })
}

/// Answers an upgrade request for `route`: `101` and a session task, or the refusal.
///
/// Checks in order: the handshake itself (400, 426, 431) and the Origin (403), a bridge's
/// subprotocol (400), shutdown in progress (503), the token (401, not on bridge routes whose
/// tokens pick the target), the connection limits (503), a bridge's token and target (401,
/// 403, 404).
pub(crate) async fn upgrade<B>(
    state: &Arc<State>,
    route: &Route,
    mut req: Request<B>,
    peer: SocketAddr,
) -> http::Response<Body> {
    let refuse = |why: Refusal, response: http::Response<Body>| {
        state.metrics.refused(why);
        response
    };
    let (response, upgrading) =
        match tether::upgrade::upgrade(&mut req, route.connection_config.clone(), &route.options) {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(%peer, path = %route.path, "handshake refused: {e}");
                return refuse(Refusal::of(&e), tether::upgrade::error_response(&e));
            }
        };
    if let Some(bridge) = &route.bridge
        && let Some((why, refusal)) = bridge.subprotocol_refusal(&route.options, &response)
    {
        return refuse(why, refusal);
    }
    let (permissions, permit) = match admit(state, route, &req, peer) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    // After the limits, so one client's handshakes cannot run unbounded DNS lookups.
    let admitted = match &route.bridge {
        None => None,
        Some(bridge) => {
            let rest = route.match_path(req.uri().path()).unwrap_or_default();
            match bridge.admit_request(&state.auth, rest, &req, peer).await {
                Ok(admitted) => Some((bridge.clone(), admitted)),
                Err((why, refusal)) => return refuse(why, refusal),
            }
        }
    };
    let kind = route.kind;
    let inspected = match kind {
        RouteKind::Echo => inspect::Handshake::of(&req, &response, peer, &route.connection_config),
        _ => None,
    };
    let session_state = state.clone();
    state.tasks.spawn(async move {
        let state = session_state;
        let _permit = permit;
        let mut ws = match upgrading.await {
            Ok(ws) => ws,
            Err(e) => {
                tracing::debug!(%peer, "upgrade failed: {e}");
                return;
            }
        };
        if let Some((interval, timeout)) = state.limits.keepalive() {
            ws.set_keepalive(interval, timeout);
        }
        let _open = state.metrics.websocket(kind);
        let shutdown = state.tasks.shutdown_signal();
        match kind {
            RouteKind::Pubsub => state.hub.serve(ws, permissions, shutdown).await,
            RouteKind::Echo => match inspected {
                Some(handshake) => inspect::serve(ws, handshake, shutdown, &state.metrics).await,
                None => echo::serve(ws, shutdown, &state.metrics).await,
            },
            RouteKind::Bridge => {
                if let Some((bridge, admitted)) = admitted {
                    let close_timeout = state.limits.close_timeout;
                    bridge::serve(ws, bridge, admitted, shutdown, close_timeout).await;
                }
            }
            // Proxy routes upgrade in `crate::proxy`, which answers only after the upstream.
            RouteKind::Proxy => tracing::error!("proxy route upgraded as a local service"),
        }
    });
    response
}

/// The checks every route makes after the handshake itself: shutdown in progress (503), the
/// token (401), the connection limits (503). On success, the client's permissions and its
/// connection permit; else the refusal to send (and counted).
pub(crate) fn admit<B>(
    state: &Arc<State>,
    route: &Route,
    req: &Request<B>,
    peer: SocketAddr,
) -> Result<(Permissions, Permit), Box<http::Response<Body>>> {
    let refuse = |why: Refusal, response: http::Response<Body>| {
        state.metrics.refused(why);
        Box::new(response)
    };
    if state.tasks.is_shutting_down() {
        return Err(refuse(
            Refusal::ShuttingDown,
            response::unavailable("the server is shutting down"),
        ));
    }
    let token = bearer_token(req.headers(), req.uri().query());
    // A bridge token is a credential of its own: it names the target and is checked after
    // the limits (`bridge::BridgeRoute::admit_request`).
    let token_bridge = route.bridge.as_ref().is_some_and(|b| b.uses_tokens());
    let authenticated = match token_bridge {
        true => Ok(Permissions::allow_all()),
        false => state.auth.authenticate(token.as_deref()),
    };
    let permissions = match authenticated {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(%peer, path = %route.path, "unauthorized: {e}");
            return Err(refuse(
                Refusal::Unauthorized,
                response::unauthorized(&e, token.is_some()),
            ));
        }
    };
    match state.limiter.try_acquire(peer.ip()) {
        Ok(permit) => Ok((permissions, permit)),
        Err(why) => {
            tracing::debug!(%peer, "connection limit reached: {why:?}");
            Err(refuse(why, response::unavailable("too many connections")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, prefix: bool) -> Route {
        let mut route = Route::new(
            &RouteConfig::new(path, RouteKind::Echo),
            None,
            &tether::Config::default(),
        )
        .unwrap();
        route.prefix = prefix;
        route
    }

    #[test]
    fn exact_routes_match_only_their_path() {
        let r = route("/echo", false);
        assert_eq!(r.match_path("/echo"), Some(""));
        assert_eq!(r.match_path("/echo/x"), None);
        assert_eq!(r.match_path("/echoes"), None);
    }

    #[test]
    fn prefix_routes_match_below_their_path_only_at_a_segment() {
        let r = route("/app", true);
        assert_eq!(r.match_path("/app"), Some(""));
        assert_eq!(r.match_path("/app/"), Some("/"));
        assert_eq!(r.match_path("/app/a/b"), Some("/a/b"));
        assert_eq!(r.match_path("/application"), None);
        let root = route("/", true);
        assert_eq!(root.match_path("/x"), Some("/x"));
    }

    #[test]
    fn exact_beats_prefix_and_the_longest_prefix_wins() {
        let routes = vec![
            route("/", true),
            route("/app", true),
            route("/app/ws", false),
            route("/app/deep", true),
        ];
        let found = |p: &str| find(&routes, p).map(|r| r.path.as_str());
        assert_eq!(found("/app/ws"), Some("/app/ws"));
        assert_eq!(found("/app/ws/x"), Some("/app"));
        assert_eq!(found("/app/deep/1"), Some("/app/deep"));
        assert_eq!(found("/other"), Some("/"));
        assert!(find(&routes[1..], "/other").is_none());
    }
}
