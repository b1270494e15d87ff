//! A bridge backend reset and closed mid-stream, and a proxy upstream (a second `tether
//! serve`) killed with SIGKILL mid-stream: each affected client gets its close code
//! (1014 reset, 1000 EOF, 1014 upstream lost), a new proxy handshake gets 502, `/metrics`
//! counts each failure, `/healthz` stays ok, the echo probe stays fast and every publish
//! acknowledged during the faults reaches the subscriber.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, CloseCode, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::clients::{Probe, Publisher, Subscriber};
use crate::gateway::{Gateway, http};
use crate::support::PATIENCE;

/// Slowest probe round trip allowed during the faults (2 shared cores, debug build).
const PROBE_MAX: Duration = Duration::from_secs(1);
/// Publishes acknowledged before, between and after the faults.
const PUBLISHES_BETWEEN: usize = 25;

/// How a backend connection ends.
enum Ending {
    /// SO_LINGER 0 and close: the gateway reads ECONNRESET.
    Reset,
    /// Shutdown of the write side: the gateway reads EOF.
    Eof,
}

/// An echo backend; each accepted connection is handed over as a trigger that ends it.
async fn echo_backend() -> (
    std::net::SocketAddr,
    mpsc::Receiver<oneshot::Sender<Ending>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, triggers) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (end, ending) = oneshot::channel();
            if accepted.send(end).await.is_err() {
                return;
            }
            tokio::spawn(echo_until(tcp, ending));
        }
    });
    (addr, triggers)
}

async fn echo_until(mut tcp: TcpStream, ending: oneshot::Receiver<Ending>) {
    let mut buf = [0u8; 4096];
    tokio::pin!(ending);
    loop {
        tokio::select! {
            how = &mut ending => {
                match how {
                    Ok(Ending::Reset) => tcp.set_zero_linger().unwrap(),
                    Ok(Ending::Eof) | Err(_) => tcp.shutdown().await.unwrap(),
                }
                return;
            }
            n = tcp.read(&mut buf) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => tcp.write_all(&buf[..n]).await.unwrap(),
            },
        }
    }
}

type Client = tether::WebSocket<tether::MaybeTlsStream<TcpStream>>;

/// A WebSocket that has done one round trip (so its far side is connected).
async fn connected(url: &str, subprotocol: Option<&str>) -> Client {
    let mut builder = ClientBuilder::new(url);
    if let Some(p) = subprotocol {
        builder = builder.subprotocol(p);
    }
    let (mut ws, _) = builder.connect().await.unwrap();
    ws.send(Message::binary(&b"ping"[..])).await.unwrap();
    let echoed = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert!(
        matches!(echoed, Some(Ok(Message::Binary(ref b))) if &b[..] == b"ping"),
        "{echoed:?}"
    );
    ws
}

/// The close code and reason the client gets next.
async fn close_of(ws: &mut Client) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_killed_mid_stream_get_their_close_codes_and_nobody_else_notices() {
    let upstream = Gateway::start(
        "upstream.toml",
        "listen = \"127.0.0.1:0\"\n[[routes]]\npath = \"/echo\"\nkind = \"echo\"\n",
        &[],
    );
    let (backend, mut triggers) = echo_backend().await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         [[routes]]\npath = \"/ws\"\nkind = \"pubsub\"\n\
         [[routes]]\npath = \"/echo\"\nkind = \"echo\"\n\
         [[routes]]\npath = \"/backend\"\nkind = \"bridge\"\ntarget = \"{backend}\"\n\
         [[routes]]\npath = \"/app\"\nkind = \"proxy\"\nupstream = \"ws://{}/\"\n",
        upstream.addr
    );
    let mut gateway = Gateway::start("faults-backends.toml", &config, &[]);
    let addr = gateway.addr;
    let subscriber = Subscriber::start(addr, "faults.ledger").await;
    let probe = Probe::start(addr).await;
    let mut publisher = Publisher::start(addr, "faults.ledger");

    let mut reset = connected(&gateway.url("/backend"), Some("binary")).await;
    let reset_trigger = triggers.recv().await.unwrap();
    let mut eof = connected(&gateway.url("/backend"), Some("binary")).await;
    let eof_trigger = triggers.recv().await.unwrap();
    let mut proxied = connected(&gateway.url("/app/echo"), None).await;
    // Each fault falls between two stretches of acknowledged publishes.
    publisher.more(PUBLISHES_BETWEEN).await;

    let _ = reset_trigger.send(Ending::Reset);
    assert_eq!(
        close_of(&mut reset).await,
        (CloseCode::BAD_GATEWAY, "backend connection reset".into())
    );
    publisher.more(PUBLISHES_BETWEEN).await;
    let _ = eof_trigger.send(Ending::Eof);
    assert_eq!(
        close_of(&mut eof).await,
        (CloseCode::NORMAL, "backend closed the connection".into())
    );
    publisher.more(PUBLISHES_BETWEEN).await;
    upstream.signal("-KILL");
    assert_eq!(
        close_of(&mut proxied).await,
        (
            CloseCode::BAD_GATEWAY,
            "the upstream connection was lost".into()
        )
    );
    publisher.more(PUBLISHES_BETWEEN).await;
    // A new handshake to the dead upstream is refused before the 101.
    match ClientBuilder::new(gateway.url("/app/echo")).connect().await {
        Err(tether::Error::HandshakeRefused(refused)) => assert_eq!(refused.status, 502),
        other => panic!("expected 502, got {other:?}"),
    }
    // The bridge still serves new sessions.
    drop(connected(&gateway.url("/backend"), Some("binary")).await);

    let acked = publisher.finish().await;
    let latencies = probe.finish().await;
    subscriber.assert_received(&acked).await;
    let (status, health) = gateway.get("/healthz").await;
    assert_eq!((status, health.trim()), (200, "{\"status\":\"ok\"}"));
    let backend_errors = gateway
        .metric("tether_bridge_backend_errors_total{route=\"/backend\"}")
        .await;
    let lost = gateway
        .metric("tether_proxy_upstream_failures_total{route=\"/app\",reason=\"lost\"}")
        .await;
    let unreachable = gateway
        .metric("tether_proxy_upstream_failures_total{route=\"/app\",reason=\"unreachable\"}")
        .await;
    let max = *latencies.last().unwrap();
    let median = latencies[latencies.len() / 2];
    eprintln!(
        "faults: bridge reset -> 1014, bridge EOF -> 1000, proxy upstream killed -> 1014, \
         new proxy handshake -> 502; metrics: bridge backend errors {backend_errors}, proxy \
         lost {lost}, unreachable {unreachable}; probe {} round trips, median {median:?}, \
         max {max:?}; {} publishes acked during the faults, all delivered",
        latencies.len(),
        acked.len()
    );
    assert_eq!(backend_errors, 1.0, "the reset counts, the EOF does not");
    assert_eq!(lost, 1.0);
    assert!(unreachable >= 1.0);
    assert!(max < PROBE_MAX, "probe max {max:?}");
    assert!(
        acked.len() >= 4 * PUBLISHES_BETWEEN,
        "too few publishes to show anything: {}",
        acked.len()
    );
    assert!(gateway.alive());
    let (status, _) = http(addr, "GET", "/healthz", "").await;
    assert_eq!(status, 200);
}
