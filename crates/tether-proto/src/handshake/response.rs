//! The client's check of the server's answer (RFC 6455 §4.1, RFC 7692 §7.1):
//! [`PendingHandshake::parse_response`] and [`PendingHandshake::check_response`].

use super::client::{OfferedDeflate, PendingHandshake};
use super::error::ClientHandshakeError;
use super::extensions;
use super::http::{
    is_field_value, is_token, join_lossy, list_contains, list_elements, trim_ows, values,
};
use super::negotiation;
use super::request::describe;
use crate::Config;
use crate::deflate::DeflateParams;

/// The server's accepted answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Always 101.
    pub status: u16,
    /// Every header line, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The subprotocol the server chose, if any.
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters in force, if the server accepted our offer.
    pub deflate: Option<DeflateParams>,
}

impl Response {
    /// The value of the first header line named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        values(&self.headers, name).next()
    }
}

impl PendingHandshake {
    /// Parses and checks the server's answer from the bytes received so far.
    ///
    /// `Ok(None)`: the head is incomplete, read more and call again with all bytes so far.
    /// `Ok(Some((response, head_len)))`: the handshake succeeded; bytes after `head_len`
    /// belong to the WebSocket stream. Errors say which check failed; a non-101 status gives
    /// [`ClientHandshakeError::NotSwitchingProtocols`] with the server's head (its body, if
    /// any, is not read). Limits are `config.max_handshake_size` and `config.max_headers`.
    pub fn parse_response(
        &self,
        buf: &[u8],
        config: &Config,
    ) -> Result<Option<(Response, usize)>, ClientHandshakeError> {
        let limit = config.max_handshake_size;
        let window = &buf[..buf.len().min(limit)];
        // A header line takes at least 3 bytes, so a head within the limit has fewer lines.
        let slots = config.max_headers.min(limit / 3 + 1);
        let mut headers = vec![httparse::EMPTY_HEADER; slots];
        let mut parsed = httparse::Response::new(&mut headers);
        match parsed.parse(window) {
            Ok(httparse::Status::Complete(head_len)) => {
                let status = parsed.code.unwrap_or_default();
                let reason = parsed.reason.unwrap_or_default().to_string();
                let headers = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect();
                let response = self.check(status, reason, headers)?;
                Ok(Some((response, head_len)))
            }
            Ok(httparse::Status::Partial) if buf.len() >= limit => {
                Err(ClientHandshakeError::HeadTooLarge { limit })
            }
            Ok(httparse::Status::Partial) => Ok(None),
            Err(httparse::Error::TooManyHeaders) if slots < config.max_headers => {
                Err(ClientHandshakeError::HeadTooLarge { limit })
            }
            Err(httparse::Error::TooManyHeaders) => Err(ClientHandshakeError::TooManyHeaders {
                limit: config.max_headers,
            }),
            Err(e) => Err(ClientHandshakeError::MalformedResponse {
                reason: describe(e).into(),
            }),
        }
    }

    /// The same checks as [`PendingHandshake::parse_response`], on a head parsed elsewhere
    /// (e.g. by hyper). `NotSwitchingProtocols::reason` is then empty.
    pub fn check_response(
        &self,
        status: u16,
        headers: &[(String, Vec<u8>)],
    ) -> Result<Response, ClientHandshakeError> {
        self.check(status, String::new(), headers.to_vec())
    }

    fn check(
        &self,
        status: u16,
        reason: String,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<Response, ClientHandshakeError> {
        use ClientHandshakeError as E;
        // RFC 6455 §4.1: "If the status code received from the server is not 101, the client
        // handles the response per HTTP [RFC2616] procedures."
        if status != 101 {
            return Err(E::NotSwitchingProtocols {
                status,
                reason,
                headers,
            });
        }
        let (subprotocol, deflate) = self.check_101(&headers)?;
        Ok(Response {
            status,
            headers,
            subprotocol,
            deflate,
        })
    }

    /// The checks of a 101 answer; returns the subprotocol and deflate parameters in force.
    fn check_101(
        &self,
        headers: &[(String, Vec<u8>)],
    ) -> Result<(Option<String>, Option<DeflateParams>), ClientHandshakeError> {
        use ClientHandshakeError as E;
        for (name, value) in headers {
            // RFC 9110 §5.1 and §5.5 (only reachable through check_response).
            if !is_token(name.as_bytes()) || !is_field_value(value) {
                return Err(E::MalformedResponse {
                    reason: format!("invalid header {name:?}"),
                });
            }
        }

        // RFC 6455 §4.1 (2): "If the response lacks an |Upgrade| header field or the |Upgrade|
        // header field contains a value that is not an ASCII case-insensitive match for the
        // value "websocket", the client MUST _Fail the WebSocket Connection_."
        let upgrade: Vec<&[u8]> = values(headers, "Upgrade").collect();
        if upgrade.is_empty() {
            return Err(E::MissingUpgrade);
        }
        let mut elements = list_elements(upgrade.iter().copied()).peekable();
        if elements.peek().is_none() || !elements.all(|e| e.eq_ignore_ascii_case(b"websocket")) {
            return Err(E::InvalidUpgrade {
                value: join_lossy(&upgrade),
            });
        }

        // RFC 6455 §4.1 (3): "If the response lacks a |Connection| header field or the
        // |Connection| header field doesn't contain a token that is an ASCII case-insensitive
        // match for the value "Upgrade", the client MUST _Fail the WebSocket Connection_."
        let connection: Vec<&[u8]> = values(headers, "Connection").collect();
        if connection.is_empty() {
            return Err(E::MissingConnection);
        }
        if !list_contains(connection.iter().copied(), "Upgrade") {
            return Err(E::InvalidConnection {
                value: join_lossy(&connection),
            });
        }

        // RFC 6455 §4.1 (4): "If the response lacks a |Sec-WebSocket-Accept| header field or
        // the |Sec-WebSocket-Accept| contains a value other than the base64-encoded SHA-1 of
        // the concatenation of the |Sec-WebSocket-Key| (as a string, not base64-decoded) with
        // the string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" but ignoring any leading and
        // trailing whitespace, the client MUST _Fail the WebSocket Connection_."
        let accepts: Vec<&[u8]> = values(headers, "Sec-WebSocket-Accept").collect();
        match accepts[..] {
            [] => return Err(E::MissingAccept),
            [a] if trim_ows(a) == self.expected_accept().as_bytes() => {}
            _ => {
                return Err(E::WrongAccept {
                    expected: self.expected_accept().to_string(),
                    received: join_lossy(&accepts),
                });
            }
        }

        // RFC 6455 §4.1 (5): an extension "that was not present in the client's handshake"
        // fails the connection; RFC 7692 §5.1 and §7.1 for the parameters.
        let extensions = extensions::parse(values(headers, "Sec-WebSocket-Extensions"))
            .map_err(|_| E::InvalidExtensionHeader)?;
        let deflate = match self.offered_deflate() {
            OfferedDeflate::Ours(config) => {
                negotiation::check_response(&extensions, config.as_ref())?
            }
            OfferedDeflate::Forwarded(offers) => {
                negotiation::check_forwarded_response(&extensions, offers)?
            }
        };

        // RFC 6455 §4.1 (6): "If the response includes a |Sec-WebSocket-Protocol| header field
        // and this header field indicates the use of a subprotocol that was not present in the
        // client's handshake ..., the client MUST _Fail the WebSocket Connection_." RFC 6455
        // §11.3.4: the server's field carries a single value.
        let protocols: Vec<&[u8]> = values(headers, "Sec-WebSocket-Protocol").collect();
        let subprotocol = if protocols.is_empty() {
            None
        } else {
            let elements: Vec<&[u8]> = list_elements(protocols.iter().copied()).collect();
            let [chosen] = elements[..] else {
                return Err(E::SeveralSubprotocols {
                    value: join_lossy(&protocols),
                });
            };
            let protocol = String::from_utf8_lossy(chosen).into_owned();
            if self.offered_subprotocols().is_empty() {
                return Err(E::SubprotocolWhenNoneOffered { protocol });
            }
            if !self.offered_subprotocols().contains(&protocol) {
                return Err(E::SubprotocolNotOffered { protocol });
            }
            Some(protocol)
        };

        Ok((subprotocol, deflate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::{ClientRequest, client_request};

    fn pending(subprotocols: &[&str], deflate: bool) -> PendingHandshake {
        let mut r = ClientRequest::new("server.example.com", "/chat");
        r.subprotocols = subprotocols.iter().map(|s| s.to_string()).collect();
        let mut c = Config::default();
        if !deflate {
            c.deflate = None;
        }
        client_request(&r, &c, *b"the sample nonce").1
    }

    /// A valid 101 with the accept value for KEY, plus `extra` lines.
    fn answer(p: &PendingHandshake, extra: &str) -> Result<Response, ClientHandshakeError> {
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{extra}\r\n",
            p.expected_accept()
        );
        let (r, n) = p
            .parse_response(head.as_bytes(), &Config::default())?
            .unwrap();
        assert_eq!(n, head.len());
        Ok(r)
    }

    #[test]
    fn accepts_a_valid_answer_and_keeps_the_rest() {
        let p = pending(&["a", "b"], true);
        let r = answer(
            &p,
            "Sec-WebSocket-Protocol: b\r\nSec-WebSocket-Extensions: permessage-deflate\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 101);
        assert_eq!(r.subprotocol.as_deref(), Some("b"));
        assert_eq!(r.deflate.unwrap().server_max_window_bits, 15);
        assert_eq!(r.header("upgrade"), Some(&b"websocket"[..]));
    }

    #[test]
    fn every_prefix_is_incomplete_and_limits_apply() {
        let p = pending(&[], false);
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            p.expected_accept()
        );
        for i in 0..head.len() {
            assert_eq!(
                p.parse_response(&head.as_bytes()[..i], &Config::default()),
                Ok(None)
            );
        }
        let mut c = Config {
            max_handshake_size: 256,
            ..Config::default()
        };
        let big = format!("HTTP/1.1 101 OK\r\nX: {}", "a".repeat(300));
        assert_eq!(
            p.parse_response(big.as_bytes(), &c),
            Err(ClientHandshakeError::HeadTooLarge { limit: 256 })
        );
        c.max_headers = 8;
        let many = format!("HTTP/1.1 101 OK\r\n{}", "X: y\r\n".repeat(9));
        assert_eq!(
            p.parse_response(many.as_bytes(), &c),
            Err(ClientHandshakeError::TooManyHeaders { limit: 8 })
        );
        assert!(matches!(
            p.parse_response(b"HTTP/1.1 abc\r\n\r\n", &c),
            Err(ClientHandshakeError::MalformedResponse { .. })
        ));
    }

    #[test]
    fn each_failed_check_has_its_variant() {
        use ClientHandshakeError as E;
        let p = pending(&["a"], true);
        let c = Config::default();
        let e = p.parse_response(b"HTTP/1.1 403 Forbidden\r\nX-Why: no\r\n\r\nbody", &c);
        assert_eq!(
            e,
            Err(E::NotSwitchingProtocols {
                status: 403,
                reason: "Forbidden".into(),
                headers: vec![("X-Why".into(), b"no".to_vec())],
            })
        );
        let head = |lines: &str| format!("HTTP/1.1 101 Switching Protocols\r\n{lines}\r\n");
        let acc = format!("Sec-WebSocket-Accept: {}\r\n", p.expected_accept());
        let cases: Vec<(String, E)> = vec![
            (
                head(&format!("Connection: Upgrade\r\n{acc}")),
                E::MissingUpgrade,
            ),
            (
                head(&format!("Upgrade: h2c\r\nConnection: Upgrade\r\n{acc}")),
                E::InvalidUpgrade {
                    value: "h2c".into(),
                },
            ),
            (
                head(&format!(
                    "Upgrade: websocket, h2c\r\nConnection: Upgrade\r\n{acc}"
                )),
                E::InvalidUpgrade {
                    value: "websocket, h2c".into(),
                },
            ),
            (
                head(&format!("Upgrade: websocket\r\n{acc}")),
                E::MissingConnection,
            ),
            (
                head(&format!("Upgrade: websocket\r\nConnection: close\r\n{acc}")),
                E::InvalidConnection {
                    value: "close".into(),
                },
            ),
            (
                head("Upgrade: websocket\r\nConnection: Upgrade\r\n"),
                E::MissingAccept,
            ),
            (
                head("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n"),
                E::WrongAccept {
                    expected: p.expected_accept().into(),
                    received: "x".into(),
                },
            ),
        ];
        for (h, want) in cases {
            assert_eq!(p.parse_response(h.as_bytes(), &c), Err(want), "{h}");
        }
        let bad = |extra: &str| answer(&p, extra).unwrap_err();
        assert_eq!(
            bad("Sec-WebSocket-Protocol: b\r\n"),
            E::SubprotocolNotOffered {
                protocol: "b".into()
            }
        );
        assert_eq!(
            bad("Sec-WebSocket-Protocol: a, a\r\n"),
            E::SeveralSubprotocols {
                value: "a, a".into()
            }
        );
        assert_eq!(
            answer(&pending(&[], true), "Sec-WebSocket-Protocol: a\r\n").unwrap_err(),
            E::SubprotocolWhenNoneOffered {
                protocol: "a".into()
            }
        );
        assert_eq!(
            bad("Sec-WebSocket-Extensions: ;\r\n"),
            E::InvalidExtensionHeader
        );
        assert_eq!(
            bad("Sec-WebSocket-Extensions: x-foo\r\n"),
            E::ExtensionNotOffered {
                name: "x-foo".into()
            }
        );
        assert_eq!(
            answer(
                &pending(&[], false),
                "Sec-WebSocket-Extensions: permessage-deflate\r\n"
            )
            .unwrap_err(),
            E::ExtensionNotOffered {
                name: "permessage-deflate".into()
            }
        );
        assert_eq!(
            bad("Sec-WebSocket-Extensions: permessage-deflate\r\n\
                 Sec-WebSocket-Extensions: permessage-deflate\r\n"),
            E::DuplicateExtension {
                name: "permessage-deflate".into()
            }
        );
        assert_eq!(
            bad("Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n"),
            E::InvalidExtensionParameter {
                param: "server_max_window_bits".into(),
                problem: "needs a value from 8 to 15"
            }
        );
    }

    #[test]
    fn check_response_from_parts() {
        let p = pending(&[], false);
        let h = vec![
            ("upgrade".to_string(), b"WebSocket".to_vec()),
            ("connection".to_string(), b"keep-alive, upgrade".to_vec()),
            (
                "sec-websocket-accept".to_string(),
                format!(" {} ", p.expected_accept()).into_bytes(),
            ),
        ];
        assert!(p.check_response(101, &h).is_ok());
        let e = p
            .check_response(302, &[("Location".into(), b"/x".to_vec())])
            .unwrap_err();
        assert!(matches!(
            e,
            ClientHandshakeError::NotSwitchingProtocols { status: 302, .. }
        ));
        let mut bad = h.clone();
        bad.push(("X".into(), b"a\r\nb".to_vec()));
        assert!(matches!(
            p.check_response(101, &bad),
            Err(ClientHandshakeError::MalformedResponse { .. })
        ));
    }
}
