//! `kind = "proxy"` routes over real sockets, WebSocket side: a Python `websockets` upstream
//! (handshake negotiated end to end, echo, close codes and reasons both ways), the order of a
//! client's protocol error against the upstream's answers, and a wss upstream. Plain HTTP and
//! the 502/504 answers are in `tests/proxy_http.rs`.
//!
//! The Python peer is `tests/peers/proxy_upstream.py`, run with `.venv-conformance`'s Python
//! (`bash scripts/setup-conformance.sh`). Without any python3 the test says it is skipped,
//! except under CI (`CI` set), where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{PATIENCE, config_from, get, raw_upgrade, start};
use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, CloseFrame, Message};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python with `websockets`: the conformance venv's, else python3 with it installed.
/// `None` (said on stderr) only outside CI when there is no python3 at all.
fn python() -> Option<PathBuf> {
    let runs = |p: &Path| {
        std::process::Command::new(p)
            .args(["-c", "import websockets.asyncio.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let venv = manifest_dir().join("../../.venv-conformance/bin/python");
    if runs(&venv) {
        return Some(venv);
    }
    let system = PathBuf::from("python3");
    if runs(&system) {
        return Some(system);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no Python with `websockets`: run `bash scripts/setup-conformance.sh`"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: no Python with `websockets` (bash scripts/setup-conformance.sh)"
    );
    None
}

/// The Python upstream, killed when dropped, and its output lines.
struct PythonUpstream {
    port: u16,
    lines: Lines<BufReader<ChildStdout>>,
    _child: Child,
}

impl PythonUpstream {
    async fn start(python: &Path) -> PythonUpstream {
        let mut child = Command::new(python)
            .arg(manifest_dir().join("tests/peers/proxy_upstream.py"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start proxy_upstream.py");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = next_line(&mut lines).await;
        let port = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
        PythonUpstream {
            port,
            lines,
            _child: child,
        }
    }

    async fn next_line(&mut self) -> String {
        next_line(&mut self.lines).await
    }
}

async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(lines: &mut Lines<R>) -> String {
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("no output from the upstream in time")
        .unwrap()
        .expect("the upstream exited")
}

/// A gateway with one proxy route `/app` to `upstream`, plus `extra` route keys.
async fn gateway(upstream: &str, extra: &str) -> common::Running {
    start(config_from(&format!(
        "[[routes]]\npath = \"/app\"\nkind = \"proxy\"\nupstream = \"{upstream}\"\n{extra}"
    )))
    .await
}

#[tokio::test]
async fn python_upstream_negotiates_end_to_end_echoes_and_passes_closes_both_ways() {
    let Some(python) = python() else { return };
    let mut upstream = PythonUpstream::start(&python).await;
    let gw = gateway(&format!("ws://127.0.0.1:{}/base", upstream.port), "").await;

    let (mut ws, response) = ClientBuilder::new(format!("ws://{}/app/room?x=1", gw.addr))
        .subprotocol("chat.v0")
        .subprotocol("chat.v1")
        .header("X-End-To-End", "yes")
        .header("Keep-Alive", "timeout=5")
        .header("TE", "trailers")
        .connect()
        .await
        .unwrap();
    let seen: serde_json::Value = match tokio::time::timeout(PATIENCE, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected the upstream's report, got {other:?}"),
    };
    // The path below the route maps onto the upstream's base path, query kept.
    assert_eq!(seen["path"], "/base/room?x=1");
    // The subprotocol the upstream chose from the client's own offers reaches the client.
    assert_eq!(seen["subprotocol"], "chat.v1");
    assert_eq!(response.subprotocol.as_deref(), Some("chat.v1"));
    assert_eq!(ws.subprotocol(), Some("chat.v1"));
    // The client's permessage-deflate offer reached the upstream, and the upstream's answer
    // reached the client unchanged.
    assert_eq!(
        seen["offered_extensions"],
        "permessage-deflate; client_max_window_bits"
    );
    let chosen = seen["extensions"]
        .as_str()
        .expect("the upstream accepted deflate");
    assert!(chosen.starts_with("permessage-deflate"), "{chosen}");
    assert_eq!(
        response.header("sec-websocket-extensions"),
        Some(chosen.as_bytes())
    );
    assert!(ws.negotiated().compression);
    assert_eq!(seen["x_forwarded_for"], "127.0.0.1");
    assert_eq!(seen["x_forwarded_proto"], "http");
    assert_eq!(
        seen["forwarded"],
        format!("for=127.0.0.1;proto=http;host=\"{}\"", gw.addr)
    );
    assert_eq!(seen["end_to_end"], "yes");
    assert_eq!(seen["hop_by_hop"], serde_json::json!([]));

    // Text large enough to be compressed on both legs, and binary.
    let text = "proxied through tether ".repeat(200);
    ws.send(Message::text(text.clone())).await.unwrap();
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < 2 {
        match tokio::time::timeout(PATIENCE, ws.next()).await.unwrap() {
            Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => echoed.push(msg),
            Some(Ok(_)) => {}
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    assert_eq!(echoed[0], Message::text(text));
    assert_eq!(echoed[1], Message::binary(vec![0u8, 1, 2, 255]));

    // The client's close code and reason reach the upstream.
    tokio::time::timeout(
        PATIENCE,
        ws.close(Some(CloseFrame::new(4002, "client bye"))),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(upstream.next_line().await, "closed 4002 client bye");

    // The upstream's close code and reason reach the client.
    let (mut ws, _) = ClientBuilder::new(format!("ws://{}/app", gw.addr))
        .subprotocol("chat.v2")
        .connect()
        .await
        .unwrap();
    let report = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert!(matches!(report, Some(Ok(Message::Text(_)))), "{report:?}");
    ws.send(Message::text("close-me")).await.unwrap();
    match tokio::time::timeout(PATIENCE, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => {
            assert_eq!(frame.code.0, 4001);
            assert_eq!(frame.reason, "server bye");
        }
        other => panic!("expected close 4001, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap()
            .is_none()
    );
    // The client's reply (the engine echoes the code) completes the upstream's handshake.
    assert!(upstream.next_line().await.starts_with("closed 4001"));
    gw.stop().await;
}

/// Reads one unmasked frame: (first byte, payload). Small frames only (no 64-bit lengths).
/// The first message of `proxy_upstream.py`: what its side of the handshake showed.
async fn upstream_report<S>(ws: &mut tether::WebSocket<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(PATIENCE, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected the upstream's report, got {other:?}"),
    }
}

#[tokio::test]
async fn the_gateways_own_token_is_not_forwarded_upstream() {
    let Some(python) = python() else { return };
    let upstream = PythonUpstream::start(&python).await;
    let gw = gateway(
        &format!("ws://127.0.0.1:{}/base", upstream.port),
        "[[auth.tokens]]\ntoken = \"gateway-secret\"\nsubscribe = [\"*\"]\n",
    )
    .await;
    // Without the token: 401 at the gateway, the upstream is never asked.
    let refused = ClientBuilder::new(format!("ws://{}/app", gw.addr))
        .connect()
        .await;
    assert!(refused.is_err(), "admitted without a token");

    // In the query: admitted, and the upstream sees the other parameters only.
    let (mut ws, _) = ClientBuilder::new(format!(
        "ws://{}/app/room?a=1&token=gateway-secret&b=2",
        gw.addr
    ))
    .subprotocol("chat.v1")
    .connect()
    .await
    .unwrap();
    let seen = upstream_report(&mut ws).await;
    assert_eq!(seen["path"], "/base/room?a=1&b=2");
    assert_eq!(seen["authorization"], serde_json::Value::Null);

    // In the header: admitted, and the upstream gets no Authorization field.
    let (mut ws, _) = ClientBuilder::new(format!("ws://{}/app?token=gateway-secret", gw.addr))
        .header("Authorization", "Bearer gateway-secret")
        .subprotocol("chat.v1")
        .connect()
        .await
        .unwrap();
    let seen = upstream_report(&mut ws).await;
    assert_eq!(seen["path"], "/base");
    assert_eq!(seen["authorization"], serde_json::Value::Null);
    gw.stop().await;
}

async fn read_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0; 2];
    tokio::time::timeout(PATIENCE, tcp.read_exact(&mut head))
        .await
        .expect("no frame in time")
        .unwrap();
    assert_eq!(head[1] & 0x80, 0, "frames from the gateway are not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0; 2];
            tcp.read_exact(&mut ext).await.unwrap();
            u16::from_be_bytes(ext) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1, 2, 3, 4];
    let mut frame = vec![first, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

#[tokio::test]
async fn rfc6455_7_1_7_a_client_protocol_error_closes_after_the_upstreams_answers() {
    // A tether echo server upstream: it answers a message before it answers a close that
    // follows in the same read, which is the order this test checks arrives at the client.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tether::accept(tcp).await else {
                    return;
                };
                let _ = ws.send(Message::text("ready")).await;
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_data() && ws.feed(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let gw = gateway(&format!("ws://{upstream}/"), "").await;
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let handshake = format!(
        "GET /app HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gw.addr
    );
    tcp.write_all(handshake.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        tokio::time::timeout(PATIENCE, tcp.read_exact(&mut byte))
            .await
            .expect("no 101 in time")
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    assert_eq!(read_frame(&mut tcp).await, (0x81, b"ready".to_vec()));
    // A message, then a reserved opcode (RFC 6455 §5.2), then a ping, in one write.
    let mut bytes = masked_frame(0x81, b"Hello");
    bytes.extend(masked_frame(0x83, b""));
    bytes.extend(masked_frame(0x89, b"ping"));
    tcp.write_all(&bytes).await.unwrap();
    // The upstream's echo of the message before the violation arrives first, then the close
    // with the violation's code; the ping after it is never answered.
    assert_eq!(read_frame(&mut tcp).await, (0x81, b"Hello".to_vec()));
    let (close, payload) = read_frame(&mut tcp).await;
    assert_eq!(close, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
    gw.stop().await;
}

/// A self-signed certificate for `localhost` in a temporary directory, removed on drop.
struct TestCertificate {
    dir: PathBuf,
}

impl TestCertificate {
    fn new(name: &str) -> TestCertificate {
        let dir =
            std::env::temp_dir().join(format!("tether-proxy-it-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
        TestCertificate { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_str().unwrap().to_string()
    }
}

impl Drop for TestCertificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_wss_upstream_is_trusted_through_upstream_ca_file() {
    let cert = TestCertificate::new("wss");
    // The upstream: another gateway, TLS only, with its echo route.
    let upstream = start(config_from(&format!(
        "[[routes]]\npath = \"/echo\"\nkind = \"echo\"\n\
         [tls]\nlisten = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\nonly = true\n",
        cert.path("cert.pem"),
        cert.path("key.pem"),
    )))
    .await;
    let port = upstream.tls_addr.unwrap().port();
    let gw = gateway(
        &format!("wss://localhost:{port}/echo"),
        &format!("upstream_ca_file = {:?}\n", cert.path("cert.pem")),
    )
    .await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{}/app", gw.addr))
        .connect()
        .await
        .unwrap();
    ws.send(Message::text("over tls")).await.unwrap();
    assert_eq!(common::next_text(&mut ws).await, "over tls");
    // A plain request goes over https: the upstream's echo route answers it with 426.
    assert_eq!(get(gw.addr, "/app").await.status, 426);
    gw.stop().await;

    // Without the CA the upstream's certificate is not trusted: 502.
    let untrusted = gateway(&format!("wss://localhost:{port}/echo"), "").await;
    let answer = raw_upgrade(untrusted.addr, "/app", "").await;
    assert_eq!(answer.status, 502, "{answer:?}");
    assert!(answer.body.contains("cannot be reached"), "{}", answer.body);
    untrusted.stop().await;
    upstream.stop().await;
}
