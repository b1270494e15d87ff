//! Why an opening handshake failed: [`HandshakeError`] (server side, with the HTTP status to
//! answer) and [`ClientHandshakeError`] (client side, naming the check that failed).

use std::fmt;

use super::http::error_response;

/// Why a server refuses a client's opening handshake. One variant per broken rule.
///
/// [`HandshakeError::status`] gives the HTTP status to answer with and
/// [`HandshakeError::response`] a complete response to send before closing the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is not valid HTTP/1.x (request line, header syntax, line endings). 400.
    MalformedRequest {
        /// What the HTTP parser objected to.
        reason: &'static str,
    },
    /// The head is longer than `Config::max_handshake_size` (or does not end within it). 431.
    HeadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The head has more header lines than `Config::max_headers`. 431.
    TooManyHeaders {
        /// The limit, in header lines.
        limit: usize,
    },
    /// A header field name is not a token (only possible through
    /// [`super::Request::from_parts`]). 400.
    InvalidHeaderName,
    /// A header field value contains NUL, CR, LF or another control byte. 400.
    InvalidHeaderValue {
        /// The name of the offending field.
        name: String,
    },
    /// The method is not `GET`. 400.
    MethodNotGet {
        /// The method received.
        method: String,
    },
    /// The request is HTTP/1.0. 400.
    HttpVersionTooOld,
    /// The request target is neither an absolute path nor an absolute http(s)/ws(s) URI. 400.
    InvalidTarget,
    /// No `Host` header field. 400.
    MissingHost,
    /// More than one `Host` header field. 400.
    DuplicateHost,
    /// The `Host` value is not an authority (`host[:port]`). 400.
    InvalidHost,
    /// No `Upgrade` header field. 400.
    MissingUpgrade,
    /// `Upgrade` does not contain the token `websocket`. 400.
    UpgradeNotWebSocket,
    /// No `Connection` header field. 400.
    MissingConnection,
    /// `Connection` does not contain the token `Upgrade`. 400.
    ConnectionNotUpgrade,
    /// No `Sec-WebSocket-Key` header field. 400.
    MissingKey,
    /// More than one `Sec-WebSocket-Key` header field. 400.
    DuplicateKey,
    /// `Sec-WebSocket-Key` is not canonical padded base64. 400.
    KeyNotBase64,
    /// `Sec-WebSocket-Key` does not decode to 16 bytes. 400.
    KeyWrongLength {
        /// How many bytes it decodes to.
        decoded_len: usize,
    },
    /// No `Sec-WebSocket-Version` header field. 426, with `Sec-WebSocket-Version: 13`.
    MissingVersion,
    /// `Sec-WebSocket-Version` is not `13`. 426, with `Sec-WebSocket-Version: 13`.
    UnsupportedVersion {
        /// The value received (lossily decoded).
        version: String,
    },
    /// `Sec-WebSocket-Protocol` is not a list of distinct tokens. 400.
    InvalidSubprotocols,
    /// `Sec-WebSocket-Extensions` does not follow the grammar of RFC 6455 §9.1. 400.
    InvalidExtensions,
    /// The request announces a body (`Transfer-Encoding`, or a non-zero `Content-Length`). 400.
    UnexpectedBody,
    /// The `Origin` is not in `AcceptOptions::allowed_origins`. 403.
    ForbiddenOrigin {
        /// The origin received (lossily decoded; several lines joined with `, `).
        origin: String,
    },
    /// One of `AcceptOptions::extra_headers` has an invalid name or value, or is a header the
    /// handshake sets itself. A bug of the application, not of the client. 500.
    InvalidResponseHeader {
        /// The name of the offending header.
        name: String,
    },
}

impl HandshakeError {
    /// The HTTP status to answer with: 400 malformed/missing/bad, 403 forbidden `Origin`, 426
    /// wrong or missing version, 431 head too large or too many headers, 500 bad application
    /// header.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadTooLarge { .. } | HandshakeError::TooManyHeaders { .. } => 431,
            HandshakeError::MissingVersion | HandshakeError::UnsupportedVersion { .. } => 426,
            HandshakeError::ForbiddenOrigin { .. } => 403,
            HandshakeError::InvalidResponseHeader { .. } => 500,
            _ => 400,
        }
    }

    /// A complete HTTP response refusing the handshake, whose plain-text body says which rule
    /// was broken. Send it, then close the connection.
    pub fn response(&self) -> Vec<u8> {
        match self {
            HandshakeError::MissingVersion | HandshakeError::UnsupportedVersion { .. } => {
                // RFC 6455 §4.4: "the server MUST ... send an appropriate HTTP error code (such as
                // 426 Upgrade Required) and a |Sec-WebSocket-Version| header field indicating the
                // version(s) the server is capable of understanding". RFC 9110 §15.5.22: "The
                // server MUST send an Upgrade header field in a 426 response"; RFC 9110 §7.8: the
                // sender of Upgrade "MUST also send an "upgrade" connection option".
                error_response(
                    self.status(),
                    "Upgrade, close",
                    &[
                        ("Upgrade", "websocket"),
                        ("Sec-WebSocket-Version", super::WEBSOCKET_VERSION),
                    ],
                    &format!("{self}\n"),
                )
            }
            // The application's mistake: tell the client nothing about it.
            HandshakeError::InvalidResponseHeader { .. } => {
                error_response(500, "close", &[], "internal server error\n")
            }
            _ => error_response(self.status(), "close", &[], &format!("{self}\n")),
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HandshakeError as E;
        match self {
            E::MalformedRequest { reason } => write!(f, "malformed HTTP request: {reason}"),
            E::HeadTooLarge { limit } => write!(f, "the request head is larger than {limit} bytes"),
            E::TooManyHeaders { limit } => {
                write!(f, "the request has more than {limit} header fields")
            }
            E::InvalidHeaderName => {
                f.write_str("a header field name is not a token (RFC 9110 §5.1)")
            }
            E::InvalidHeaderValue { .. } => {
                f.write_str("a header field value contains a forbidden byte (RFC 9110 §5.5)")
            }
            E::MethodNotGet { .. } => {
                f.write_str("the method of an opening handshake must be GET (RFC 6455 §4.2.1)")
            }
            E::HttpVersionTooOld => {
                f.write_str("an opening handshake requires HTTP/1.1 or later (RFC 6455 §4.2.1)")
            }
            E::InvalidTarget => f.write_str(
                "the request target must be an absolute path or an absolute http(s)/ws(s) URI \
                 (RFC 6455 §4.2.1)",
            ),
            E::MissingHost => f.write_str("missing Host header field (RFC 6455 §4.2.1)"),
            E::DuplicateHost => f.write_str("more than one Host header field (RFC 9112 §3.2)"),
            E::InvalidHost => f.write_str("invalid Host header field value (RFC 9112 §3.2)"),
            E::MissingUpgrade => f.write_str("missing Upgrade header field (RFC 6455 §4.2.1)"),
            E::UpgradeNotWebSocket => f.write_str(
                "the Upgrade header field does not contain \"websocket\" (RFC 6455 §4.2.1)",
            ),
            E::MissingConnection => {
                f.write_str("missing Connection header field (RFC 6455 §4.2.1)")
            }
            E::ConnectionNotUpgrade => f.write_str(
                "the Connection header field does not contain \"Upgrade\" (RFC 6455 §4.2.1)",
            ),
            E::MissingKey => {
                f.write_str("missing Sec-WebSocket-Key header field (RFC 6455 §4.2.1)")
            }
            E::DuplicateKey => {
                f.write_str("more than one Sec-WebSocket-Key header field (RFC 6455 §11.3.1)")
            }
            E::KeyNotBase64 => f.write_str("Sec-WebSocket-Key is not base64 (RFC 6455 §4.2.1)"),
            E::KeyWrongLength { decoded_len } => write!(
                f,
                "Sec-WebSocket-Key decodes to {decoded_len} bytes instead of 16 (RFC 6455 §4.2.1)"
            ),
            E::MissingVersion => f.write_str(
                "missing Sec-WebSocket-Version header field; this server speaks version 13 \
                 (RFC 6455 §4.2.1)",
            ),
            E::UnsupportedVersion { .. } => f.write_str(
                "unsupported Sec-WebSocket-Version; this server speaks version 13 (RFC 6455 §4.4)",
            ),
            E::InvalidSubprotocols => f.write_str(
                "Sec-WebSocket-Protocol must be a list of distinct tokens (RFC 6455 §4.1)",
            ),
            E::InvalidExtensions => {
                f.write_str("Sec-WebSocket-Extensions does not follow RFC 6455 §9.1")
            }
            E::UnexpectedBody => f.write_str("an opening handshake request must not have a body"),
            E::ForbiddenOrigin { .. } => f.write_str("origin not allowed (RFC 6455 §10.2)"),
            E::InvalidResponseHeader { name } => {
                write!(f, "extra response header {name:?} is invalid or reserved")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

/// Why a client rejects the server's answer to its opening handshake. One variant per failed
/// check of RFC 6455 §4.1; any of them means the client MUST fail the WebSocket connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientHandshakeError {
    /// The head is not a valid HTTP/1.x response, or a header value has forbidden bytes.
    MalformedResponse {
        /// What is wrong.
        reason: String,
    },
    /// The head is longer than `Config::max_handshake_size` (or does not end within it).
    HeadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The head has more header lines than `Config::max_headers`.
    TooManyHeaders {
        /// The limit, in header lines.
        limit: usize,
    },
    /// The status is not 101: the server answered with plain HTTP (an error, a redirect...).
    NotSwitchingProtocols {
        /// The status code.
        status: u16,
        /// The reason phrase as sent (empty through `PendingHandshake::check_response`).
        reason: String,
        /// The response's header fields, in order.
        headers: Vec<(String, Vec<u8>)>,
    },
    /// No `Upgrade` header field.
    MissingUpgrade,
    /// `Upgrade` is not `websocket`.
    InvalidUpgrade {
        /// The value received (lossily decoded).
        value: String,
    },
    /// No `Connection` header field.
    MissingConnection,
    /// `Connection` does not contain the token `Upgrade`.
    InvalidConnection {
        /// The value received (lossily decoded).
        value: String,
    },
    /// No `Sec-WebSocket-Accept` header field.
    MissingAccept,
    /// `Sec-WebSocket-Accept` is not the hash of our key.
    WrongAccept {
        /// The value we computed from our key.
        expected: String,
        /// The value received (lossily decoded; several lines joined with `, `).
        received: String,
    },
    /// The server chose a subprotocol we did not offer.
    SubprotocolNotOffered {
        /// The subprotocol received.
        protocol: String,
    },
    /// The server chose a subprotocol although we offered none.
    SubprotocolWhenNoneOffered {
        /// The subprotocol received.
        protocol: String,
    },
    /// `Sec-WebSocket-Protocol` names several subprotocols, or is empty.
    SeveralSubprotocols {
        /// The value received (lossily decoded).
        value: String,
    },
    /// `Sec-WebSocket-Extensions` does not follow the grammar of RFC 6455 §9.1.
    InvalidExtensionHeader,
    /// The server uses an extension we did not offer.
    ExtensionNotOffered {
        /// The extension's name.
        name: String,
    },
    /// The server accepted an extension more than once.
    DuplicateExtension {
        /// The extension's name.
        name: String,
    },
    /// The server's permessage-deflate parameters are unknown, duplicated, badly valued, or do
    /// not answer our offer.
    InvalidExtensionParameter {
        /// The parameter concerned.
        param: String,
        /// What is wrong with it.
        problem: &'static str,
    },
}

impl fmt::Display for ClientHandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ClientHandshakeError as E;
        match self {
            E::MalformedResponse { reason } => write!(f, "malformed HTTP response: {reason}"),
            E::HeadTooLarge { limit } => {
                write!(f, "the response head is larger than {limit} bytes")
            }
            E::TooManyHeaders { limit } => {
                write!(f, "the response has more than {limit} header fields")
            }
            E::NotSwitchingProtocols { status, reason, .. } => {
                write!(f, "the server answered {status} {reason} instead of 101")?;
                f.write_str(" Switching Protocols")
            }
            E::MissingUpgrade => f.write_str("missing Upgrade header field (RFC 6455 §4.1)"),
            E::InvalidUpgrade { value } => {
                write!(f, "Upgrade is {value:?}, not \"websocket\" (RFC 6455 §4.1)")
            }
            E::MissingConnection => f.write_str("missing Connection header field (RFC 6455 §4.1)"),
            E::InvalidConnection { value } => {
                write!(
                    f,
                    "Connection is {value:?}, without \"Upgrade\" (RFC 6455 §4.1)"
                )
            }
            E::MissingAccept => {
                f.write_str("missing Sec-WebSocket-Accept header field (RFC 6455 §4.1)")
            }
            E::WrongAccept { expected, received } => write!(
                f,
                "Sec-WebSocket-Accept is {received:?} but the key's hash is {expected:?} \
                 (RFC 6455 §4.1)"
            ),
            E::SubprotocolNotOffered { protocol } => {
                write!(
                    f,
                    "the server chose subprotocol {protocol:?}, which we did not offer"
                )
            }
            E::SubprotocolWhenNoneOffered { protocol } => write!(
                f,
                "the server chose subprotocol {protocol:?} although we offered none"
            ),
            E::SeveralSubprotocols { value } => write!(
                f,
                "Sec-WebSocket-Protocol must name exactly one subprotocol, got {value:?}"
            ),
            E::InvalidExtensionHeader => {
                f.write_str("Sec-WebSocket-Extensions does not follow RFC 6455 §9.1")
            }
            E::ExtensionNotOffered { name } => {
                write!(
                    f,
                    "the server uses extension {name:?}, which we did not offer"
                )
            }
            E::DuplicateExtension { name } => {
                write!(f, "the server accepted extension {name:?} more than once")
            }
            E::InvalidExtensionParameter { param, problem } => {
                write!(
                    f,
                    "permessage-deflate parameter {param:?}: {problem} (RFC 7692 §7.1)"
                )
            }
        }
    }
}

impl std::error::Error for ClientHandshakeError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: Vec<u8>) -> String {
        String::from_utf8(r).unwrap()
    }

    #[test]
    fn statuses() {
        assert_eq!(HandshakeError::MissingKey.status(), 400);
        assert_eq!(HandshakeError::HeadTooLarge { limit: 1 }.status(), 431);
        assert_eq!(HandshakeError::TooManyHeaders { limit: 1 }.status(), 431);
        assert_eq!(HandshakeError::MissingVersion.status(), 426);
        assert_eq!(
            HandshakeError::ForbiddenOrigin { origin: "x".into() }.status(),
            403
        );
        assert_eq!(
            HandshakeError::InvalidResponseHeader { name: "x".into() }.status(),
            500
        );
    }

    #[test]
    fn version_error_response_names_the_version() {
        let r = text(
            HandshakeError::UnsupportedVersion {
                version: "8".into(),
            }
            .response(),
        );
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{r}");
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{r}");
        assert!(r.contains("\r\nUpgrade: websocket\r\n"), "{r}");
        assert!(r.contains("\r\nConnection: Upgrade, close\r\n"), "{r}");
    }

    #[test]
    fn response_body_states_the_rule_and_length_matches() {
        let r = text(HandshakeError::KeyWrongLength { decoded_len: 15 }.response());
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(head.contains("\r\nConnection: close\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert!(body.contains("15 bytes instead of 16"), "{body}");
    }

    #[test]
    fn application_mistakes_are_not_disclosed() {
        let r = text(
            HandshakeError::InvalidResponseHeader {
                name: "Secret".into(),
            }
            .response(),
        );
        assert!(r.starts_with("HTTP/1.1 500 "));
        assert!(!r.contains("Secret"));
    }

    #[test]
    fn client_errors_display_the_server_answer() {
        let e = ClientHandshakeError::NotSwitchingProtocols {
            status: 404,
            reason: "Not Found".into(),
            headers: vec![],
        };
        assert_eq!(
            e.to_string(),
            "the server answered 404 Not Found instead of 101 Switching Protocols"
        );
    }
}
