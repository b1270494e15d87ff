//! Pub/sub over real TCP through `Gateway::bind`: the whole path a browser takes (accept,
//! HTTP upgrade, route, hub, kernel socket buffers), not in-memory pipes.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{PATIENCE, Running, config_from, start};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tether::{ClientBuilder, CloseCode, Config, Message, WebSocket};
use tether_gateway::hub::Position;
use tether_gateway::protocol::{Delivery, SUBPROTOCOL, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;

/// A pub/sub client over a plain TCP stream.
struct Sub {
    ws: WebSocket<TcpStream>,
}

impl Sub {
    /// Connects to `/ws` on `tcp`, offering the pub/sub subprotocol and `config`'s
    /// extensions.
    async fn on(addr: SocketAddr, tcp: TcpStream, config: Config) -> Sub {
        let (ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
            .subprotocol(SUBPROTOCOL)
            .config(config)
            .connect_on(tcp)
            .await
            .unwrap();
        assert_eq!(ws.subprotocol(), Some(SUBPROTOCOL));
        Sub { ws }
    }

    async fn connect(addr: SocketAddr) -> Sub {
        Sub::on(
            addr,
            TcpStream::connect(addr).await.unwrap(),
            Config::default(),
        )
        .await
    }

    async fn recv(&mut self) -> ServerMessage {
        loop {
            let msg = timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message in time")
                .expect("the connection is open")
                .unwrap();
            if let Message::Text(text) = msg {
                return ServerMessage::parse(text.as_str()).unwrap();
            }
        }
    }

    async fn message(&mut self) -> Delivery {
        match self.recv().await {
            ServerMessage::Message(m) => m,
            other => panic!("expected a message, got {other}"),
        }
    }

    /// Subscribes and returns the topic's position in the ack.
    async fn subscribe(&mut self, topic: &str, since: Option<Position>) -> (Position, bool) {
        let mut request = json!({"type": "subscribe", "id": 1, "topic": topic});
        if let Some(p) = since {
            request["since"] = json!({"epoch": p.epoch.to_string(), "offset": p.offset});
        }
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
        match self.recv().await {
            ServerMessage::Ack(ack) => {
                let status = ack.topics.unwrap()[topic];
                (status.position(), status.recovered.unwrap_or(true))
            }
            other => panic!("expected an ack, got {other}"),
        }
    }
}

/// A gateway whose limits let one test client IP hold many connections.
async fn gateway(extra: &str) -> Running {
    start(config_from(&format!(
        "[limits]\nmax_connections_per_ip = 4000\n{extra}"
    )))
    .await
}

async fn publish(gw: &Running, topic: &str, data: Value) -> Position {
    gw.hub
        .publish(topic, Bytes::from(data.to_string()), None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_tcp_subscribers_receive_every_publish_in_order() {
    const SUBSCRIBERS: usize = 1000;
    const MESSAGES: u64 = 20;
    let gw = gateway("").await;
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut sub = Sub::connect(gw.addr).await;
        sub.subscribe("fan.out", None).await;
        readers.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            while offsets.len() < MESSAGES as usize {
                let m = sub.message().await;
                assert_eq!(m.data.get(), json!({"n": m.offset}).to_string());
                offsets.push(m.offset);
            }
            offsets
        }));
    }
    let started = Instant::now();
    for n in 1..=MESSAGES {
        publish(&gw, "fan.out", json!({"n": n})).await;
    }
    let expected: Vec<u64> = (1..=MESSAGES).collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
    eprintln!(
        "tcp fan-out: {MESSAGES} messages to {SUBSCRIBERS} subscribers in {:?}",
        started.elapsed()
    );
    assert_eq!(gw.hub.stats().deliveries(), MESSAGES * SUBSCRIBERS as u64);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_over_tcp_after_a_dropped_connection_loses_and_repeats_nothing() {
    const TOTAL: u64 = 3000;
    let gw = gateway("[hub]\nhistory_count = 10000\n").await;
    let mut sub = Sub::connect(gw.addr).await;
    let (start, _) = sub.subscribe("ticks", None).await;
    let hub = gw.hub.clone();
    let publisher = tokio::spawn(async move {
        for i in 1..=TOTAL {
            hub.publish("ticks", Bytes::from(i.to_string()), None)
                .await
                .unwrap();
            if i % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    let mut last = start;
    while last.offset < 300 {
        let m = sub.message().await;
        assert_eq!(m.offset, last.offset + 1, "no gap before the drop");
        last = m.position();
    }
    // Drop the TCP connection without a closing handshake, as a lost network would.
    drop(sub);
    let mut sub = Sub::connect(gw.addr).await;
    let (now, recovered) = sub.subscribe("ticks", Some(last)).await;
    assert!(recovered);
    assert_eq!(now.epoch, last.epoch);
    for expected in last.offset + 1..=TOTAL {
        let m = sub.message().await;
        assert_eq!(m.offset, expected, "exactly the next offset");
        assert_eq!(m.data.get(), expected.to_string());
    }
    publisher.await.unwrap();
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_client_that_stops_reading_is_closed_with_1008_and_others_keep_their_rate() {
    let gw = gateway("[hub]\nqueue_bytes = \"64 KiB\"\nslow_consumer = \"disconnect\"\n").await;
    // The slow client: no compression and a small receive buffer, so the kernel's buffers
    // fill soon; then it never reads again.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut plain = Config::default();
    plain.deflate = None;
    let tcp = socket.connect(gw.addr).await.unwrap();
    let mut slow = Sub::on(gw.addr, tcp, plain).await;
    slow.subscribe("feed", None).await;
    let mut fast = Sub::connect(gw.addr).await;
    fast.subscribe("feed", None).await;

    // Publish 1 KiB messages in batches of 16 (well inside the queue bound); the fast client
    // reads each batch completely before the next, so any stall caused by the slow one would
    // show as a timeout here.
    let filler = "x".repeat(1000);
    let mut offset = 0;
    let mut slowest_batch = Duration::ZERO;
    while gw.hub.stats().slow_consumer_disconnects() == 0 {
        assert!(offset < 100_000, "the slow client was never disconnected");
        let started = Instant::now();
        for _ in 0..16 {
            publish(&gw, "feed", json!({"fill": filler})).await;
        }
        for _ in 0..16 {
            offset += 1;
            assert_eq!(fast.message().await.offset, offset);
        }
        slowest_batch = slowest_batch.max(started.elapsed());
    }
    eprintln!(
        "slow consumer disconnected after {offset} messages; slowest batch of 16 for the fast client: {slowest_batch:?}"
    );
    // Memory stayed bounded: the gateway held at most its queue bound for the slow client,
    // the rest sat in kernel buffers. Now the slow client reads: what was on its way, then 1008.
    let frame = loop {
        match timeout(PATIENCE, slow.ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close code"),
            Some(Ok(_)) => {}
            other => panic!("expected the close frame, got {other:?}"),
        }
    };
    assert_eq!(frame.code, CloseCode::POLICY_VIOLATION);
    assert_eq!(frame.reason.as_str(), "slow consumer");
    // The fast client goes on.
    publish(&gw, "feed", json!("more")).await;
    assert_eq!(fast.message().await.offset, offset + 1);
    gw.stop().await;
}

/// Reads one whole frame from a raw socket: `(first header byte, payload)`. Server frames
/// are never masked (RFC 6455 §5.1).
async fn raw_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    timeout(PATIENCE, tcp.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head[1] & 0x80, 0, "a server frame is not masked");
    let len = match head[1] & 0x7f {
        126 => u64::from(tcp.read_u16().await.unwrap()),
        127 => tcp.read_u64().await.unwrap(),
        n => u64::from(n),
    };
    let mut payload = vec![0; len as usize];
    tcp.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

/// A raw client that negotiates permessage-deflate and subscribes to `topic`.
async fn raw_subscriber(addr: SocketAddr, topic: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 7692 §7.1.1.1: a pub/sub route makes the server drop its context per message,
    // which is what lets one compressed frame serve every subscriber.
    assert!(
        head.contains("permessage-deflate; server_no_context_takeover"),
        "{head}"
    );
    // One masked text frame (RFC 6455 §5.3); the key is arbitrary, zero keeps it readable.
    let body = json!({"type": "subscribe", "id": 1, "topic": topic}).to_string();
    let mut frame = vec![0x81, 0x80 | body.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(body.as_bytes());
    tcp.write_all(&frame).await.unwrap();
    let (first, ack) = raw_frame(&mut tcp).await;
    assert_eq!(first & 0x0f, 0x1, "the ack is a text frame");
    let ack = if first & 0x40 != 0 {
        inflate(&ack)
    } else {
        ack
    };
    assert!(String::from_utf8(ack).unwrap().contains("\"ack\""));
    tcp
}

/// RFC 7692 §7.2.2: append the empty stored block's tail, then inflate raw DEFLATE.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut data = payload.to_vec();
    data.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 << 10);
    flate2::Decompress::new(false)
        .decompress_vec(&data, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    out
}

#[tokio::test]
async fn subscribers_with_deflate_receive_one_shared_compressed_frame() {
    let gw = gateway("").await;
    let mut a = raw_subscriber(gw.addr, "prices").await;
    let mut b = raw_subscriber(gw.addr, "prices").await;
    let payload = json!({"quote": "ABC".repeat(200)});
    publish(&gw, "prices", payload.clone()).await;
    let (first_a, frame_a) = raw_frame(&mut a).await;
    let (first_b, frame_b) = raw_frame(&mut b).await;
    assert_eq!(first_a, 0xc1, "FIN + RSV1 (compressed) + text");
    assert_eq!((first_a, &frame_a), (first_b, &frame_b), "the same bytes");
    let envelope: Value = serde_json::from_slice(&inflate(&frame_a)).unwrap();
    assert_eq!(envelope["type"], "message");
    assert_eq!(envelope["data"], payload);
    assert!(frame_a.len() < payload.to_string().len() / 4);
    gw.stop().await;
}
