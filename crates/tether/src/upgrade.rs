//! Upgrading hyper 1 requests, so one port serves HTTP and WebSocket.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;

use tether_proto::deflate::DeflateParams;
use tether_proto::handshake::{self, AcceptOptions, HandshakeError};
use tether_proto::{Config, Connection};

use crate::websocket::Negotiated;
use crate::{Error, WebSocket};

/// A WebSocket over an upgraded hyper connection.
pub type HyperWebSocket = WebSocket<TokioIo<Upgraded>>;

/// Whether `req` asks for a WebSocket upgrade (an `Upgrade` header naming `websocket`), so a
/// router can send it to [`upgrade`] and everything else to the HTTP handlers.
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(http::header::UPGRADE)
        .iter()
        .any(|v| {
            v.as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"websocket"))
        })
}

/// Validates `req` as a WebSocket upgrade and builds the `101` response to return from the
/// hyper service; the returned future resolves to the [`WebSocket`] once hyper has sent the
/// response and handed over the connection. Spawn it.
///
/// On error, return [`error_response`] from the service.
pub fn upgrade<B>(
    req: &mut Request<B>,
    config: Config,
    options: &AcceptOptions,
) -> Result<(Response<Full<Bytes>>, UpgradeFuture), HandshakeError> {
    let minor = match req.version() {
        http::Version::HTTP_10 => 0,
        http::Version::HTTP_11 => 1,
        // WebSocket over HTTP/2 (RFC 8441) is not supported: refused as not HTTP/1.1.
        _ => 0,
    };
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    let request = handshake::Request::from_parts(req.method().as_str(), &target, minor, headers);
    let accepted = handshake::accept(&request, &config, options)?;
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in head_fields(&accepted.response) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    let future = UpgradeFuture {
        on_upgrade: hyper::upgrade::on(req),
        setup: Some((
            config,
            accepted.deflate,
            Negotiated {
                subprotocol: accepted.subprotocol,
                compression: accepted.deflate.is_some(),
            },
        )),
    };
    Ok((response, future))
}

/// The HTTP answer to a refused upgrade: its status (400, 403, 426 with
/// `Sec-WebSocket-Version: 13`, 431) and a text body naming the broken rule.
pub fn error_response(e: &HandshakeError) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{e}\n"))));
    *response.status_mut() = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    for (name, value) in head_fields(&e.response()) {
        if name.eq_ignore_ascii_case("sec-websocket-version") {
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                response
                    .headers_mut()
                    .insert(http::header::SEC_WEBSOCKET_VERSION, v);
            }
        }
    }
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The header fields of an HTTP response head built by the handshake module.
fn head_fields(head: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => parsed
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Resolves to the [`WebSocket`] once hyper hands over the upgraded connection.
pub struct UpgradeFuture {
    on_upgrade: OnUpgrade,
    setup: Option<(Config, Option<DeflateParams>, Negotiated)>,
}

impl Future for UpgradeFuture {
    type Output = Result<HyperWebSocket, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let upgraded = ready!(Pin::new(&mut self.on_upgrade).poll(cx))
            .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let (config, deflate, negotiated) = self
            .setup
            .take()
            .expect("UpgradeFuture polled after completion");
        let conn = Connection::server(config, deflate);
        Poll::Ready(Ok(WebSocket::from_connection(
            TokioIo::new(upgraded),
            conn,
            negotiated,
            &[],
        )))
    }
}
