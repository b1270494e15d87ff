//! The WebSocket upgrade through a proxy route: the client's handshake is forwarded to the
//! upstream, and the client gets its `101` only with what the upstream chose.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tether::{Negotiated, WebSocket};
use tether_proto::Connection;
use tether_proto::handshake::{
    self, ClientHandshakeError, ClientRequest, ForwardedOffers, PendingHandshake,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::headers::{self, ClientScheme};
use super::upstream::{Upstream, UpstreamStream};
use super::{UpstreamFailure, relay};
use crate::config::RouteKind;
use crate::metrics::Refusal;
use crate::request;
use crate::response::{self, Body};
use crate::server::State;
use crate::websocket::{Route, admit};

/// A WebSocket to the upstream, after its `101`.
type UpstreamSocket = WebSocket<UpstreamStream>;

/// Answers an upgrade request on a proxy route.
///
/// Checks the client's handshake (400, 426, 431, Origin 403), then shutdown, token and limits
/// as every route does, then opens the upstream handshake with the client's offers. Only the
/// upstream's `101` gives the client its `101`, with the upstream's subprotocol and extensions;
/// anything else gives `502` (`504` after `upstream_timeout`).
pub(crate) async fn upgrade<B>(
    state: &Arc<State>,
    route: &Route,
    upstream: &Arc<Upstream>,
    mut req: Request<B>,
    peer: SocketAddr,
) -> Response<Body> {
    let request = as_handshake_request(&req);
    let offers =
        match handshake::forwarded_offers(&request, &route.connection_config, &route.options) {
            Ok(offers) => offers,
            Err(e) => {
                tracing::debug!(%peer, path = %route.path, "handshake refused: {e}");
                state.metrics.refused(Refusal::of(&e));
                return tether::upgrade::error_response(&e);
            }
        };
    let (_permissions, permit) = match admit(state, route, &req, peer) {
        Ok(admitted) => admitted,
        Err(refusal) => return *refusal,
    };
    let path = req.uri().path();
    let rest = route.match_path(path).unwrap_or("");
    // The gateway's own credential is not the upstream's: with `[auth]` on, the bearer
    // token (header or `?token=`) that admitted the client stops here.
    let credentials_checked = state.auth.is_enabled();
    let query = match credentials_checked {
        true => request::query_without(req.uri().query(), "token"),
        false => req.uri().query().map(str::to_string),
    };
    let target = upstream.url.target(rest, query.as_deref());
    let mut client_headers = req.headers().clone();
    if credentials_checked {
        request::remove_bearer(&mut client_headers);
    }
    let scheme = req
        .extensions()
        .get::<ClientScheme>()
        .copied()
        .unwrap_or(ClientScheme { secure: false });
    let upstream_request = upstream_request(
        &upstream.url.authority,
        target,
        &client_headers,
        peer,
        scheme,
    );

    let (ws, response) = match tokio::time::timeout(
        upstream.timeout,
        open(upstream, &upstream_request, &offers, route),
    )
    .await
    {
        Ok(Ok(opened)) => opened,
        Ok(Err((why, message))) => {
            tracing::debug!(%peer, path = %route.path, "upstream handshake failed: {message}");
            state.metrics.proxy.route(&route.path).failed(why);
            return response::text(StatusCode::BAD_GATEWAY, message);
        }
        Err(_) => {
            tracing::debug!(%peer, path = %route.path, "upstream did not answer in time");
            state
                .metrics
                .proxy
                .route(&route.path)
                .failed(UpstreamFailure::Timeout);
            return response::text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the upstream did not answer the WebSocket handshake within {:?}",
                    upstream.timeout
                ),
            );
        }
    };

    let client_response = switching_protocols(&offers, &response);
    let deflate = response.deflate;
    let negotiated = Negotiated {
        subprotocol: response.subprotocol.clone(),
        compression: deflate.is_some(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = route.connection_config.clone();
    let route_path = route.path.clone();
    let session_state = state.clone();
    state.tasks.spawn(async move {
        let state = session_state;
        let _permit = permit;
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(%peer, "upgrade failed: {e}");
                return;
            }
        };
        // The client leg uses exactly the parameters the upstream chose: the client accepted
        // them in our 101, since they are the upstream's answer to its own offers. A client's
        // protocol error closes it only after the upstream's answers (relay.rs).
        let mut client_config = config;
        client_config.deferred_failure_close = true;
        let conn = Connection::server(client_config, deflate);
        let mut client = WebSocket::from_connection(TokioIo::new(upgraded), conn, negotiated, &[]);
        if let Some((interval, timeout)) = state.limits.keepalive() {
            client.set_keepalive(interval, timeout);
        }
        let _open = state.metrics.websocket(RouteKind::Proxy);
        let counters = state.metrics.proxy.route(&route_path);
        relay::relay(
            client,
            ws,
            state.tasks.shutdown_signal(),
            &state.metrics,
            &counters,
        )
        .await;
    });
    client_response
}

/// The parts of the hyper request the handshake checks look at.
fn as_handshake_request<B>(req: &Request<B>) -> handshake::Request {
    let minor = match req.version() {
        http::Version::HTTP_11 => 1,
        _ => 0,
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    handshake::Request::from_parts(req.method().as_str(), target, minor, headers)
}

/// The upstream's handshake request: the client's end-to-end fields (the handshake's own
/// fields are set by the engine), `X-Forwarded-*` and `Forwarded`, `Host` the upstream's.
fn upstream_request(
    authority: &str,
    target: String,
    client_headers: &HeaderMap,
    peer: SocketAddr,
    scheme: ClientScheme,
) -> ClientRequest {
    let mut fields = headers::end_to_end(client_headers);
    headers::add_forwarded(&mut fields, peer.ip(), scheme);
    let mut request = ClientRequest::new(authority, target);
    request.origin = client_headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    request.extra_headers = fields
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            // Set by the engine for this leg, or carried by `offers` (subprotocols and
            // extensions); `Host` is the upstream's.
            !name.starts_with("sec-websocket-") && name != "host" && name != "origin"
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    request
}

/// Connects and runs the upstream handshake with the client's offers.
async fn open(
    upstream: &Upstream,
    request: &ClientRequest,
    offers: &ForwardedOffers,
    route: &Route,
) -> Result<(UpstreamSocket, handshake::Response), (UpstreamFailure, String)> {
    let unreachable = |e: std::io::Error| {
        (
            UpstreamFailure::Unreachable,
            format!("the upstream cannot be reached: {e}"),
        )
    };
    let mut stream = upstream.connect().await.map_err(unreachable)?;
    // RFC 6455 §4.1: the key is "a randomly selected 16-byte value".
    let (bytes, pending) = handshake::forwarding_request(request, offers, rand::random());
    stream.write_all(&bytes).await.map_err(unreachable)?;
    stream.flush().await.map_err(unreachable)?;
    let config = &route.connection_config;
    let (response, leftover) = read_response(&mut stream, &pending, config)
        .await
        .map_err(|e| match e {
            ReadError::Io(e) => unreachable(e),
            ReadError::Handshake(ClientHandshakeError::NotSwitchingProtocols {
                status,
                reason,
                ..
            }) => (
                UpstreamFailure::NotWebSocket,
                format!(
                    "the upstream does not support WebSocket: it answered the upgrade with \
                     {status} {reason}"
                ),
            ),
            ReadError::Handshake(e) => (
                UpstreamFailure::BadHandshake,
                format!("the upstream's WebSocket handshake is invalid: {e}"),
            ),
        })?;
    let negotiated = Negotiated {
        subprotocol: response.subprotocol.clone(),
        compression: response.deflate.is_some(),
    };
    // RFC 6455 §5.3: a fresh, unpredictable masking key for every frame.
    let conn = Connection::client(config.clone(), response.deflate, rand::random::<[u8; 4]>);
    let ws = WebSocket::from_connection(stream, conn, negotiated, &leftover);
    Ok((ws, response))
}

enum ReadError {
    Io(std::io::Error),
    Handshake(ClientHandshakeError),
}

/// Reads the upstream's answer head, within `max_handshake_size`; returns it and the bytes
/// read past it (the first WebSocket frames).
async fn read_response(
    stream: &mut UpstreamStream,
    pending: &PendingHandshake,
    config: &tether::Config,
) -> Result<(handshake::Response, Vec<u8>), ReadError> {
    let mut buf = Vec::with_capacity(512);
    loop {
        let room = (config.max_handshake_size + 1)
            .saturating_sub(buf.len())
            .max(1);
        let n = stream
            .read_buf(&mut bytes::BufMut::limit(&mut buf, room))
            .await
            .map_err(ReadError::Io)?;
        if n == 0 {
            return Err(ReadError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed before the handshake answer",
            )));
        }
        if let Some((response, head_len)) = pending
            .parse_response(&buf, config)
            .map_err(ReadError::Handshake)?
        {
            return Ok((response, buf.split_off(head_len)));
        }
    }
}

/// The client's `101`: its accept key, and the upstream's subprotocol and extensions
/// (RFC 6455 §4.2.2 step 5), plus the upstream's other end-to-end fields (`Set-Cookie`...).
fn switching_protocols(offers: &ForwardedOffers, upstream: &handshake::Response) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let mut upstream_fields = HeaderMap::new();
    for (name, value) in &upstream.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            upstream_fields.append(name, value);
        }
    }
    let mut fields = headers::end_to_end(&upstream_fields);
    fields.remove(header::SEC_WEBSOCKET_ACCEPT);
    fields.remove(header::CONTENT_LENGTH);
    let out = response.headers_mut();
    out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    out.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&offers.client_accept()) {
        out.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    // Sec-WebSocket-Protocol and Sec-WebSocket-Extensions pass as the upstream wrote them:
    // PendingHandshake checked them against the client's own offers.
    for (name, value) in &fields {
        out.append(name.clone(), value.clone());
    }
    response
}
