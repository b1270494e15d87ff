//! Plain HTTP requests below a proxy route: forwarded to the upstream over HTTP/1.1 with
//! their bodies streamed both ways, so a web application and its WebSockets share a port.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either};
use hyper::body::{Body as HttpBody, Incoming};
use hyper_util::rt::TokioIo;

use super::headers::{self, ClientScheme};
use super::{Upstream, UpstreamFailure};
use crate::response::{self, Body};
use crate::server::State;
use crate::websocket::Route;

/// A response body: built by the gateway, or streamed from the upstream.
pub(crate) type ProxiedBody = Either<Body, Incoming>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Forwards `req` to the route's upstream and streams its answer back.
///
/// The upstream gets the method, the path mapped below its base path, the end-to-end fields
/// (RFC 9110 §7.6.1: hop-by-hop ones dropped), `Host` its own, and `X-Forwarded-*` and
/// `Forwarded`. Its answer loses its hop-by-hop fields too. `502` when it cannot be reached
/// or breaks the connection before the head, `504` when the head does not come within
/// `upstream_timeout`.
pub(crate) async fn forward<B>(
    state: &Arc<State>,
    route: &Route,
    upstream: &Arc<Upstream>,
    req: Request<B>,
    peer: SocketAddr,
) -> Response<ProxiedBody>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let counters = state.metrics.proxy.route(&route.path);
    counters.http_request();
    let scheme = req
        .extensions()
        .get::<ClientScheme>()
        .copied()
        .unwrap_or(ClientScheme { secure: false });
    let (parts, body) = req.into_parts();
    let rest = route.match_path(parts.uri.path()).unwrap_or("");
    let target = upstream.url.target(rest, parts.uri.query());
    let mut fields = headers::end_to_end(&parts.headers);
    headers::add_forwarded(&mut fields, peer.ip(), scheme);
    match HeaderValue::from_str(&upstream.url.authority) {
        Ok(host) => {
            fields.insert(header::HOST, host);
        }
        Err(_) => return failure(StatusCode::BAD_GATEWAY, "the upstream authority is invalid"),
    }
    let Ok(uri) = target.parse::<Uri>() else {
        return failure(
            StatusCode::BAD_REQUEST,
            "the request target cannot be forwarded",
        );
    };
    let mut upstream_req = Request::new(body.map_err(Into::into).boxed_unsync());
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.headers_mut() = fields;

    let exchange = async {
        let stream = upstream.connect().await.map_err(|e| {
            (
                UpstreamFailure::Unreachable,
                format!("the upstream cannot be reached: {e}"),
            )
        })?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake::<
            _,
            http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>,
        >(TokioIo::new(stream))
        .await
        .map_err(|e| {
            (
                UpstreamFailure::Unreachable,
                format!("the upstream connection failed: {e}"),
            )
        })?;
        // The connection task carries both bodies; it ends with the response body.
        state.tasks.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("upstream HTTP connection ended: {e}");
            }
        });
        sender.send_request(upstream_req).await.map_err(|e| {
            (
                UpstreamFailure::Unreachable,
                format!("the upstream did not answer: {e}"),
            )
        })
    };
    match tokio::time::timeout(upstream.timeout, exchange).await {
        Ok(Ok(response)) => {
            let (mut parts, body) = response.into_parts();
            parts.headers = headers::end_to_end(&parts.headers);
            Response::from_parts(parts, Either::Right(body))
        }
        Ok(Err((why, message))) => {
            tracing::debug!(%peer, path = %route.path, "proxied request failed: {message}");
            counters.failed(why);
            failure(StatusCode::BAD_GATEWAY, message)
        }
        Err(_) => {
            counters.failed(UpstreamFailure::Timeout);
            failure(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the upstream did not answer within {:?}", upstream.timeout),
            )
        }
    }
}

fn failure(status: StatusCode, message: impl std::fmt::Display) -> Response<ProxiedBody> {
    response::text(status, message).map(Either::Left)
}
