//! Helpers shared by the gateway's integration tests: a gateway on port 0 with a shutdown
//! switch, a raw HTTP/1.1 client, WebSocket clients.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use tether::{ClientBuilder, MaybeTlsStream, Message, WebSocket};
use tether_gateway::{Gateway, GatewayConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long any single wait in a test may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A gateway running in the test's runtime.
pub struct Running {
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub hub: std::sync::Arc<tether_gateway::hub::Hub>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// Triggers the graceful shutdown and waits until `run` has returned.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task.take().unwrap())
            .await
            .expect("the gateway did not stop in time")
            .unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A test config: plain listener on 127.0.0.1:0, no demo feeds, clients that do not answer
/// the close frame are dropped after 3 s.
pub fn config() -> GatewayConfig {
    GatewayConfig {
        listen: "127.0.0.1:0".into(),
        demo: false,
        shutdown_timeout: Duration::from_secs(3),
        ..GatewayConfig::default()
    }
}

/// A config from TOML, with the settings of [`config`] unless it says otherwise.
pub fn config_from(toml: &str) -> GatewayConfig {
    let text = format!("listen = \"127.0.0.1:0\"\ndemo = false\nshutdown_timeout = \"3s\"\n{toml}");
    GatewayConfig::from_toml(&text).unwrap()
}

/// Binds and runs `config` until [`Running::stop`].
pub async fn start(config: GatewayConfig) -> Running {
    let gateway = Gateway::bind(config).await.unwrap();
    let addr = gateway
        .local_addr()
        .unwrap_or_else(|| "127.0.0.1:9".parse().unwrap());
    let tls_addr = gateway.tls_local_addr();
    let hub = gateway.hub().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(gateway.run(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        tls_addr,
        hub,
        stop: Some(stop),
        task: Some(task),
    }
}

/// An HTTP response as the test sees it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends a complete request with `Connection: close` and reads the whole response.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpResponse {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut raw))
        .await
        .expect("no response in time")
        .unwrap();
    parse_response(&raw)
}

/// Splits a raw HTTP/1.1 response (Content-Length bodies only, as the gateway sends them).
pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `GET` without headers.
pub async fn get(addr: SocketAddr, target: &str) -> HttpResponse {
    http(addr, "GET", target, &[], "").await
}

/// The raw answer to an upgrade request for `path` with extra header lines.
pub async fn raw_upgrade(addr: SocketAddr, path: &str, extra: &str) -> HttpResponse {
    raw_request(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ),
    )
    .await
}

/// Sends `request` as is and reads the response head, and its body by `Content-Length`
/// (or until a `101` head is complete).
pub async fn raw_request(addr: SocketAddr, request: &str) -> HttpResponse {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0; 4096];
    // Read the head, and the body of a refusal (by its Content-Length).
    loop {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
            .await
            .expect("no answer in time")
            .unwrap();
        raw.extend_from_slice(&buf[..n]);
        if n == 0 {
            break;
        }
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let response = parse_response(&raw);
            let length: usize = response
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if response.status == 101 || raw.len() >= end + 4 + length {
                break;
            }
        }
    }
    parse_response(&raw)
}

/// A WebSocket client of the gateway.
pub type Client = WebSocket<MaybeTlsStream<TcpStream>>;

/// Connects to `path` offering `subprotocol`.
pub async fn connect(addr: SocketAddr, path: &str, subprotocol: Option<&str>) -> Client {
    let mut builder = ClientBuilder::new(format!("ws://{addr}{path}"));
    if let Some(p) = subprotocol {
        builder = builder.subprotocol(p);
    }
    builder.connect().await.unwrap().0
}

/// The next text message, skipping control frames; panics on anything else or a timeout.
pub async fn next_text(ws: &mut Client) -> String {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no message in time")
            .expect("the connection ended")
            .expect("the connection failed");
        match msg {
            Message::Text(t) => return t.as_str().to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Reads until the close frame, then to the end of the stream; returns the close code.
pub async fn close_code(ws: &mut Client) -> Option<u16> {
    loop {
        let msg = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no close in time");
        match msg {
            Some(Ok(Message::Close(frame))) => {
                // Keep polling so our close reply goes out and the handshake completes.
                while let Ok(Some(_)) = tokio::time::timeout(PATIENCE, ws.next()).await {}
                return frame.map(|f| f.code.0);
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("the connection failed before the close frame: {e}"),
            None => panic!("the connection ended without a close frame"),
        }
    }
}
