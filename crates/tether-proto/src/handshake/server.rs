//! The server's answer: validate the client's request, then build the `101` response
//! ([`accept`]) or an error response ([`reject_response`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::error::HandshakeError;
use super::extensions::{self, Extension};
use super::http::{
    error_response, is_authority_byte, is_field_value, is_token, is_writable_header, join_lossy,
    list_contains, list_elements, push_header, trim_ows, values,
};
use super::negotiation;
use super::request::Request;
use super::{WEBSOCKET_VERSION, accept_key};
use crate::Config;
use crate::deflate::DeflateParams;

/// Header fields the `101` response sets itself; `AcceptOptions::extra_headers` may not.
const RESERVED_101_HEADERS: &[&str] = &[
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Version",
    "Content-Length",
    "Transfer-Encoding",
];

/// Header fields an error response sets itself; [`reject_response`] drops them.
const RESERVED_ERROR_HEADERS: &[&str] = &[
    "Connection",
    "Content-Length",
    "Content-Type",
    "Transfer-Encoding",
];

/// The server's policy for [`accept`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceptOptions {
    /// Subprotocols the server speaks, most preferred first. The first of them that the client
    /// offered is chosen; none is chosen if the client offered none of them.
    pub subprotocols: Vec<String>,
    /// `None`: any `Origin` is accepted. `Some(list)`: a request whose `Origin` is not in the
    /// list (exact, ASCII case-insensitive match, e.g. `"https://example.com"`) is refused with
    /// 403. A request without `Origin` is not a browser's (browsers always send it) and is
    /// accepted.
    pub allowed_origins: Option<Vec<String>>,
    /// More header fields for the `101` response (e.g. `Set-Cookie`). Names must be tokens,
    /// values free of control characters, and none of the fields the handshake sets itself
    /// (`Upgrade`, `Connection`, `Sec-WebSocket-*`, `Content-Length`, `Transfer-Encoding`).
    pub extra_headers: Vec<(String, String)>,
}

/// A successful handshake: the response to send and what was agreed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The complete `101 Switching Protocols` head, ending with the empty line.
    pub response: Vec<u8>,
    /// The chosen subprotocol, if any.
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters in force, if negotiated.
    pub deflate: Option<DeflateParams>,
}

/// Validates `request` as a WebSocket upgrade (RFC 6455 §4.2.1) and builds the `101` response
/// (RFC 6455 §4.2.2).
///
/// Checks, in order: header syntax; `GET`; HTTP/1.1 or later; the request target; `Host`
/// present exactly once; `Upgrade` containing `websocket` and `Connection` containing `Upgrade`
/// (case-insensitive tokens, lists possibly spread over several lines); `Sec-WebSocket-Key`
/// present once and the base64 of 16 bytes; `Sec-WebSocket-Version` exactly `13`; no body;
/// the syntax of `Sec-WebSocket-Protocol` and `Sec-WebSocket-Extensions`; the `Origin` policy.
/// Then picks the first of the server's subprotocols that the client offered and negotiates
/// permessage-deflate from `config.deflate` (`None`: never).
///
/// On error, send [`HandshakeError::response`] and close the connection.
pub fn accept(
    request: &Request,
    config: &Config,
    options: &AcceptOptions,
) -> Result<Accepted, HandshakeError> {
    let checked = validate(request)?;
    check_origin(request, options)?;
    if let Some((name, _)) = options
        .extra_headers
        .iter()
        .find(|(n, v)| !is_writable_header(n, v, RESERVED_101_HEADERS))
    {
        return Err(HandshakeError::InvalidResponseHeader { name: name.clone() });
    }

    // RFC 6455 §4.2.2 step 4, /subprotocol/: "The value chosen MUST be derived from the
    // client's handshake, specifically by selecting one of the values from the
    // |Sec-WebSocket-Protocol| field that the server is willing to use for this connection".
    let subprotocol = options
        .subprotocols
        .iter()
        .find(|ours| checked.subprotocols.contains(&ours.as_bytes()))
        .cloned();
    let agreement = config
        .deflate
        .as_ref()
        .and_then(|d| negotiation::negotiate(&checked.extensions, d));

    // RFC 6455 §4.2.2 step 5: the status line, Upgrade, Connection, Sec-WebSocket-Accept,
    // then optionally Sec-WebSocket-Protocol and Sec-WebSocket-Extensions.
    let mut response = Vec::with_capacity(256);
    response.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    push_header(&mut response, "Upgrade", b"websocket");
    push_header(&mut response, "Connection", b"Upgrade");
    push_header(
        &mut response,
        "Sec-WebSocket-Accept",
        accept_key(checked.key).as_bytes(),
    );
    if let Some(p) = &subprotocol {
        push_header(&mut response, "Sec-WebSocket-Protocol", p.as_bytes());
    }
    if let Some(a) = &agreement {
        push_header(
            &mut response,
            "Sec-WebSocket-Extensions",
            a.response.as_bytes(),
        );
    }
    for (name, value) in &options.extra_headers {
        push_header(&mut response, name, value.as_bytes());
    }
    response.extend_from_slice(b"\r\n");
    Ok(Accepted {
        response,
        subprotocol,
        deflate: agreement.map(|a| a.params),
    })
}

/// A complete HTTP error response for an application that refuses a handshake (e.g. 401 or
/// 404): status line, `Connection: close`, `Content-Type: text/plain; charset=utf-8`,
/// `Content-Length`, `headers`, then `body`.
///
/// Headers that could not be sent safely (a name that is not a token, a value with control
/// characters) or that this function sets itself (`Connection`, `Content-Length`,
/// `Content-Type`, `Transfer-Encoding`) are left out. A `status` outside 100-999 becomes 500.
pub fn reject_response(status: u16, headers: &[(String, String)], body: &str) -> Vec<u8> {
    let kept: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(n, v)| is_writable_header(n, v, RESERVED_ERROR_HEADERS))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    error_response(status, "close", &kept, body)
}

/// What validation extracted from the request.
pub(super) struct Checked<'a> {
    pub(super) key: &'a [u8],
    pub(super) subprotocols: Vec<&'a [u8]>,
    pub(super) extensions: Vec<Extension>,
}

pub(super) fn validate(request: &Request) -> Result<Checked<'_>, HandshakeError> {
    use HandshakeError as E;
    let headers = request.header_lines();
    for (name, value) in headers {
        // RFC 9110 §5.1: "field-name = token".
        if !is_token(name.as_bytes()) {
            return Err(E::InvalidHeaderName);
        }
        // RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and
        // dangerous".
        if !is_field_value(value) {
            return Err(E::InvalidHeaderValue { name: name.clone() });
        }
    }

    // RFC 6455 §4.2.1 item 1: "An HTTP/1.1 or higher GET request, including a "Request-URI"
    // [RFC2616] that should be interpreted as a /resource name/ defined in Section 3 (or an
    // absolute HTTP/HTTPS URI containing the /resource name/)."
    if request.method() != "GET" {
        return Err(E::MethodNotGet {
            method: request.method().to_string(),
        });
    }
    if request.http_minor_version() < 1 {
        return Err(E::HttpVersionTooOld);
    }
    if !is_valid_target(request.target()) {
        return Err(E::InvalidTarget);
    }

    // RFC 6455 §4.2.1 item 2: "A |Host| header field containing the server's authority."
    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any
    // HTTP/1.1 request message that lacks a Host header field and to any request message that
    // contains more than one Host header field line or a Host header field with an invalid
    // field value."
    let mut hosts = values(headers, "Host");
    let host = hosts.next().ok_or(E::MissingHost)?;
    if hosts.next().is_some() {
        return Err(E::DuplicateHost);
    }
    if !is_valid_host(trim_ows(host)) {
        return Err(E::InvalidHost);
    }

    // RFC 6455 §4.2.1 item 3: "An |Upgrade| header field containing the value "websocket",
    // treated as an ASCII case-insensitive value."
    if values(headers, "Upgrade").next().is_none() {
        return Err(E::MissingUpgrade);
    }
    if !list_contains(values(headers, "Upgrade"), "websocket") {
        return Err(E::UpgradeNotWebSocket);
    }

    // RFC 6455 §4.2.1 item 4: "A |Connection| header field that includes the token "Upgrade",
    // treated as an ASCII case-insensitive value."
    if values(headers, "Connection").next().is_none() {
        return Err(E::MissingConnection);
    }
    if !list_contains(values(headers, "Connection"), "Upgrade") {
        return Err(E::ConnectionNotUpgrade);
    }

    // RFC 6455 §4.2.1 item 5: "A |Sec-WebSocket-Key| header field with a base64-encoded value
    // that, when decoded, is 16 bytes in length." RFC 6455 §11.3.1: "The
    // |Sec-WebSocket-Key| header field MUST NOT appear more than once in an HTTP request."
    let mut keys = values(headers, "Sec-WebSocket-Key");
    let key = trim_ows(keys.next().ok_or(E::MissingKey)?);
    if keys.next().is_some() {
        return Err(E::DuplicateKey);
    }
    let decoded = STANDARD.decode(key).map_err(|_| E::KeyNotBase64)?;
    if decoded.len() != 16 {
        return Err(E::KeyWrongLength {
            decoded_len: decoded.len(),
        });
    }

    // RFC 6455 §4.2.1 item 6: "A |Sec-WebSocket-Version| header field, with a value of 13."
    let versions: Vec<&[u8]> = values(headers, "Sec-WebSocket-Version").collect();
    match versions[..] {
        [] => return Err(E::MissingVersion),
        [v] if trim_ows(v) == WEBSOCKET_VERSION.as_bytes() => {}
        _ => {
            return Err(E::UnsupportedVersion {
                version: join_lossy(&versions),
            });
        }
    }

    // Not an RFC 6455 rule but a hardening: bytes after the head are WebSocket frames, so a
    // body announced by RFC 9112 §6.1/§6.2 framing would be misread (request smuggling).
    if values(headers, "Transfer-Encoding").next().is_some()
        || values(headers, "Content-Length").any(|v| trim_ows(v) != b"0")
    {
        return Err(E::UnexpectedBody);
    }

    // RFC 6455 §4.1 item 10: "The elements that comprise this value MUST be non-empty strings
    // with characters in the range U+0021 to U+007E not including separator characters as
    // defined in [RFC2616] and MUST all be unique strings."
    let subprotocols: Vec<&[u8]> =
        list_elements(values(headers, "Sec-WebSocket-Protocol")).collect();
    for (i, p) in subprotocols.iter().enumerate() {
        if !is_token(p) || subprotocols[..i].contains(p) {
            return Err(E::InvalidSubprotocols);
        }
    }

    // RFC 6455 §4.2.1: "including but not limited to any violations of the ABNF grammar
    // specified for the components of the handshake, the server MUST stop processing the
    // client's handshake and return an HTTP response with an appropriate error code".
    let extensions = extensions::parse(values(headers, "Sec-WebSocket-Extensions"))
        .map_err(|_| E::InvalidExtensions)?;

    Ok(Checked {
        key,
        subprotocols,
        extensions,
    })
}

// RFC 6455 §10.2: "Servers that are not intended to process input from any web page but only
// for certain sites SHOULD verify the |Origin| field is an origin they expect. If the origin
// indicated is unacceptable to the server, then it SHOULD respond to the WebSocket handshake
// with a reply containing HTTP 403 Forbidden status code."
pub(super) fn check_origin(
    request: &Request,
    options: &AcceptOptions,
) -> Result<(), HandshakeError> {
    let Some(allowed) = &options.allowed_origins else {
        return Ok(());
    };
    let origins: Vec<&[u8]> = request.header_all("Origin").collect();
    match origins[..] {
        [] => Ok(()),
        [origin]
            if allowed
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(trim_ows(origin))) =>
        {
            Ok(())
        }
        _ => Err(HandshakeError::ForbiddenOrigin {
            origin: join_lossy(&origins),
        }),
    }
}

/// RFC 9112 §3.2: origin-form (`/path?query`) or absolute-form; RFC 6455 §3 allows `ws`/`wss`.
fn is_valid_target(target: &str) -> bool {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    target.starts_with('/')
        || ["http://", "https://", "ws://", "wss://"]
            .iter()
            .any(|s| lower.starts_with(s))
}

/// RFC 9110 §7.2: `Host = uri-host [ ":" port ]`, with RFC 3986 §3.2.2 characters
/// (unreserved, pct-encoded, sub-delims, and the brackets of an IP literal).
fn is_valid_host(host: &[u8]) -> bool {
    host.iter().all(|&b| is_authority_byte(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::parse_request;

    fn req(head: &str) -> Request {
        let (r, n) = parse_request(head.as_bytes(), &Config::default())
            .unwrap()
            .unwrap();
        assert_eq!(n, head.len());
        r
    }

    const BASE: &str = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n";

    fn with(extra: &str) -> Request {
        req(&format!("{BASE}{extra}\r\n"))
    }

    #[test]
    fn minimal_request_gets_exact_101() {
        let a = accept(&with(""), &Config::default(), &AcceptOptions::default()).unwrap();
        assert_eq!(
            String::from_utf8(a.response).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert_eq!(a.subprotocol, None);
        assert_eq!(a.deflate, None);
    }

    #[test]
    fn subprotocol_follows_server_preference() {
        let r = with("Sec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol: c\r\n");
        let mut o = AcceptOptions {
            subprotocols: vec!["x".into(), "c".into(), "a".into()],
            ..AcceptOptions::default()
        };
        let a = accept(&r, &Config::default(), &o).unwrap();
        assert_eq!(a.subprotocol.as_deref(), Some("c"));
        assert!(
            String::from_utf8(a.response)
                .unwrap()
                .contains("\r\nSec-WebSocket-Protocol: c\r\n")
        );
        o.subprotocols = vec!["A".into()];
        assert_eq!(
            accept(&r, &Config::default(), &o).unwrap().subprotocol,
            None
        );
    }

    #[test]
    fn deflate_only_when_configured() {
        let r = with("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
        let mut c = Config::default();
        let a = accept(&r, &c, &AcceptOptions::default()).unwrap();
        assert!(a.deflate.is_some());
        assert!(
            String::from_utf8(a.response)
                .unwrap()
                .contains("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n")
        );
        c.deflate = None;
        let a = accept(&r, &c, &AcceptOptions::default()).unwrap();
        assert_eq!(a.deflate, None);
        assert!(
            !String::from_utf8(a.response)
                .unwrap()
                .contains("Extensions")
        );
    }

    #[test]
    fn extra_headers_are_written_or_refused() {
        let mut o = AcceptOptions {
            extra_headers: vec![("Set-Cookie".into(), "a=b".into())],
            ..AcceptOptions::default()
        };
        let a = accept(&with(""), &Config::default(), &o).unwrap();
        assert!(
            String::from_utf8(a.response)
                .unwrap()
                .ends_with("\r\nSet-Cookie: a=b\r\n\r\n")
        );
        for (n, v) in [
            ("X", "a\r\nInjected: 1"),
            ("Bad Name", "v"),
            ("connection", "close"),
        ] {
            o.extra_headers = vec![(n.into(), v.into())];
            let e = accept(&with(""), &Config::default(), &o).unwrap_err();
            assert_eq!(e, HandshakeError::InvalidResponseHeader { name: n.into() });
        }
    }

    #[test]
    fn from_parts_values_are_checked() {
        let mut h = vec![
            ("Host".to_string(), b"h".to_vec()),
            ("Upgrade".to_string(), b"websocket".to_vec()),
            ("Connection".to_string(), b"Upgrade".to_vec()),
            (
                "Sec-WebSocket-Key".to_string(),
                b"dGhlIHNhbXBsZSBub25jZQ==".to_vec(),
            ),
            ("Sec-WebSocket-Version".to_string(), b"13".to_vec()),
        ];
        let c = Config::default();
        let o = AcceptOptions::default();
        assert!(accept(&Request::from_parts("GET", "/", 1, h.clone()), &c, &o).is_ok());
        h.push(("X-A".into(), b"a\nb".to_vec()));
        assert_eq!(
            accept(&Request::from_parts("GET", "/", 1, h.clone()), &c, &o),
            Err(HandshakeError::InvalidHeaderValue { name: "X-A".into() })
        );
        h.pop();
        h.push(("X A".into(), b"v".to_vec()));
        assert_eq!(
            accept(&Request::from_parts("GET", "/", 1, h), &c, &o),
            Err(HandshakeError::InvalidHeaderName)
        );
    }

    #[test]
    fn targets_and_hosts() {
        assert!(is_valid_target("/"));
        assert!(is_valid_target("HTTPS://a/b"));
        assert!(is_valid_target("ws://a"));
        assert!(!is_valid_target("*"));
        assert!(!is_valid_target("example.com:443"));
        assert!(is_valid_host(b"[::1]:8080"));
        assert!(is_valid_host(b""));
        assert!(!is_valid_host(b"a b"));
        assert!(!is_valid_host(b"a/b"));
    }

    #[test]
    fn reject_response_drops_unsafe_headers() {
        let r = reject_response(
            401,
            &[
                ("WWW-Authenticate".into(), "Basic".into()),
                ("X-Evil".into(), "a\r\nSet-Cookie: x".into()),
                ("Content-Length".into(), "0".into()),
            ],
            "who are you?",
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\
             WWW-Authenticate: Basic\r\n\r\nwho are you?"
        );
    }
}
