//! Where a request goes: the HTTP API, a WebSocket route, or the pages.
//!
//! 1. `/healthz`, `/metrics`, `/api/...`: the API ([`crate::api`]).
//! 2. An upgrade request (`Upgrade: websocket`) to a route's path (or below a prefix route's,
//!    [`websocket::find`]): that route; to any other path: 404.
//! 3. A plain request to a route's path: the page at that path if there is one (so `/` can be
//!    both a page and an echo route), else 426 Upgrade Required.
//! 4. Anything else: the pages ([`crate::static_files`]).
//!
//! Below a proxy route's path, upgrades and plain requests alike go to its upstream
//! ([`crate::proxy`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, UPGRADE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Body as HttpBody;

use http_body_util::Either;

use crate::proxy::{self, ProxiedBody};
use crate::response;
use crate::server::State;
use crate::{api, websocket};

/// The gateway's hyper service.
pub(crate) async fn handle<B>(
    state: Arc<State>,
    req: Request<B>,
    peer: SocketAddr,
) -> Result<Response<ProxiedBody>, Infallible>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    state.metrics.request();
    let path = req.uri().path().to_string();
    if api::is_api_path(&path) {
        return Ok(api::handle(&state, req).await.map(Either::Left));
    }
    // One snapshot per request: a reload meanwhile does not change this request's route.
    let routes = state.routes.load();
    let route = websocket::find(&routes, &path);
    let upgrade = tether::upgrade::is_upgrade_request(&req);
    if let Some(route) = route
        && let Some(upstream) = &route.upstream
    {
        return Ok(if upgrade {
            proxy::upgrade(&state, route, upstream, req, peer)
                .await
                .map(Either::Left)
        } else {
            proxy::forward_http(&state, route, upstream, req, peer).await
        });
    }
    if upgrade {
        return Ok(match route {
            Some(route) => websocket::upgrade(&state, route, req, peer).await,
            None => response::text(StatusCode::NOT_FOUND, "no WebSocket route at this path"),
        }
        .map(Either::Left));
    }
    if route.is_some()
        && !(matches!(*req.method(), Method::GET | Method::HEAD) && state.statics.has(&path).await)
    {
        let mut response = response::text(
            StatusCode::UPGRADE_REQUIRED,
            "this path is a WebSocket endpoint: connect with a WebSocket client",
        );
        let headers = response.headers_mut();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        );
        headers.insert(
            http::header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Ok(response.map(Either::Left));
    }
    Ok(state
        .statics
        .serve(req.method(), &path, req.headers())
        .await
        .map(Either::Left))
}
