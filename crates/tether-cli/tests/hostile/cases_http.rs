//! The opening handshake and plain HTTP: malformed request lines, bad keys and versions,
//! oversized heads, control bytes in header values.

use std::net::SocketAddr;

use crate::server::good_jwt;
use crate::table::Outcome;
use crate::wire::{KEY, Reply, exchange};

/// The status, the `Sec-WebSocket-Version` header when there is one, and the body (the
/// reason) when there is one.
fn answer(reply: &Option<Reply>) -> String {
    let Some(r) = reply else {
        return "closed without answer".into();
    };
    let mut answer = r.status.to_string();
    if let Some(v) = r.header("sec-websocket-version") {
        answer.push_str(&format!(" Sec-WebSocket-Version: {v}"));
    }
    match r.text().trim() {
        "" => answer,
        body => format!("{answer}: {body}"),
    }
}

fn detail(reply: &Option<Reply>) -> String {
    reply.as_ref().map(Reply::text).unwrap_or_default()
}

async fn case(addr: SocketAddr, name: &str, expected: &str, request: Vec<u8>) -> Outcome {
    let reply = exchange(addr, &request).await;
    Outcome::new("handshake", name, expected, answer(&reply), detail(&reply))
}

/// A handshake on `/echo` (with a valid token) whose header lines are `headers`.
fn handshake(method_line: &str, headers: &[&str]) -> Vec<u8> {
    let mut text = format!("{method_line}\r\nHost: 127.0.0.1\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

fn std_headers() -> Vec<String> {
    vec![
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        format!("Sec-WebSocket-Key: {KEY}"),
        "Sec-WebSocket-Version: 13".into(),
    ]
}

/// The standard headers with `name` replaced by `lines` (none: left out).
fn with(name: &str, lines: &[&str]) -> Vec<String> {
    let mut headers: Vec<String> = std_headers()
        .into_iter()
        .filter(|h| !h.starts_with(name))
        .collect();
    headers.extend(lines.iter().map(|l| l.to_string()));
    headers
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

pub async fn run(addr: SocketAddr) -> Vec<Outcome> {
    let get = format!("GET /echo?token={} HTTP/1.1", good_jwt());
    let mut out = Vec::new();
    let raw = |s: &str| s.as_bytes().to_vec();

    out.push(
        case(
            addr,
            "request line: not HTTP",
            "400",
            raw("HELLO THERE\r\n\r\n"),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "request line: no version",
            "400",
            raw("GET /echo\r\nHost: x\r\n\r\n"),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "request line: bad method token",
            "400",
            raw("G(T /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "request line: HTTP/2.7",
            "400",
            raw("GET /echo HTTP/2.7\r\nHost: x\r\n\r\n"),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "request line: space in target",
            "400",
            raw("GET /ec ho HTTP/1.1\r\nHost: x\r\n\r\n"),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "request line: binary garbage",
            "400",
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n".to_vec(),
        )
        .await,
    );

    let h = with("Sec-WebSocket-Key", &[]);
    out.push(
        case(
            addr,
            "Sec-WebSocket-Key missing",
            "400: missing Sec-WebSocket-Key header field (RFC 6455 §4.2.1)",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let doubled = format!("Sec-WebSocket-Key: {KEY}");
    let h = with("Sec-WebSocket-Key", &[&doubled, &doubled]);
    out.push(
        case(
            addr,
            "Sec-WebSocket-Key doubled",
            "400: more than one Sec-WebSocket-Key header field (RFC 6455 §11.3.1)",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let h = with(
        "Sec-WebSocket-Key",
        &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAA"],
    );
    out.push(
        case(
            addr,
            "Sec-WebSocket-Key of 12 bytes",
            "400: Sec-WebSocket-Key decodes to 12 bytes instead of 16 (RFC 6455 §4.2.1)",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let h = with(
        "Sec-WebSocket-Key",
        &["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAAAAA="],
    );
    out.push(
        case(
            addr,
            "Sec-WebSocket-Key of 20 bytes",
            "400: Sec-WebSocket-Key decodes to 20 bytes instead of 16 (RFC 6455 §4.2.1)",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let h = with(
        "Sec-WebSocket-Key",
        &["Sec-WebSocket-Key: !!!!not-base64!!!!!!!=="],
    );
    out.push(
        case(
            addr,
            "Sec-WebSocket-Key not base64",
            "400: Sec-WebSocket-Key is not base64 (RFC 6455 §4.2.1)",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let h = with("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 8"]);
    out.push(
        case(
            addr,
            "Sec-WebSocket-Version: 8",
            "426 Sec-WebSocket-Version: 13: unsupported Sec-WebSocket-Version; this server speaks version 13 (RFC 6455 §4.4)",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let h = with("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 14"]);
    out.push(
        case(
            addr,
            "Sec-WebSocket-Version: 14",
            "426 Sec-WebSocket-Version: 13: unsupported Sec-WebSocket-Version; this server speaks version 13 (RFC 6455 §4.4)",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let h = with("Sec-WebSocket-Version", &[]);
    out.push(
        case(
            addr,
            "Sec-WebSocket-Version missing",
            "426 Sec-WebSocket-Version: 13: missing Sec-WebSocket-Version header field; this server speaks version 13 (RFC 6455 §4.2.1)",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let post = get.replacen("GET", "POST", 1);
    let h = std_headers();
    out.push(
        case(
            addr,
            "Upgrade on a POST",
            "400: the method of an opening handshake must be GET (RFC 6455 §4.2.1)",
            handshake(&post, &refs(&h)),
        )
        .await,
    );
    let old = get.replace("HTTP/1.1", "HTTP/1.0");
    out.push(
        case(
            addr,
            "Upgrade over HTTP/1.0",
            "400: an opening handshake requires HTTP/1.1 or later (RFC 6455 §4.2.1)",
            handshake(&old, &refs(&h)),
        )
        .await,
    );
    let h = with("Upgrade", &["Upgrade: h2c"]);
    out.push(
        case(
            addr,
            "Upgrade: h2c instead of websocket",
            "426 Sec-WebSocket-Version: 13: this path is a WebSocket endpoint: connect with a WebSocket client",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let big = format!("X-Filler: {}", "a".repeat(20 * 1024));
    let mut h = std_headers();
    h.push(big);
    out.push(
        case(
            addr,
            "header of 20 KiB (limit 16 KiB)",
            "431",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let mut h = std_headers();
    h.extend((0..100).map(|i| format!("X-Many-{i}: {i}")));
    out.push(
        case(
            addr,
            "105 header lines (limit 64)",
            "431",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let mut h = std_headers();
    h.push("X-Bad: one\rtwo".into());
    out.push(
        case(
            addr,
            "header value with a bare CR",
            "400",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let mut h = std_headers();
    h.push("X-Folded: one\r\n two".into());
    out.push(
        case(
            addr,
            "obs-fold continuation line",
            "400",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let mut h = std_headers();
    h.push("X-Nul: one\0two".into());
    out.push(
        case(
            addr,
            "header value with NUL",
            "400",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    let mut h = std_headers();
    h.push("X Space: value".into());
    out.push(
        case(
            addr,
            "header name with a space",
            "400",
            handshake(&get, &refs(&h)),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "Content-Length body on an upgrade",
            "400: an opening handshake request must not have a body",
            {
                let mut h = std_headers();
                h.push("Content-Length: 5".into());
                let mut r = handshake(&get, &refs(&h));
                r.extend_from_slice(b"hello");
                r
            },
        )
        .await,
    );
    out
}
