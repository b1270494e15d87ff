//! Public-API tests of the opening handshake (RFC 6455 §4) and permessage-deflate negotiation
//! (RFC 7692).

use proptest::collection::vec;
use proptest::prelude::*;
use tether_proto::Config;
use tether_proto::deflate::{DeflateConfig, DeflateParams};
use tether_proto::handshake::{
    AcceptOptions, ClientHandshakeError, ClientRequest, HandshakeError, Request, accept,
    accept_key, client_request, parse_request, reject_response,
};

/// RFC 6455 §1.2, the client's handshake.
const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
    Host: server.example.com\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Version: 13\r\n\r\n";

fn no_deflate() -> Config {
    let mut c = Config::default();
    c.deflate = None;
    c
}

fn parse(head: &str) -> Request {
    let (r, n) = parse_request(head.as_bytes(), &Config::default())
        .unwrap()
        .unwrap();
    assert_eq!(n, head.len());
    r
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

/// The RFC request with line `name: ...` replaced by `replacement` (several lines, or nothing).
fn variant(name: &str, replacement: &str) -> String {
    let mut out = String::new();
    for line in RFC_REQUEST.split_inclusive("\r\n") {
        if line
            .to_ascii_lowercase()
            .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        {
            out.push_str(replacement);
        } else {
            out.push_str(line);
        }
    }
    out
}

fn refusal(head: &str) -> HandshakeError {
    refusal_with(head, &AcceptOptions::default())
}

fn refusal_with(head: &str, options: &AcceptOptions) -> HandshakeError {
    match parse_request(head.as_bytes(), &Config::default()) {
        Ok(Some((req, _))) => accept(&req, &Config::default(), options).unwrap_err(),
        Ok(None) => panic!("incomplete: {head:?}"),
        Err(e) => e,
    }
}

#[test]
fn rfc_6455_section_1_3_accept_value() {
    assert_eq!(
        accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn rfc_6455_section_1_2_example_is_accepted() {
    let req = parse(RFC_REQUEST);
    assert_eq!(req.subprotocols(), vec!["chat", "superchat"]);
    assert_eq!(req.origin(), Some(&b"http://example.com"[..]));
    let options = AcceptOptions {
        subprotocols: vec!["chat".into()],
        allowed_origins: Some(vec!["HTTP://EXAMPLE.COM".into()]),
        ..AcceptOptions::default()
    };
    let a = accept(&req, &Config::default(), &options).unwrap();
    assert_eq!(
        text(a.response),
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Sec-WebSocket-Protocol: chat\r\n\r\n"
    );
    assert_eq!(a.subprotocol.as_deref(), Some("chat"));
    assert_eq!(a.deflate, None);
}

#[test]
fn lenient_but_valid_variants_are_accepted() {
    let ok = [
        variant("Connection", "Connection: keep-alive, Upgrade\r\n"),
        variant(
            "Connection",
            "Connection: keep-alive\r\nConnection: upgrade\r\n",
        ),
        variant("Upgrade", "Upgrade: h2c, WebSocket\r\n"),
        variant(
            "Sec-WebSocket-Key",
            "sec-websocket-key:   dGhlIHNhbXBsZSBub25jZQ==  \r\n",
        ),
        variant("Host", "Host: [::1]:8080\r\n"),
        variant("Origin", "Content-Length: 0\r\n"),
        RFC_REQUEST.replace("GET /chat", "GET ws://server.example.com/chat"),
    ];
    for head in ok {
        let req = parse(&head);
        assert!(
            accept(&req, &Config::default(), &AcceptOptions::default()).is_ok(),
            "{head}"
        );
    }
}

#[test]
fn every_refusal_has_its_status() {
    use HandshakeError as E;
    let cases: Vec<(String, E, u16)> = vec![
        (
            RFC_REQUEST.replace("GET", "POST"),
            E::MethodNotGet {
                method: "POST".into(),
            },
            400,
        ),
        (
            RFC_REQUEST.replace("HTTP/1.1", "HTTP/1.0"),
            E::HttpVersionTooOld,
            400,
        ),
        (RFC_REQUEST.replace("/chat", "*"), E::InvalidTarget, 400),
        (variant("Host", ""), E::MissingHost, 400),
        (
            variant("Host", "Host: a\r\nHost: b\r\n"),
            E::DuplicateHost,
            400,
        ),
        (variant("Host", "Host: a b\r\n"), E::InvalidHost, 400),
        (variant("Upgrade", ""), E::MissingUpgrade, 400),
        (
            variant("Upgrade", "Upgrade: h2c\r\n"),
            E::UpgradeNotWebSocket,
            400,
        ),
        (variant("Connection", ""), E::MissingConnection, 400),
        (
            variant("Connection", "Connection: keep-alive\r\n"),
            E::ConnectionNotUpgrade,
            400,
        ),
        (variant("Sec-WebSocket-Key", ""), E::MissingKey, 400),
        (
            variant(
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
            ),
            E::DuplicateKey,
            400,
        ),
        (
            // 15 bytes.
            variant(
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0O\r\n",
            ),
            E::KeyWrongLength { decoded_len: 15 },
            400,
        ),
        (
            // 17 bytes.
            variant(
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODxA=\r\n",
            ),
            E::KeyWrongLength { decoded_len: 17 },
            400,
        ),
        (
            variant(
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Key: not base64!!!!!!!!!!!!!\r\n",
            ),
            E::KeyNotBase64,
            400,
        ),
        (
            variant(
                "Sec-WebSocket-Key",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n",
            ),
            E::KeyNotBase64,
            400,
        ),
        (
            variant("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8\r\n"),
            E::UnsupportedVersion {
                version: "8".into(),
            },
            426,
        ),
        (
            variant("Sec-WebSocket-Version", "Sec-WebSocket-Version: 14\r\n"),
            E::UnsupportedVersion {
                version: "14".into(),
            },
            426,
        ),
        (
            variant(
                "Sec-WebSocket-Version",
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\n",
            ),
            E::UnsupportedVersion {
                version: "13, 8".into(),
            },
            426,
        ),
        (variant("Sec-WebSocket-Version", ""), E::MissingVersion, 426),
        (
            variant("Origin", "Transfer-Encoding: chunked\r\n"),
            E::UnexpectedBody,
            400,
        ),
        (
            variant("Origin", "Content-Length: 5\r\n"),
            E::UnexpectedBody,
            400,
        ),
        (
            variant("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: a b\r\n"),
            E::InvalidSubprotocols,
            400,
        ),
        (
            variant("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: a, a\r\n"),
            E::InvalidSubprotocols,
            400,
        ),
        (
            variant(
                "Origin",
                "Sec-WebSocket-Extensions: permessage-deflate; =x\r\n",
            ),
            E::InvalidExtensions,
            400,
        ),
        (
            variant("Origin", "X-Bad: a\0b\r\n"),
            E::MalformedRequest {
                reason: "invalid header value",
            },
            400,
        ),
        (
            variant("Origin", "X-Bad: a\rb\r\n"),
            E::MalformedRequest {
                reason: "invalid header value",
            },
            400,
        ),
        (
            "\u{1}GET / HTTP/1.1\r\n\r\n".into(),
            E::MalformedRequest {
                reason: "invalid request line",
            },
            400,
        ),
        (
            "GET  HTTP/1.1\r\n\r\n".into(),
            E::MalformedRequest {
                reason: "invalid request line",
            },
            400,
        ),
        (
            "GET / HTTP/9.9\r\n\r\n".into(),
            E::MalformedRequest {
                reason: "invalid HTTP version",
            },
            400,
        ),
    ];
    for (head, want, status) in cases {
        let got = refusal(&head);
        assert_eq!(got, want, "{head:?}");
        assert_eq!(got.status(), status, "{head:?}");
        let response = text(got.response());
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "{response}"
        );
        assert!(response.contains("\r\nConnection: "), "{response}");
        let (_, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(response.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert_eq!(body, format!("{got}\n"));
        assert_eq!(
            status == 426,
            response.contains("\r\nSec-WebSocket-Version: 13\r\n")
        );
    }
}

#[test]
fn forbidden_origin_is_403() {
    let options = AcceptOptions {
        allowed_origins: Some(vec!["https://good.example".into()]),
        ..AcceptOptions::default()
    };
    let e = refusal_with(RFC_REQUEST, &options);
    assert_eq!(
        e,
        HandshakeError::ForbiddenOrigin {
            origin: "http://example.com".into()
        }
    );
    assert_eq!(e.status(), 403);
    assert!(text(e.response()).starts_with("HTTP/1.1 403 Forbidden\r\n"));
    // Two Origin lines are never allowed by a list.
    let two = variant(
        "Origin",
        "Origin: https://good.example\r\nOrigin: https://good.example\r\n",
    );
    assert_eq!(refusal_with(&two, &options).status(), 403);
    // Non-browser clients send no Origin.
    let req = parse(&variant("Origin", ""));
    assert!(accept(&req, &Config::default(), &options).is_ok());
}

#[test]
fn size_and_header_limits_are_431() {
    let mut c = Config::default();
    c.max_handshake_size = 1024;
    c.max_headers = 16;
    // Incomplete but already over the limit.
    let long = format!("GET / HTTP/1.1\r\nX-Long: {}", "a".repeat(1100));
    let e = parse_request(long.as_bytes(), &c).unwrap_err();
    assert_eq!(e, HandshakeError::HeadTooLarge { limit: 1024 });
    assert_eq!(e.status(), 431);
    assert!(text(e.response()).starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    let many = format!("GET / HTTP/1.1\r\n{}", "X: y\r\n".repeat(17));
    let e = parse_request(many.as_bytes(), &c).unwrap_err();
    assert_eq!(e, HandshakeError::TooManyHeaders { limit: 16 });
    assert_eq!(e.status(), 431);
}

#[test]
fn every_prefix_is_incomplete_and_trailing_bytes_are_left() {
    let c = Config::default();
    for i in 0..RFC_REQUEST.len() {
        assert_eq!(
            parse_request(&RFC_REQUEST.as_bytes()[..i], &c),
            Ok(None),
            "prefix {i}"
        );
    }
    let mut buf = RFC_REQUEST.as_bytes().to_vec();
    buf.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4]);
    assert_eq!(
        parse_request(&buf, &c).unwrap().unwrap().1,
        RFC_REQUEST.len()
    );
}

fn offer(ext: &str) -> String {
    variant("Origin", &format!("Sec-WebSocket-Extensions: {ext}\r\n"))
}

fn negotiated(ext: &str, config: &Config) -> (Option<DeflateParams>, Option<String>) {
    let a = accept(&parse(&offer(ext)), config, &AcceptOptions::default()).unwrap();
    let response = text(a.response);
    let header = response
        .split("\r\n")
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(str::to_string);
    (a.deflate, header)
}

fn dp(snct: bool, cnct: bool, s: u8, c: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: s,
        client_max_window_bits: c,
    }
}

#[test]
fn autobahn_offers() {
    let c = Config::default();
    let cases = [
        (
            "permessage-deflate",
            "permessage-deflate",
            dp(false, false, 15, 15),
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
            dp(false, true, 15, 15),
        ),
        (
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits=8",
            dp(false, false, 8, 15),
        ),
        (
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=15",
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=15",
            dp(false, true, 15, 15),
        ),
    ];
    for (ext, header, params) in cases {
        assert_eq!(
            negotiated(ext, &c),
            (Some(params), Some(header.into())),
            "{ext}"
        );
    }
    assert_eq!(
        negotiated("permessage-deflate", &no_deflate()),
        (None, None)
    );
}

#[test]
fn first_acceptable_alternative_is_chosen() {
    let mut c = Config::default();
    c.deflate.as_mut().unwrap().client_max_window_bits = 10;
    // The first alternative does not let us limit the client's window; the second is
    // invalid; the third is taken.
    let ext = "permessage-deflate; server_max_window_bits=10, \
               permessage-deflate; client_max_window_bits=16, \
               permessage-deflate; client_max_window_bits; server_no_context_takeover";
    assert_eq!(
        negotiated(ext, &c),
        (
            Some(dp(true, false, 15, 10)),
            Some(
                "permessage-deflate; server_no_context_takeover; client_max_window_bits=10".into()
            )
        )
    );
    // Same alternatives spread over several lines.
    let lines = variant(
        "Origin",
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\
         Sec-WebSocket-Extensions: x-unknown, permessage-deflate; client_max_window_bits\r\n",
    );
    let a = accept(&parse(&lines), &c, &AcceptOptions::default()).unwrap();
    assert_eq!(a.deflate, Some(dp(false, false, 15, 10)));
}

#[test]
fn invalid_offers_are_declined_not_refused() {
    for ext in [
        "permessage-deflate; foo",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; server_no_context_takeover=yes",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "x-webkit-deflate-frame",
    ] {
        assert_eq!(negotiated(ext, &Config::default()), (None, None), "{ext}");
    }
    assert_eq!(
        negotiated(
            "permessage-deflate; server_max_window_bits=\"9\"",
            &Config::default()
        )
        .0,
        Some(dp(false, false, 9, 15))
    );
}

#[test]
fn reject_response_is_complete() {
    let r = text(reject_response(
        404,
        &[("X-Reason".into(), "gone".into())],
        "no such room",
    ));
    assert_eq!(
        r,
        "HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 12\r\nX-Reason: gone\r\n\r\nno such room"
    );
}

/// Client request -> parse_request -> accept -> parse_response, all in-crate.
fn round_trip(
    client_config: &Config,
    server_config: &Config,
    client: &ClientRequest,
    options: &AcceptOptions,
) -> (
    tether_proto::handshake::Accepted,
    tether_proto::handshake::Response,
) {
    let (request, pending) = client_request(client, client_config, [7; 16]);
    let (req, n) = parse_request(&request, server_config).unwrap().unwrap();
    assert_eq!(n, request.len());
    assert_eq!(req.target(), client.resource);
    assert_eq!(req.host(), Some(client.host.as_bytes()));
    let accepted = accept(&req, server_config, options).unwrap();
    let mut answer = accepted.response.clone();
    answer.extend_from_slice(b"\x81\x02hi");
    let (response, head_len) = pending
        .parse_response(&answer, client_config)
        .unwrap()
        .unwrap();
    assert_eq!(head_len, accepted.response.len());
    assert_eq!(response.subprotocol, accepted.subprotocol);
    assert_eq!(response.deflate, accepted.deflate);
    (accepted, response)
}

#[test]
fn client_and_server_agree() {
    let mut client = ClientRequest::new("localhost:9001", "/runCase?case=1&agent=tether");
    client.subprotocols = vec!["v2.chat".into(), "v1.chat".into()];
    client.origin = Some("http://localhost".into());
    client.extra_headers = vec![("Authorization".into(), "Bearer x".into())];
    let options = AcceptOptions {
        subprotocols: vec!["v1.chat".into(), "v2.chat".into()],
        ..AcceptOptions::default()
    };
    let (a, r) = round_trip(&Config::default(), &Config::default(), &client, &options);
    assert_eq!(a.subprotocol.as_deref(), Some("v1.chat"));
    assert_eq!(r.status, 101);
    assert_eq!(r.deflate, Some(dp(false, false, 15, 15)));

    let (a, _) = round_trip(
        &no_deflate(),
        &Config::default(),
        &client,
        &AcceptOptions::default(),
    );
    assert_eq!((a.subprotocol, a.deflate), (None, None));
    let (a, _) = round_trip(
        &Config::default(),
        &no_deflate(),
        &client,
        &AcceptOptions::default(),
    );
    assert_eq!(a.deflate, None);
}

#[test]
fn client_rejects_a_server_that_breaks_the_rules() {
    let client = ClientRequest::new("h", "/");
    let (_, pending) = client_request(&client, &no_deflate(), [1; 16]);
    let c = Config::default();
    let e = pending.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &c);
    assert!(matches!(
        e,
        Err(ClientHandshakeError::NotSwitchingProtocols { status: 200, .. })
    ));
    // A 101 answering another key.
    let other = accept(&parse(RFC_REQUEST), &c, &AcceptOptions::default()).unwrap();
    assert_eq!(
        pending.parse_response(&other.response, &c),
        Err(ClientHandshakeError::WrongAccept {
            expected: pending.expected_accept().into(),
            received: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
        })
    );
}

fn deflate_config() -> impl Strategy<Value = Option<DeflateConfig>> {
    proptest::option::weighted(
        0.9,
        (any::<bool>(), any::<bool>(), 8u8..=15, 8u8..=15).prop_map(|(snct, cnct, s, c)| {
            let mut d = DeflateConfig::default();
            d.server_no_context_takeover = snct;
            d.client_no_context_takeover = cnct;
            d.server_max_window_bits = s;
            d.client_max_window_bits = c;
            d
        }),
    )
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let c = Config::default();
        if let Ok(Some((req, _))) = parse_request(&bytes, &c) {
            let _ = accept(&req, &c, &AcceptOptions::default());
        }
        let (_, pending) = client_request(&ClientRequest::new("h", "/"), &c, [0; 16]);
        let _ = pending.parse_response(&bytes, &c);
    }

    #[test]
    fn arbitrary_header_values_never_panic(
        name in "[A-Za-z-]{1,24}",
        value in "[ -~\t]{0,64}",
    ) {
        let head = variant("Origin", &format!("{name}: {value}\r\n"));
        let c = Config::default();
        if let Ok(Some((req, _))) = parse_request(head.as_bytes(), &c) {
            let _ = accept(&req, &c, &AcceptOptions::default());
        }
    }

    #[test]
    fn arbitrary_extension_headers_are_declined_or_refused(value in "[a-z_=;,\" \\\\0-9-]{0,60}") {
        let head = offer(&value);
        let c = Config::default();
        if let Ok(Some((req, _))) = parse_request(head.as_bytes(), &c) {
            match accept(&req, &c, &AcceptOptions::default()) {
                Ok(_) | Err(HandshakeError::InvalidExtensions) => {}
                Err(e) => prop_assert!(false, "{value:?}: {e:?}"),
            }
        }
    }

    #[test]
    fn split_input_is_incomplete_until_the_end(cuts in vec(0usize..300, 0..8)) {
        let bytes = RFC_REQUEST.as_bytes();
        let c = Config::default();
        for cut in cuts {
            let cut = cut % bytes.len();
            prop_assert_eq!(parse_request(&bytes[..cut], &c), Ok(None));
        }
        prop_assert_eq!(parse_request(bytes, &c).unwrap().unwrap().1, bytes.len());
    }

    #[test]
    fn negotiation_round_trips(client in deflate_config(), server in deflate_config()) {
        let mut cc = Config::default();
        cc.deflate = client.clone();
        let mut sc = Config::default();
        sc.deflate = server.clone();
        let (a, r) = round_trip(&cc, &sc, &ClientRequest::new("h", "/"), &AcceptOptions::default());
        prop_assert_eq!(a.deflate.is_some(), client.is_some() && server.is_some());
        if let (Some(p), Some(c), Some(s)) = (r.deflate, client, server) {
            // Each side's wishes hold in what was agreed.
            prop_assert!(p.server_max_window_bits <= c.server_max_window_bits);
            prop_assert!(p.server_max_window_bits <= s.server_max_window_bits);
            prop_assert!(p.client_max_window_bits <= c.client_max_window_bits);
            prop_assert!(p.client_max_window_bits <= s.client_max_window_bits);
            prop_assert!(p.server_no_context_takeover >= c.server_no_context_takeover);
            prop_assert!(p.server_no_context_takeover >= s.server_no_context_takeover);
            prop_assert!(p.client_no_context_takeover >= c.client_no_context_takeover);
            prop_assert!(p.client_no_context_takeover >= s.client_no_context_takeover);
        }
    }
}
