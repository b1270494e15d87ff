//! The client's opening handshake: [`ClientRequest`], [`client_request`] and the
//! [`PendingHandshake`] that checks the answer (see the `response` module).

use std::fmt;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::extensions::Extension;
use super::http::{is_authority_byte, is_token, is_writable_header, push_header};
use super::negotiation;
use super::{WEBSOCKET_VERSION, accept_key};
use crate::Config;
use crate::deflate::DeflateConfig;

/// Header fields the request sets itself; `ClientRequest::extra_headers` may not.
const RESERVED_REQUEST_HEADERS: &[&str] = &[
    "Host",
    "Upgrade",
    "Connection",
    "Origin",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
    "Content-Length",
    "Transfer-Encoding",
];

/// What a client asks for in its opening handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// The authority as it goes in `Host`: host name or IP literal, with the port unless it is
    /// the scheme's default (RFC 6455 §4.1 item 4), e.g. `"example.com"`, `"[::1]:9001"`.
    pub host: String,
    /// Path and query, starting with `/` (RFC 6455 §3 /resource name/), e.g. `"/chat?x=1"`.
    pub resource: String,
    /// Subprotocols to offer, most preferred first (RFC 6455 §4.1 item 10).
    pub subprotocols: Vec<String>,
    /// `Origin` to send (RFC 6455 §4.1 item 8; browsers always send one).
    pub origin: Option<String>,
    /// More header fields (e.g. `Authorization`, `Cookie`), sent as given.
    pub extra_headers: Vec<(String, String)>,
}

/// A [`ClientRequest`] field that cannot be sent as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequestError {
    /// The offending field, e.g. `"resource"`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ClientRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid client request `{}`: {}",
            self.field, self.problem
        )
    }
}

impl std::error::Error for ClientRequestError {}

impl ClientRequest {
    /// A request for `resource` on `host`, with no subprotocol, origin or extra header.
    pub fn new(host: impl Into<String>, resource: impl Into<String>) -> ClientRequest {
        ClientRequest {
            host: host.into(),
            resource: resource.into(),
            subprotocols: Vec::new(),
            origin: None,
            extra_headers: Vec::new(),
        }
    }

    /// Checks that every field can be sent as given.
    ///
    /// [`client_request`] never writes an unsafe byte: it percent-encodes what `host`,
    /// `resource` and `origin` may not contain, prefixes a `resource` without a leading `/`,
    /// and leaves out invalid or duplicated subprotocols and invalid or reserved extra
    /// headers. Call this first to report such input instead.
    pub fn validate(&self) -> Result<(), ClientRequestError> {
        let err = |field, problem: String| Err(ClientRequestError { field, problem });
        if !self.host.bytes().all(is_authority_byte) {
            return err(
                "host",
                "contains characters not allowed in an authority".into(),
            );
        }
        if !self.resource.starts_with('/') {
            return err("resource", "must start with `/`".into());
        }
        if !self.resource.bytes().all(is_resource_byte) {
            return err(
                "resource",
                "contains characters that must be percent-encoded".into(),
            );
        }
        if let Some(origin) = &self.origin {
            if !origin.bytes().all(is_origin_byte) {
                return err(
                    "origin",
                    "contains spaces, controls or non-ASCII characters".into(),
                );
            }
        }
        for (i, p) in self.subprotocols.iter().enumerate() {
            if !is_token(p.as_bytes()) {
                return err("subprotocols", format!("{p:?} is not a token"));
            }
            if self.subprotocols[..i].contains(p) {
                return err("subprotocols", format!("{p:?} is offered twice"));
            }
        }
        for (name, value) in &self.extra_headers {
            if !is_writable_header(name, value, RESERVED_REQUEST_HEADERS) {
                return err(
                    "extra_headers",
                    format!("{name:?} has an invalid name or value, or is set by the handshake"),
                );
            }
        }
        Ok(())
    }
}

/// RFC 3986 §3.3 and §3.4: `pchar`, `/` and `?`; everything else is percent-encoded. In
/// particular RFC 6455 §3: "The character "#" is only used to indicate the start of a fragment
/// when it is used in WebSocket URIs. ... it MUST be escaped as %23".
fn is_resource_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/?".contains(&b)
}

/// RFC 6454 §7: a serialized origin is visible ASCII.
fn is_origin_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

fn percent_encode(s: &str, keep: fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What the client needs to check the server's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingHandshake {
    key: String,
    expected_accept: String,
    subprotocols: Vec<String>,
    deflate: OfferedDeflate,
}

/// The permessage-deflate offer a request made, which the answer is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum OfferedDeflate {
    /// Our own offer, made from this configuration (`None`: no offer).
    Ours(Option<DeflateConfig>),
    /// Another client's offers, forwarded by an intermediary (empty: no offer).
    Forwarded(Vec<Extension>),
}

/// Builds the client's opening handshake (RFC 6455 §4.1).
///
/// `key` must be 16 fresh random bytes from the caller (the engine has no RNG): RFC 6455 §4.1
/// item 7 "The nonce MUST be selected randomly for each connection." permessage-deflate is
/// offered per `config.deflate`. Returns the request bytes and the state that checks the
/// answer. Unsafe field content is encoded or left out, see [`ClientRequest::validate`].
pub fn client_request(
    req: &ClientRequest,
    config: &Config,
    key: [u8; 16],
) -> (Vec<u8>, PendingHandshake) {
    let deflate = config.deflate.clone();
    let extensions = deflate.as_ref().map(negotiation::client_offer);
    build_request(
        req,
        &req.subprotocols,
        extensions,
        OfferedDeflate::Ours(deflate),
        key,
    )
}

/// The request head and its pending state: `subprotocols` and `extensions` are offered as
/// given (invalid or duplicated subprotocols left out), the rest comes from `req`.
pub(super) fn build_request(
    req: &ClientRequest,
    offered_subprotocols: &[String],
    extensions: Option<String>,
    deflate: OfferedDeflate,
    key: [u8; 16],
) -> (Vec<u8>, PendingHandshake) {
    let key = STANDARD.encode(key);
    let mut resource = percent_encode(&req.resource, is_resource_byte);
    if !resource.starts_with('/') {
        resource.insert(0, '/');
    }
    let mut subprotocols: Vec<String> = Vec::new();
    for p in offered_subprotocols {
        if is_token(p.as_bytes()) && !subprotocols.contains(p) {
            subprotocols.push(p.clone());
        }
    }

    let mut out = Vec::with_capacity(256);
    // RFC 6455 §4.1 items 1-2: "The handshake MUST be a valid HTTP request as specified by
    // [RFC2616]. The method of the request MUST be GET, and the HTTP version MUST be at least
    // 1.1."
    out.extend_from_slice(format!("GET {resource} HTTP/1.1\r\n").as_bytes());
    // RFC 6455 §4.1 item 4: "The request MUST contain a |Host| header field".
    push_header(
        &mut out,
        "Host",
        percent_encode(&req.host, is_authority_byte).as_bytes(),
    );
    // RFC 6455 §4.1 items 5-6: |Upgrade| "websocket" and |Connection| "Upgrade".
    push_header(&mut out, "Upgrade", b"websocket");
    push_header(&mut out, "Connection", b"Upgrade");
    // RFC 6455 §4.1 item 7: "a randomly selected 16-byte value that has been base64-encoded".
    push_header(&mut out, "Sec-WebSocket-Key", key.as_bytes());
    // RFC 6455 §4.1 item 9: "|Sec-WebSocket-Version|. The value of this header field MUST be 13."
    push_header(
        &mut out,
        "Sec-WebSocket-Version",
        WEBSOCKET_VERSION.as_bytes(),
    );
    if let Some(origin) = &req.origin {
        push_header(
            &mut out,
            "Origin",
            percent_encode(origin, is_origin_byte).as_bytes(),
        );
    }
    if !subprotocols.is_empty() {
        push_header(
            &mut out,
            "Sec-WebSocket-Protocol",
            subprotocols.join(", ").as_bytes(),
        );
    }
    if let Some(offer) = &extensions {
        push_header(&mut out, "Sec-WebSocket-Extensions", offer.as_bytes());
    }
    for (name, value) in &req.extra_headers {
        if is_writable_header(name, value, RESERVED_REQUEST_HEADERS) {
            push_header(&mut out, name, value.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");

    let expected_accept = accept_key(key.as_bytes());
    (
        out,
        PendingHandshake {
            key,
            expected_accept,
            subprotocols,
            deflate,
        },
    )
}

impl PendingHandshake {
    /// The `Sec-WebSocket-Key` sent.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Sec-WebSocket-Accept` the server must answer.
    pub fn expected_accept(&self) -> &str {
        &self.expected_accept
    }

    /// The subprotocols offered (after leaving out invalid ones), in order.
    pub fn offered_subprotocols(&self) -> &[String] {
        &self.subprotocols
    }

    pub(super) fn offered_deflate(&self) -> &OfferedDeflate {
        &self.deflate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = *b"the sample nonce";

    #[test]
    fn offers_deflate_per_config() {
        let r = ClientRequest::new("h", "/");
        let (bytes, p) = client_request(&r, &Config::default(), KEY);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(
            "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        ));
        assert_eq!(
            p.offered_deflate(),
            &OfferedDeflate::Ours(Config::default().deflate)
        );
        let c = Config {
            deflate: None,
            ..Config::default()
        };
        let (bytes, p) = client_request(&r, &c, KEY);
        assert!(!String::from_utf8(bytes).unwrap().contains("Extensions"));
        assert_eq!(p.offered_deflate(), &OfferedDeflate::Ours(None));
    }

    #[test]
    fn request_matches_rfc_example() {
        let mut r = ClientRequest::new("server.example.com", "/chat");
        r.subprotocols = vec!["chat".into(), "superchat".into()];
        r.origin = Some("http://example.com".into());
        let c = Config {
            deflate: None,
            ..Config::default()
        };
        let (bytes, p) = client_request(&r, &c, KEY);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\n\r\n"
        );
        assert_eq!(p.key(), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(p.expected_accept(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn unsafe_fields_are_encoded_or_dropped() {
        let mut r = ClientRequest::new("evil\r\nX: y", "chat room#frag");
        r.origin = Some("http://a b".into());
        r.subprotocols = vec!["ok".into(), "not ok".into(), "ok".into()];
        r.extra_headers = vec![
            ("Authorization".into(), "Bearer t".into()),
            ("X-Bad".into(), "a\r\nb".into()),
            ("Sec-WebSocket-Key".into(), "x".into()),
        ];
        assert_eq!(r.validate().unwrap_err().field, "host");
        let (bytes, p) = client_request(&r, &Config::default(), KEY);
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.starts_with("GET /chat%20room%23frag HTTP/1.1\r\nHost: evil%0D%0AX:%20y\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nOrigin: http://a%20b\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Protocol: ok\r\n"));
        assert!(text.contains("\r\nAuthorization: Bearer t\r\n"));
        assert!(!text.contains("X-Bad") && text.matches("Sec-WebSocket-Key").count() == 1);
        assert_eq!(p.offered_subprotocols(), ["ok"]);
    }

    #[test]
    fn validate_names_the_field() {
        let ok = ClientRequest::new("[::1]:9001", "/a?b=c");
        assert_eq!(ok.validate(), Ok(()));
        let field = |f: fn(&mut ClientRequest)| {
            let mut r = ok.clone();
            f(&mut r);
            r.validate().unwrap_err().field
        };
        assert_eq!(field(|r| r.resource = "a".into()), "resource");
        assert_eq!(field(|r| r.resource = "/a b".into()), "resource");
        assert_eq!(field(|r| r.origin = Some("é".into())), "origin");
        assert_eq!(
            field(|r| r.subprotocols = vec!["a".into(), "a".into()]),
            "subprotocols"
        );
        assert_eq!(
            field(|r| r.extra_headers = vec![("Host".into(), "x".into())]),
            "extra_headers"
        );
    }
}
