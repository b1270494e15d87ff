//! Bridge routes over real sockets: a real `redis-server` and TCP servers in the test as
//! backends, the gateway in-process, tether clients.

mod bridge_support;
mod common;

use std::path::PathBuf;
use std::process::Stdio;

use bridge_support::{bridge_client, close_frame, echo_server, free_port, metric, read_bytes};
use common::{PATIENCE, config_from, connect, get, raw_upgrade, start};
use futures_util::SinkExt;
use tether::{ClientBuilder, Message};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A `redis-server` on a free port with persistence off, killed (by PID) when dropped.
struct Redis {
    port: u16,
    _child: tokio::process::Child,
}

impl Redis {
    /// Starts one and waits for its "Ready to accept connections" line. `None` when
    /// redis-server is not installed and `CI` is not set; in CI a missing one fails.
    async fn start() -> Option<Redis> {
        let port = free_port().await;
        let spawned = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && std::env::var_os("CI").is_none() =>
            {
                eprintln!("redis-server is not installed: skipping (CI installs it, see .ci/run)");
                return None;
            }
            Err(e) => panic!("cannot start redis-server (CI must have it, see .ci/run): {e}"),
        };
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("Ready to accept connections") {
                    return true;
                }
            }
            false
        };
        let ready = tokio::time::timeout(PATIENCE, ready).await;
        assert_eq!(ready, Ok(true), "redis-server did not become ready");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(Redis {
            port,
            _child: child,
        })
    }
}

#[tokio::test]
async fn resp_over_a_websocket_to_a_real_redis_server() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/redis\"\nkind = \"bridge\"\ntarget = \"127.0.0.1:{}\"\n\
         allow = [\"127.0.0.0/8:{}\"]\n",
        redis.port, redis.port
    )))
    .await;
    let mut ws = bridge_client(gw.addr, "/redis").await;
    assert_eq!(ws.subprotocol(), Some("binary"));
    ws.send(Message::binary(&b"*1\r\n$4\r\nPING\r\n"[..]))
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 7).await, b"+PONG\r\n");
    // A command split over two messages, and an inline one: the bytes are a stream.
    ws.send(Message::binary(&b"*3\r\n$3\r\nSET\r\n$6\r\ntet"[..]))
        .await
        .unwrap();
    ws.send(Message::binary(&b"her\r\n$5\r\nhello\r\n"[..]))
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 5).await, b"+OK\r\n");
    ws.send(Message::binary(&b"GET tether\r\n"[..]))
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 11).await, b"$5\r\nhello\r\n");
    // QUIT: redis answers and closes its side; the client learns why.
    ws.send(Message::binary(&b"QUIT\r\n"[..])).await.unwrap();
    assert_eq!(read_bytes(&mut ws, 5).await, b"+OK\r\n");
    assert_eq!(
        close_frame(&mut ws).await,
        (1000, "backend closed the connection".to_string())
    );
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(
        metric(
            &metrics,
            "tether_bridge_backend_sent_bytes_total{route=\"/redis\"}"
        ) >= 14
    );
    assert!(
        metric(
            &metrics,
            "tether_bridge_client_sent_bytes_total{route=\"/redis\"}"
        ) >= 28
    );
    assert_eq!(
        metric(&metrics, "tether_bridge_sessions_total{route=\"/redis\"}"),
        1
    );
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_port_closes_with_1011_backend_unreachable() {
    let port = free_port().await;
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/down\"\nkind = \"bridge\"\ntarget = \"127.0.0.1:{port}\"\n"
    )))
    .await;
    let mut ws = bridge_client(gw.addr, "/down").await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1011, "backend unreachable".to_string())
    );
    let metrics = get(gw.addr, "/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            "tether_bridge_connect_failures_total{route=\"/down\"}"
        ),
        1
    );
    assert_eq!(
        metric(&metrics, "tether_bridge_sessions_open{route=\"/down\"}"),
        0
    );
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}

#[tokio::test]
async fn clients_must_offer_binary_or_the_routes_own_subprotocol() {
    let echo = echo_server().await;
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/ica\"\nkind = \"bridge\"\ntarget = \"{echo}\"\nsubprotocols = [\"ica\"]\n"
    )))
    .await;
    let refused = raw_upgrade(gw.addr, "/ica", "").await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("offer one of ica, binary"),
        "{}",
        refused.body
    );
    let refused = raw_upgrade(gw.addr, "/ica", "Sec-WebSocket-Protocol: chat\r\n").await;
    assert_eq!(refused.status, 400);
    let accepted = raw_upgrade(gw.addr, "/ica", "Sec-WebSocket-Protocol: chat, ica\r\n").await;
    assert_eq!(accepted.status, 101);
    assert_eq!(
        accepted.header("sec-websocket-protocol").as_deref(),
        Some("ica")
    );
    // The route's own protocol carries bytes like `binary` does.
    let mut ws = connect(gw.addr, "/ica", Some("ica")).await;
    assert_eq!(ws.subprotocol(), Some("ica"));
    ws.send(Message::binary(&b"\x7f\x7fICA\x00"[..]))
        .await
        .unwrap();
    assert_eq!(read_bytes(&mut ws, 6).await, b"\x7f\x7fICA\x00");
    let metrics = get(gw.addr, "/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            "tether_handshakes_refused_total{reason=\"subprotocol\"}"
        ),
        2
    );
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}

/// A token file in a fresh directory.
fn token_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-bridge-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens.txt");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn tokens_pick_the_target_within_the_allow_list_and_reload() {
    let echo = echo_server().await;
    let outside = free_port().await;
    let path = token_file(
        "tokens",
        &format!(
            "# test tokens\ndesk-1: {echo}\nsneaky: 127.0.0.1:{outside}\n\
             by-name: localhost:{}\nby-name-outside: localhost:{outside}\n",
            echo.port()
        ),
    );
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/vnc\"\nkind = \"bridge\"\ntoken_file = {:?}\nallow = [\"127.0.0.1:{}\"]\n",
        path.display().to_string(),
        echo.port()
    )))
    .await;
    let offer = "Sec-WebSocket-Protocol: binary\r\n";
    let unknown = raw_upgrade(gw.addr, "/vnc/nobody", offer).await;
    assert_eq!(unknown.status, 403, "{unknown:?}");
    assert!(unknown.body.contains("unknown or invalid bridge token"));
    let not_allowed = raw_upgrade(gw.addr, "/vnc/sneaky", offer).await;
    assert_eq!(not_allowed.status, 403);
    assert!(not_allowed.body.contains("not in the route's allow list"));
    let not_allowed = raw_upgrade(gw.addr, "/vnc/by-name-outside", offer).await;
    assert_eq!(not_allowed.status, 403);
    let missing = raw_upgrade(gw.addr, "/vnc", offer).await;
    assert_eq!(missing.status, 401);
    assert_eq!(raw_upgrade(gw.addr, "/vnc/a/b", offer).await.status, 404);
    // The token in the path, and in the query.
    // A host name passes by the addresses it resolves to (localhost's ::1 is not allowed:
    // only 127.0.0.1 is tried).
    for target in ["/vnc/desk-1", "/vnc?token=desk-1", "/vnc/by-name"] {
        let mut ws = bridge_client(gw.addr, target).await;
        ws.send(Message::binary(&b"RFB 003.008\n"[..]))
            .await
            .unwrap();
        assert_eq!(read_bytes(&mut ws, 12).await, b"RFB 003.008\n");
    }
    // A new token works as soon as the file says so; a broken edit keeps the last good one.
    assert_eq!(raw_upgrade(gw.addr, "/vnc/desk-2", offer).await.status, 403);
    std::fs::write(&path, format!("desk-1: {echo}\ndesk-2: {echo}\n")).unwrap();
    let mut ws = bridge_client(gw.addr, "/vnc/desk-2").await;
    ws.send(Message::binary(&b"two"[..])).await.unwrap();
    assert_eq!(read_bytes(&mut ws, 3).await, b"two");
    std::fs::write(&path, "this line has no separator\n").unwrap();
    assert_eq!(raw_upgrade(gw.addr, "/vnc/desk-2", offer).await.status, 101);
    let metrics = get(gw.addr, "/metrics").await.body;
    assert_eq!(
        metric(
            &metrics,
            "tether_handshakes_refused_total{reason=\"bridge_target\"}"
        ),
        5
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}

#[tokio::test]
async fn backend_eof_reset_and_client_text_map_to_close_codes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/b\"\nkind = \"bridge\"\ntarget = \"{backend}\"\n"
    )))
    .await;
    // EOF: the bytes before it arrive, then 1000.
    let mut ws = bridge_client(gw.addr, "/b").await;
    let (mut tcp, _) = listener.accept().await.unwrap();
    tcp.write_all(b"bye").await.unwrap();
    tcp.shutdown().await.unwrap();
    assert_eq!(read_bytes(&mut ws, 3).await, b"bye");
    assert_eq!(
        close_frame(&mut ws).await,
        (1000, "backend closed the connection".to_string())
    );
    drop(tcp);
    // Reset mid-session (once bytes have flowed, so the connection is surely up): 1014.
    let mut ws = bridge_client(gw.addr, "/b").await;
    let (mut tcp, _) = listener.accept().await.unwrap();
    tcp.write_all(b"hello").await.unwrap();
    assert_eq!(read_bytes(&mut ws, 5).await, b"hello");
    tcp.set_zero_linger().unwrap();
    drop(tcp);
    assert_eq!(
        close_frame(&mut ws).await,
        (1014, "backend connection reset".to_string())
    );
    // Text from the client: 1003, and the backend sees EOF.
    let mut ws = bridge_client(gw.addr, "/b").await;
    let (mut tcp, _) = listener.accept().await.unwrap();
    ws.send(Message::text("not bytes")).await.unwrap();
    assert_eq!(
        close_frame(&mut ws).await,
        (1003, "this bridge carries binary messages only".to_string())
    );
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    // The client's close: the backend gets what came before it, then EOF.
    let mut ws = bridge_client(gw.addr, "/b").await;
    let (mut tcp, _) = listener.accept().await.unwrap();
    ws.send(Message::binary(&b"last words"[..])).await.unwrap();
    ws.close(None).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, b"last words");
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}

#[tokio::test]
async fn gateway_shutdown_closes_bridges_with_1001() {
    let echo = echo_server().await;
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/b\"\nkind = \"bridge\"\ntarget = \"{echo}\"\n"
    )))
    .await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{}/b", gw.addr))
        .subprotocol("binary")
        .connect()
        .await
        .unwrap();
    ws.send(Message::binary(&b"up"[..])).await.unwrap();
    assert_eq!(read_bytes(&mut ws, 2).await, b"up");
    let stopping = tokio::spawn(gw.stop());
    assert_eq!(
        close_frame(&mut ws).await,
        (1001, "server shutting down".to_string())
    );
    stopping.await.unwrap();
    assert!(
        TcpStream::connect(echo).await.is_ok(),
        "the backend is untouched"
    );
}
