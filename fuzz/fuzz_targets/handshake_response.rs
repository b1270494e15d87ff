//! `PendingHandshake::parse_response` on arbitrary bytes, for fixed client requests.
//!
//! The requests use the key of RFC 6455 §1.3 ("the sample nonce"), so a seed answering with
//! `Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=` gets through to the subprotocol and
//! extension checks.
//!
//! Invariants, for a request offering deflate and no subprotocol and one offering
//! subprotocols and no deflate: an incomplete head is shorter than `max_handshake_size`; a
//! parsed head's length is within the input and the head alone parses to the same length;
//! an accepted response is a 101 carrying the expected `Sec-WebSocket-Accept`, and selects
//! neither an extension nor a subprotocol that was not offered; negotiated window bits are
//! 8-15 and a client `Connection` can be built from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::handshake::{self, ClientRequest};
use tether_proto::{Config, Connection};

/// RFC 6455 §1.3: base64 of this is `dGhlIHNhbXBsZSBub25jZQ==`.
const KEY: [u8; 16] = *b"the sample nonce";

fn cases() -> [(ClientRequest, Config); 2] {
    let plain = ClientRequest::new("server.example.com", "/chat");
    let mut with_protocols = plain.clone();
    with_protocols.subprotocols = vec!["chat".into(), "superchat".into()];
    let mut no_deflate = Config::default();
    no_deflate.deflate = None;
    no_deflate.max_handshake_size = 512;
    [(plain, Config::default()), (with_protocols, no_deflate)]
}

fuzz_target!(|data: &[u8]| {
    for (request, config) in cases() {
        let (bytes, pending) = handshake::client_request(&request, &config, KEY);
        assert!(bytes.starts_with(b"GET /chat HTTP/1.1\r\n"));
        assert_eq!(pending.expected_accept(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        match pending.parse_response(data, &config) {
            Ok(Some((response, head_len))) => {
                assert!(head_len <= data.len() && head_len <= config.max_handshake_size);
                assert!(
                    matches!(
                        pending.parse_response(&data[..head_len], &config),
                        Ok(Some((_, n))) if n == head_len
                    ),
                    "the head alone parses differently"
                );
                assert_eq!(response.status, 101);
                let accept = response
                    .header("Sec-WebSocket-Accept")
                    .map(<[u8]>::trim_ascii);
                assert_eq!(accept, Some(&b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="[..]));
                if let Some(p) = &response.subprotocol {
                    assert!(request.subprotocols.contains(p), "{p:?} was not offered");
                }
                if let Some(params) = response.deflate {
                    assert!(config.deflate.is_some(), "deflate accepted but not offered");
                    assert!((8..=15).contains(&params.server_max_window_bits));
                    assert!((8..=15).contains(&params.client_max_window_bits));
                }
                let conn = Connection::client(config, response.deflate, || [1, 2, 3, 4]);
                assert_eq!(conn.is_compressing(), response.deflate.is_some());
            }
            Ok(None) => assert!(
                data.len() < config.max_handshake_size,
                "{} bytes buffered without a verdict (limit {})",
                data.len(),
                config.max_handshake_size
            ),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
});
