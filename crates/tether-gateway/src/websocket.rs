//! WebSocket routes: the checks before the `101` (handshake, Origin, token, connection
//! limits), then the session task of the route's kind.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Request;
use tether::AcceptOptions;

use crate::config::{RouteConfig, RouteKind};
use crate::echo;
use crate::metrics::Refusal;
use crate::request::bearer_token;
use crate::response::{self, Body};
use crate::server::State;

/// A WebSocket route, ready to accept.
pub(crate) struct Route {
    /// The exact request path.
    pub(crate) path: String,
    /// The service behind it.
    pub(crate) kind: RouteKind,
    /// Subprotocols and Origin policy for the handshake.
    pub(crate) options: AcceptOptions,
    /// The engine settings of this route's connections.
    pub(crate) connection_config: tether::Config,
}

impl Route {
    /// The route of `config`; `default_origins` applies when the route names none, and
    /// `connection_config` holds the gateway-wide engine limits.
    pub(crate) fn new(
        config: &RouteConfig,
        default_origins: Option<&Vec<String>>,
        connection_config: &tether::Config,
    ) -> Self {
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
        Route {
            path: config.path.clone(),
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
        }
    }
}

/// Answers an upgrade request for `route`: `101` and a session task, or the refusal.
///
/// Checks in order: the handshake itself (400, 426, 431) and the Origin (403), shutdown in
/// progress (503), the token (401), the connection limits (503).
pub(crate) fn upgrade<B>(
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
    if state.tasks.is_shutting_down() {
        return refuse(
            Refusal::ShuttingDown,
            response::unavailable("the server is shutting down"),
        );
    }
    let token = bearer_token(req.headers(), req.uri().query());
    let permissions = match state.auth.authenticate(token.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(%peer, path = %route.path, "unauthorized: {e}");
            return refuse(
                Refusal::Unauthorized,
                response::unauthorized(&e, token.is_some()),
            );
        }
    };
    let permit = match state.limiter.try_acquire(peer.ip()) {
        Ok(permit) => permit,
        Err(why) => {
            tracing::debug!(%peer, "connection limit reached: {why:?}");
            return refuse(why, response::unavailable("too many connections"));
        }
    };
    let kind = route.kind;
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
            RouteKind::Echo => echo::serve(ws, shutdown, &state.metrics).await,
        }
    });
    response
}
