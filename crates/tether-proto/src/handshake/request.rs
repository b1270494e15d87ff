//! The server's view of a client's opening handshake: [`Request`] and [`parse_request`].

use super::error::HandshakeError;
use super::http::{list_elements, values};
use crate::Config;

/// A parsed client opening handshake (the head of an HTTP request).
///
/// Header names are matched ASCII case-insensitively; values are kept as the bytes received
/// (without surrounding whitespace when parsed by [`parse_request`]). Nothing here is
/// validated as a WebSocket upgrade yet: [`super::accept`] does that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    method: String,
    target: String,
    http_minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// Builds a request from parts, for callers that parsed the head elsewhere (e.g. hyper).
    ///
    /// `http_minor_version` is `1` for HTTP/1.1 (`0` for HTTP/1.0, which [`super::accept`]
    /// refuses). Header names and values are checked by [`super::accept`].
    pub fn from_parts(
        method: &str,
        target: &str,
        http_minor_version: u8,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Request {
        Request {
            method: method.to_string(),
            target: target.to_string(),
            http_minor_version,
            headers,
        }
    }

    /// The method, e.g. `"GET"`.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent, e.g. `"/chat?room=1"`.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The minor HTTP version: `1` for HTTP/1.1.
    pub fn http_minor_version(&self) -> u8 {
        self.http_minor_version
    }

    /// Every header line, in order, as `(name, value)`.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The value of the first header line named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        values(&self.headers, name).next()
    }

    /// The values of every header line named `name` (ASCII case-insensitive), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        values(&self.headers, name)
    }

    /// The value of the first header line named `name`, if present and valid UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The `Sec-WebSocket-Key` value (first line), as sent.
    pub fn key(&self) -> Option<&[u8]> {
        self.header("Sec-WebSocket-Key")
    }

    /// The `Host` value (first line).
    pub fn host(&self) -> Option<&[u8]> {
        self.header("Host")
    }

    /// The `Origin` value (first line). Browsers always send it; other clients may not.
    pub fn origin(&self) -> Option<&[u8]> {
        self.header("Origin")
    }

    /// The `Sec-WebSocket-Version` value (first line).
    pub fn version(&self) -> Option<&[u8]> {
        self.header("Sec-WebSocket-Version")
    }

    /// The subprotocols the client offers in `Sec-WebSocket-Protocol`, in the client's order
    /// of preference, over all lines (elements that are not UTF-8 are skipped).
    pub fn subprotocols(&self) -> Vec<&str> {
        list_elements(values(&self.headers, "Sec-WebSocket-Protocol"))
            .filter_map(|e| std::str::from_utf8(e).ok())
            .collect()
    }

    pub(crate) fn header_lines(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }
}

/// Parses the head of a client's request from the bytes received so far.
///
/// * `Ok(None)`: the head is incomplete; read more and call again with all bytes so far.
/// * `Ok(Some((request, head_len)))`: the head is complete and `head_len` bytes long; bytes
///   after it already belong to the WebSocket stream.
/// * `Err(_)`: refuse with [`HandshakeError::response`] and close. A head longer than
///   `config.max_handshake_size` is refused as soon as that many bytes arrived without its end
///   (431), as are more than `config.max_headers` header lines (431).
pub fn parse_request(
    buf: &[u8],
    config: &Config,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let limit = config.max_handshake_size;
    // Never look past the limit: a head that does not end within it is refused anyway.
    let window = &buf[..buf.len().min(limit)];
    // Every header line takes at least 3 bytes ("a:\n"), so a head within the limit never
    // has more than limit / 3 of them: no need for more slots than that.
    let slots = config.max_headers.min(limit / 3 + 1);
    let mut headers = vec![httparse::EMPTY_HEADER; slots];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => {
            let request = Request {
                method: parsed.method.unwrap_or_default().to_string(),
                target: parsed.path.unwrap_or_default().to_string(),
                http_minor_version: parsed.version.unwrap_or_default(),
                headers: parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect(),
            };
            Ok(Some((request, head_len)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= limit => {
            Err(HandshakeError::HeadTooLarge { limit })
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) if slots < config.max_headers => {
            Err(HandshakeError::HeadTooLarge { limit })
        }
        Err(httparse::Error::TooManyHeaders) => Err(HandshakeError::TooManyHeaders {
            limit: config.max_headers,
        }),
        Err(e) => Err(HandshakeError::MalformedRequest {
            reason: describe(e),
        }),
    }
}

/// A static description of an HTTP parse error, for the response body.
pub(crate) fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQ: &[u8] = b"GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\n\
        Upgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: chat, superchat\r\nsec-websocket-protocol: v2 \r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn parses_a_complete_head_and_leaves_the_rest() {
        let mut buf = REQ.to_vec();
        buf.extend_from_slice(b"\x81\x80frame");
        let (req, n) = parse_request(&buf, &Config::default()).unwrap().unwrap();
        assert_eq!(n, REQ.len());
        assert_eq!(req.method(), "GET");
        assert_eq!(req.target(), "/chat?x=1");
        assert_eq!(req.http_minor_version(), 1);
        assert_eq!(req.host(), Some(&b"server.example.com"[..]));
        assert_eq!(req.header("UPGRADE"), Some(&b"websocket"[..]));
        assert_eq!(req.key(), Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]));
        assert_eq!(req.version(), Some(&b"13"[..]));
        assert_eq!(req.header_str("connection"), Some("Upgrade"));
        assert_eq!(req.subprotocols(), vec!["chat", "superchat", "v2"]);
        assert_eq!(req.header_all("sec-websocket-protocol").count(), 2);
        assert_eq!(req.headers().len(), 7);
        assert_eq!(req.origin(), None);
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for i in 0..REQ.len() {
            assert_eq!(
                parse_request(&REQ[..i], &Config::default()),
                Ok(None),
                "prefix {i}"
            );
        }
    }

    #[test]
    fn size_limit_applies_to_incomplete_heads() {
        let c = Config {
            max_handshake_size: 256,
            ..Config::default()
        };
        let mut buf = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        buf.resize(255, b'a');
        assert_eq!(parse_request(&buf, &c), Ok(None));
        buf.push(b'a');
        assert_eq!(
            parse_request(&buf, &c),
            Err(HandshakeError::HeadTooLarge { limit: 256 })
        );
        // A complete head of exactly the limit is fine.
        let mut exact = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        exact.resize(252, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&exact, &c).unwrap().unwrap().1, 256);
    }

    #[test]
    fn header_count_limit() {
        let c = Config {
            max_headers: 8,
            ..Config::default()
        };
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..8 {
            buf.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        assert!(parse_request(&buf, &c).unwrap().is_none());
        let mut ok = buf.clone();
        ok.extend_from_slice(b"\r\n");
        assert!(parse_request(&ok, &c).unwrap().is_some());
        // The ninth line is refused before the head is complete.
        buf.extend_from_slice(b"X-9: y\r\n");
        assert_eq!(
            parse_request(&buf, &c),
            Err(HandshakeError::TooManyHeaders { limit: 8 })
        );
    }

    #[test]
    fn malformed_heads() {
        let c = Config::default();
        for bad in [
            &b"HELLO\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
        ] {
            let e = parse_request(bad, &c).unwrap_err();
            assert!(
                matches!(e, HandshakeError::MalformedRequest { .. }),
                "{bad:?}: {e:?}"
            );
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn from_parts_keeps_everything() {
        let r = Request::from_parts("GET", "/", 1, vec![("Host".into(), b"h".to_vec())]);
        assert_eq!(r.host(), Some(&b"h"[..]));
        assert_eq!(r.header_lines().len(), 1);
    }
}
