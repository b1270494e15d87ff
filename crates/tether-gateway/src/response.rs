//! Building the HTTP answers of the gateway.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, X_CONTENT_TYPE_OPTIONS};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// The body of every response: built in memory.
pub(crate) type Body = Full<Bytes>;

/// A response with `body` and its content type.
pub(crate) fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A plain-text response; a newline ends the body.
pub(crate) fn text(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    with_type(status, "text/plain; charset=utf-8", format!("{message}\n"))
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            with_type(status, "application/json", body)
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// A JSON error: `{"error": message}`.
pub(crate) fn json_error(status: StatusCode, message: impl std::fmt::Display) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message.to_string() }))
}

/// 405 with the `Allow` header listing `allowed`.
pub(crate) fn method_not_allowed(allowed: &'static str) -> Response<Body> {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allowed));
    response
}

/// 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3).
pub(crate) fn unauthorized(message: impl std::fmt::Display, invalid: bool) -> Response<Body> {
    let mut response = text(StatusCode::UNAUTHORIZED, message);
    let challenge = if invalid {
        "Bearer error=\"invalid_token\""
    } else {
        "Bearer"
    };
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// 503 with `Retry-After`, and `Connection: close` so the client reconnects elsewhere.
pub(crate) fn unavailable(message: impl std::fmt::Display) -> Response<Body> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, message);
    let headers = response.headers_mut();
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
    headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    response
}
