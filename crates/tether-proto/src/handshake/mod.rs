//! The opening handshake (RFC 6455 §4), both roles, and the negotiation of
//! permessage-deflate (RFC 7692) that rides on it.
//!
//! Everything here is sans-I/O: functions take the bytes received so far and return the bytes
//! to send. The engine has no random number generator, so a client passes its own 16 random
//! bytes for `Sec-WebSocket-Key`.
//!
//! # Server
//!
//! 1. Feed the bytes received so far to [`parse_request`] until it returns
//!    `Ok(Some((request, head_len)))`; bytes after `head_len` already belong to the WebSocket
//!    stream. (Or build a [`Request`] with [`Request::from_parts`] when an HTTP library parsed
//!    the head.)
//! 2. Inspect the [`Request`] (target, origin, cookies...) and either refuse it with
//!    [`reject_response`], or call [`accept`], which validates it (RFC 6455 §4.2.1), picks a
//!    subprotocol, negotiates permessage-deflate and returns the `101` response to send.
//! 3. On any [`HandshakeError`], send [`HandshakeError::response`] and close the connection.
//!
//! # Intermediary
//!
//! A proxy that forwards a client's handshake to an upstream server, so that both ends agree
//! end to end: [`forwarded_offers`] validates the client's request as [`accept`] does and keeps
//! its subprotocol and permessage-deflate offers; [`forwarding_request`] makes the upstream
//! request carrying them, and its [`PendingHandshake`] checks the upstream's answer against
//! those offers. The client's `101` then repeats what the upstream chose.
//!
//! # Client
//!
//! 1. [`client_request`] returns the request bytes to send and a [`PendingHandshake`].
//! 2. Feed the bytes received so far to [`PendingHandshake::parse_response`] until it returns
//!    `Ok(Some((response, head_len)))`; bytes after `head_len` belong to the WebSocket stream.
//!    A [`ClientHandshakeError`] names the check that failed (RFC 6455 §4.1).

mod client;
mod error;
mod extensions;
mod forward;
mod http;
mod negotiation;
mod request;
mod response;
mod server;

pub use client::{ClientRequest, ClientRequestError, PendingHandshake, client_request};
pub use error::{ClientHandshakeError, HandshakeError};
pub use forward::{ForwardedOffers, forwarded_offers, forwarding_request};
pub use request::{Request, parse_request};
pub use response::Response;
pub use server::{AcceptOptions, Accepted, accept, reject_response};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest as _, Sha1};

/// The GUID that RFC 6455 appends to the key before hashing it.
///
/// RFC 6455 §1.3: the server has to take the key "and concatenate this with the Globally
/// Unique Identifier (GUID, RFC 4122) "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" in string form".
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this engine speaks, as sent in `Sec-WebSocket-Version`.
pub const WEBSOCKET_VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
///
/// `key` is the header value as sent (base64 text, without surrounding whitespace), not the
/// decoded 16 bytes.
pub fn accept_key(key: &[u8]) -> String {
    // RFC 6455 §4.2.2 step 5: "A |Sec-WebSocket-Accept| header field. The value of this header
    // field is constructed by concatenating /key/, defined above in step 4 in Section 4.2.2,
    // with the string "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", taking the SHA-1 hash of this
    // concatenated value to obtain a 20-byte value and base64-encoding (see Section 4 of
    // [RFC4648]) this 20-byte hash."
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_section_1_3_vector() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn accept_key_is_28_base64_chars() {
        let a = accept_key(b"AQIDBAUGBwgJCgsMDQ4PEA==");
        assert_eq!(a.len(), 28);
        assert_eq!(STANDARD.decode(&a).unwrap().len(), 20);
    }
}
