//! `kind = "proxy"` routes with raw TCP upstreams: plain HTTP requests proxied with their
//! bodies and header fields, and the answers when the upstream refuses the upgrade (502), is
//! not there (502) or stays silent (504). The WebSocket relay is in `tests/proxy.rs`.

mod common;

use std::net::SocketAddr;

use common::{PATIENCE, config_from, get, http, raw_upgrade, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// A gateway with one proxy route `/app` to `upstream`, plus `extra` route keys.
async fn gateway(upstream: &str, extra: &str) -> common::Running {
    start(config_from(&format!(
        "[[routes]]\npath = \"/app\"\nkind = \"proxy\"\nupstream = \"{upstream}\"\n{extra}"
    )))
    .await
}

/// One HTTP request as a raw upstream received it: the head (names lowercased) and body.
#[derive(Debug)]
struct Received {
    head: String,
    body: Vec<u8>,
}

/// A raw TCP upstream answering each connection's one request with `answer(&request)`.
async fn raw_upstream(
    answer: fn(&Received) -> String,
) -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Some(received) = read_request(&mut tcp).await else {
                    return;
                };
                let reply = answer(&received);
                let _ = tx.send(received);
                let _ = tcp.write_all(reply.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, rx)
}

async fn read_request(tcp: &mut TcpStream) -> Option<Received> {
    let mut raw = Vec::new();
    let mut buf = [0; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let head: String = head
                .lines()
                .enumerate()
                .map(|(i, line)| match line.split_once(':') {
                    Some((n, v)) if i > 0 => format!("{}:{v}\n", n.to_ascii_lowercase()),
                    _ => format!("{line}\n"),
                })
                .collect();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while raw.len() < end + 4 + length {
                let n = tcp.read(&mut buf).await.ok()?;
                if n == 0 {
                    return None;
                }
                raw.extend_from_slice(&buf[..n]);
            }
            let body = raw[end + 4..end + 4 + length].to_vec();
            return Some(Received { head, body });
        }
        let n = tcp.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

async fn received(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("the upstream got no request in time")
        .unwrap()
}

#[tokio::test]
async fn an_upstream_refusing_the_upgrade_gives_502_and_sees_forwarded_fields_only() {
    let (addr, mut requests) = raw_upstream(|_| {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello".into()
    })
    .await;
    let gw = gateway(&format!("ws://{addr}/base"), "").await;
    let answer = raw_upgrade(
        gw.addr,
        "/app/chat?room=1",
        "Connection: Upgrade, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n\
         Proxy-Authorization: Basic eDp5\r\nX-End: kept\r\n\
         X-Forwarded-For: 203.0.113.7\r\nSec-WebSocket-Protocol: chat\r\n",
    )
    .await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(
        answer.body.contains("does not support WebSocket") && answer.body.contains("200"),
        "{}",
        answer.body
    );
    let seen = received(&mut requests).await;
    let head = &seen.head;
    assert!(
        head.starts_with("GET /base/chat?room=1 HTTP/1.1\n"),
        "{head}"
    );
    assert!(head.contains(&format!("host: {addr}\n")), "{head}");
    assert!(head.contains("upgrade: websocket\n"), "{head}");
    assert!(head.contains("sec-websocket-protocol: chat\n"), "{head}");
    assert!(head.contains("x-end: kept\n"), "{head}");
    // RFC 9110 §7.6.1: the fields the client's Connection names, and the hop-by-hop ones.
    for dropped in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(
            !head.contains(&format!("{dropped}:")),
            "{dropped} in {head}"
        );
    }
    assert!(
        head.contains("x-forwarded-for: 203.0.113.7, 127.0.0.1\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "forwarded: for=127.0.0.1;proto=http;host=\"{}\"\n",
            gw.addr
        )),
        "{head}"
    );
    assert!(
        head.contains(&format!("x-forwarded-host: {}\n", gw.addr)),
        "{head}"
    );
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(
        metrics.contains(
            "tether_proxy_upstream_failures_total{route=\"/app\",reason=\"not_websocket\"} 1\n"
        ),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_gives_502() {
    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let gw = gateway(&format!("ws://{addr}/"), "").await;
    let answer = raw_upgrade(gw.addr, "/app", "").await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(answer.body.contains("cannot be reached"), "{}", answer.body);
    let plain = get(gw.addr, "/app/index.html").await;
    assert_eq!(plain.status, 502, "{plain:?}");
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(
        metrics.contains(
            "tether_proxy_upstream_failures_total{route=\"/app\",reason=\"unreachable\"} 2\n"
        ),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_silent_upstream_gives_504_after_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and holds every connection without a byte in answer.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let gw = gateway(&format!("ws://{addr}/"), "upstream_timeout = \"300ms\"\n").await;
    let started = std::time::Instant::now();
    let answer = raw_upgrade(gw.addr, "/app", "").await;
    assert_eq!(answer.status, 504, "{answer:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let plain = get(gw.addr, "/app/").await;
    assert_eq!(plain.status, 504, "{plain:?}");
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(
        metrics.contains(
            "tether_proxy_upstream_failures_total{route=\"/app\",reason=\"timeout\"} 2\n"
        ),
        "{metrics}"
    );
    gw.stop().await;
    holder.abort();
}

#[tokio::test]
async fn plain_http_requests_are_proxied_with_their_bodies() {
    let (addr, mut requests) = raw_upstream(|r| {
        let first = r.head.lines().next().unwrap_or_default().to_string();
        let body = format!("{first}\n{}", String::from_utf8_lossy(&r.body));
        format!(
            "HTTP/1.1 201 Created\r\nContent-Length: {}\r\nX-Upstream: yes\r\n\
             Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n\r\n{body}",
            body.len()
        )
    })
    .await;
    let gw = gateway(&format!("ws://{addr}/base"), "").await;

    let posted = http(
        gw.addr,
        "POST",
        "/app/submit?q=1",
        &[
            ("Content-Type", "text/plain"),
            ("X-Forwarded-For", "198.51.100.2"),
        ],
        "payload",
    )
    .await;
    assert_eq!(posted.status, 201, "{posted:?}");
    assert_eq!(posted.body, "POST /base/submit?q=1 HTTP/1.1\npayload");
    assert_eq!(posted.header("x-upstream").as_deref(), Some("yes"));
    // The upstream's hop-by-hop fields stop at the gateway too.
    assert_eq!(posted.header("x-secret"), None);
    assert_eq!(posted.header("keep-alive"), None);
    let seen = received(&mut requests).await;
    assert!(
        seen.head.contains(&format!("host: {addr}\n")),
        "{}",
        seen.head
    );
    assert!(
        seen.head.contains("content-type: text/plain\n"),
        "{}",
        seen.head
    );
    assert!(
        seen.head
            .contains("x-forwarded-for: 198.51.100.2, 127.0.0.1\n"),
        "{}",
        seen.head
    );
    assert!(
        seen.head.contains("x-forwarded-proto: http\n"),
        "{}",
        seen.head
    );
    assert!(!seen.head.contains("connection:"), "{}", seen.head);
    assert_eq!(seen.body, b"payload");

    let fetched = get(gw.addr, "/app/").await;
    assert_eq!(fetched.status, 201, "{fetched:?}");
    assert_eq!(fetched.body, "GET /base/ HTTP/1.1\n");
    // Paths beside the route are not proxied.
    assert_eq!(get(gw.addr, "/application").await.status, 404);
    gw.stop().await;
}
