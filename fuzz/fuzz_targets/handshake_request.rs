//! `handshake::parse_request` on arbitrary bytes, then `handshake::accept` on what parses.
//!
//! Invariants, under the default configuration and a tight one, with a permissive and a
//! strict server policy:
//! - an incomplete head is shorter than `max_handshake_size` (a reader's buffer stays
//!   bounded); a parsed head's length is within the input and the head alone parses to the
//!   same length;
//! - `accept` does not panic; every refusal's `status()` is 400, 403, 426 or 431;
//! - an accepted request gets a `101` head with the `Sec-WebSocket-Accept` of its key, a
//!   subprotocol that both sides listed, an `Origin` the policy allows, and permessage-deflate
//!   only when the configuration allows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::Config;
use tether_proto::handshake::{self, AcceptOptions, Request};

fn check_status(status: u16, what: &str) {
    assert!(
        matches!(status, 400 | 403 | 426 | 431),
        "{what} refused with status {status}"
    );
}

fn configs() -> [Config; 2] {
    let mut tight = Config::default();
    tight.max_handshake_size = 256;
    tight.max_headers = 8;
    tight.deflate = None;
    [Config::default(), tight]
}

fn policies() -> [AcceptOptions; 2] {
    let strict = AcceptOptions {
        subprotocols: vec!["chat".into(), "superchat".into()],
        allowed_origins: Some(vec!["http://example.com".into()]),
        ..AcceptOptions::default()
    };
    [AcceptOptions::default(), strict]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn check_accept(request: &Request, config: &Config, options: &AcceptOptions) {
    let accepted = match handshake::accept(request, config, options) {
        Ok(accepted) => accepted,
        Err(e) => {
            let _ = e.to_string();
            let _ = e.response();
            check_status(e.status(), "accept");
            return;
        }
    };
    let head = &accepted.response;
    assert!(head.starts_with(b"HTTP/1.1 101 "), "not a 101");
    assert!(head.ends_with(b"\r\n\r\n"), "unterminated head");
    let key = request.key().expect("accepted without a key").trim_ascii();
    let accept = handshake::accept_key(key);
    assert!(
        contains(head, accept.as_bytes()),
        "wrong Sec-WebSocket-Accept"
    );
    if let Some(p) = &accepted.subprotocol {
        assert!(options.subprotocols.contains(p), "chose {p:?}, not ours");
        assert!(
            request.subprotocols().contains(&p.as_str()),
            "chose {p:?}, not offered"
        );
    }
    if let (Some(allowed), Some(origin)) = (&options.allowed_origins, request.origin()) {
        assert!(
            allowed
                .iter()
                .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.trim_ascii())),
            "accepted Origin {:?}",
            String::from_utf8_lossy(origin)
        );
    }
    if let Some(params) = accepted.deflate {
        assert!(config.deflate.is_some(), "deflate accepted but off");
        assert!((8..=15).contains(&params.server_max_window_bits));
        assert!((8..=15).contains(&params.client_max_window_bits));
    }
}

fuzz_target!(|data: &[u8]| {
    for config in configs() {
        match handshake::parse_request(data, &config) {
            Ok(Some((request, head_len))) => {
                assert!(head_len <= data.len() && head_len <= config.max_handshake_size);
                assert!(
                    matches!(
                        handshake::parse_request(&data[..head_len], &config),
                        Ok(Some((_, n))) if n == head_len
                    ),
                    "the head alone parses differently"
                );
                for options in policies() {
                    check_accept(&request, &config, &options);
                }
            }
            Ok(None) => assert!(
                data.len() < config.max_handshake_size,
                "{} bytes buffered without a verdict (limit {})",
                data.len(),
                config.max_handshake_size
            ),
            Err(e) => {
                let _ = e.to_string();
                check_status(e.status(), "parse_request");
            }
        }
    }
});
