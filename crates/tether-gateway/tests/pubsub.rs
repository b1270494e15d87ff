//! The hub end to end: `Hub::serve` over in-memory WebSocket pairs speaking
//! `tether.pubsub.v1`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tether::{AcceptOptions, ClientBuilder, CloseCode, Config, Message, WebSocket};
use tether_gateway::hub::{Hub, HubConfig, Permissions, Position, SlowConsumerPolicy, TopicPolicy};
use tether_gateway::protocol::{Ack, Delivery, ErrorCode, ErrorReply, SUBPROTOCOL, ServerMessage};
use tokio::io::{DuplexStream, duplex};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Generous: only a broken hub waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

struct Client {
    ws: WebSocket<DuplexStream>,
    server: JoinHandle<()>,
}

struct Server {
    hub: Arc<Hub>,
    shutdown: watch::Sender<bool>,
}

impl Server {
    fn new(config: HubConfig) -> Server {
        Server {
            hub: Hub::new(config),
            shutdown: watch::channel(false).0,
        }
    }

    async fn connect(&self) -> Client {
        self.connect_with(Permissions::allow_all(), 1 << 20).await
    }

    /// A client over a duplex pipe buffering `pipe` bytes each way.
    async fn connect_with(&self, permissions: Permissions, pipe: usize) -> Client {
        let (a, b) = duplex(pipe);
        let hub = self.hub.clone();
        let shutdown = self.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let options = AcceptOptions {
                subprotocols: vec![SUBPROTOCOL.into()],
                ..AcceptOptions::default()
            };
            let ws = tether::accept_with(a, Config::default(), |_| Ok(options))
                .await
                .unwrap();
            hub.serve(ws, permissions, shutdown).await;
        });
        let (ws, _) = ClientBuilder::new("ws://test/")
            .subprotocol(SUBPROTOCOL)
            .connect_on(b)
            .await
            .unwrap();
        assert_eq!(ws.subprotocol(), Some(SUBPROTOCOL));
        Client { ws, server }
    }

    async fn publish(&self, topic: &str, data: Value, key: Option<&str>) -> Position {
        let data = Bytes::from(data.to_string());
        let key = key.map(str::to_owned);
        self.hub.publish(topic, data, key).await.unwrap()
    }
}

impl Client {
    async fn send(&mut self, request: Value) {
        self.ws
            .send(Message::text(request.to_string()))
            .await
            .unwrap();
    }

    /// The next text message, parsed.
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

    async fn ack(&mut self) -> Ack {
        match self.recv().await {
            ServerMessage::Ack(ack) => ack,
            other => panic!("expected an ack, got {other}"),
        }
    }

    async fn error(&mut self) -> ErrorReply {
        match self.recv().await {
            ServerMessage::Error(error) => error,
            other => panic!("expected an error, got {other}"),
        }
    }

    async fn message(&mut self) -> Delivery {
        match self.recv().await {
            ServerMessage::Message(message) => message,
            other => panic!("expected a message, got {other}"),
        }
    }

    async fn subscribe(&mut self, topic: &str, since: Option<Value>) -> Ack {
        let mut request = json!({"type": "subscribe", "id": topic, "topic": topic});
        if let Some(since) = since {
            request["since"] = since;
        }
        self.send(request).await;
        let ack = self.ack().await;
        assert_eq!(
            ack.id,
            Some(tether_gateway::protocol::RequestId::Text(topic.into()))
        );
        ack
    }

    /// Reads until the close frame, then to the end of the stream (which sends our half of
    /// the closing handshake); returns the frame's code and reason.
    async fn close_frame(&mut self) -> (CloseCode, String) {
        let frame = loop {
            let msg = timeout(PATIENCE, self.ws.next())
                .await
                .expect("a close in time");
            match msg {
                Some(Ok(Message::Close(Some(frame)))) => break frame,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        };
        let end = timeout(PATIENCE, self.ws.next())
            .await
            .expect("the end in time");
        assert!(end.is_none(), "nothing after the close frame: {end:?}");
        (frame.code, frame.reason.to_string())
    }
}

fn since(position: Position) -> Value {
    json!({"epoch": position.epoch.to_string(), "offset": position.offset})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_receive_every_publish_in_order() {
    const SUBSCRIBERS: usize = 1000;
    const MESSAGES: u64 = 20;
    let server = Server::new(HubConfig::default());
    let mut readers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut client = server.connect().await;
        client.subscribe("fan.out", None).await;
        readers.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            while offsets.len() < MESSAGES as usize {
                offsets.push(client.message().await.offset);
            }
            offsets
        }));
    }
    let started = Instant::now();
    for i in 0..MESSAGES {
        server.publish("fan.out", json!({"n": i}), None).await;
    }
    let expected: Vec<u64> = (1..=MESSAGES).collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap(), expected);
    }
    let elapsed = started.elapsed();
    eprintln!(
        "fan-out: {MESSAGES} messages to {SUBSCRIBERS} subscribers ({} deliveries) in {elapsed:?}",
        MESSAGES as usize * SUBSCRIBERS
    );
    let stats = server.hub.stats();
    assert_eq!(stats.deliveries(), MESSAGES * SUBSCRIBERS as u64);
    assert_eq!(stats.latency().count, MESSAGES * SUBSCRIBERS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_after_a_disconnect_delivers_exactly_the_missed_messages() {
    const TOTAL: u64 = 3000;
    let server = Server::new(HubConfig {
        history_count: 10_000,
        ..HubConfig::default()
    });
    let mut client = server.connect().await;
    let ack = client.subscribe("ticks", None).await;
    let start = ack.topics.unwrap()["ticks"].position();
    assert_eq!(start.offset, 0);
    let hub = server.hub.clone();
    let publisher = tokio::spawn(async move {
        for i in 0..TOTAL {
            let data = Bytes::from(i.to_string());
            hub.publish("ticks", data, None).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    // Read a while, then drop the connection abruptly.
    let mut last = start;
    while last.offset < 300 {
        let message = client.message().await;
        assert_eq!(
            message.offset,
            last.offset + 1,
            "no gap before the disconnect"
        );
        last = message.position();
    }
    drop(client);
    // Reconnect while publishing goes on, and resume.
    let mut client = server.connect().await;
    let ack = client.subscribe("ticks", Some(since(last))).await;
    let status = ack.topics.unwrap()["ticks"];
    assert_eq!(status.recovered, Some(true));
    assert_eq!(status.epoch, last.epoch);
    assert!(status.offset >= last.offset);
    let mut expected = last.offset + 1;
    while expected <= TOTAL {
        let message = client.message().await;
        assert_eq!(message.offset, expected, "exactly the next offset");
        expected += 1;
    }
    publisher.await.unwrap();
}

#[tokio::test]
async fn recovered_is_false_when_history_is_gone_or_the_epoch_differs() {
    let server = Server::new(HubConfig {
        history_count: 5,
        ..HubConfig::default()
    });
    let mut last = None;
    for i in 0..20 {
        last = Some(server.publish("t", json!(i), None).await);
    }
    let last = last.unwrap();
    let mut client = server.connect().await;

    // History reaches back only to 16: everything retained comes, with recovered: false.
    let ack = client
        .subscribe("t", Some(since(Position { offset: 2, ..last })))
        .await;
    let status = ack.topics.unwrap()["t"];
    assert_eq!((status.recovered, status.offset), (Some(false), 20));
    for offset in 16..=20 {
        assert_eq!(client.message().await.offset, offset);
    }
    // Nothing missed: recovered, nothing replayed.
    let ack = client.subscribe("t", Some(since(last))).await;
    assert_eq!(ack.topics.unwrap()["t"].recovered, Some(true));

    // Another epoch: the client's state is void; the retained messages come.
    let mut other = server.connect().await;
    let stranger = json!({"epoch": "0000000000000001", "offset": 19});
    let ack = other.subscribe("t", Some(stranger)).await;
    assert_eq!(ack.topics.unwrap()["t"].recovered, Some(false));
    assert_eq!(other.message().await.offset, 16);

    // A restarted (in-memory) hub: a new epoch, nothing retained.
    let restarted = Server::new(HubConfig::default());
    let mut client = restarted.connect().await;
    let ack = client.subscribe("t", Some(since(last))).await;
    let status = ack.topics.unwrap()["t"];
    assert_eq!((status.recovered, status.offset), (Some(false), 0));
    assert_ne!(status.epoch, last.epoch);
}

#[tokio::test]
async fn resume_from_before_the_first_message_is_recovered() {
    let server = Server::new(HubConfig::default());
    let mut client = server.connect().await;
    let ack = client.subscribe("fresh", None).await;
    let start = ack.topics.unwrap()["fresh"].position();
    assert_eq!(start.offset, 0);
    drop(client);
    server.publish("fresh", json!("one"), None).await;
    server.publish("fresh", json!("two"), None).await;
    let mut client = server.connect().await;
    let ack = client.subscribe("fresh", Some(since(start))).await;
    let status = ack.topics.unwrap()["fresh"];
    assert_eq!(
        (status.recovered, status.epoch, status.offset),
        (Some(true), start.epoch, 2)
    );
    assert_eq!(client.message().await.data.get(), "\"one\"");
    assert_eq!(client.message().await.data.get(), "\"two\"");
}

/// A hub with small queues, a slow client that never reads, and a fast one.
async fn slow_and_fast(policy: SlowConsumerPolicy) -> (Server, Client, Client) {
    let server = Server::new(HubConfig {
        queue_bytes: 16 << 10,
        slow_consumer: policy,
        ..HubConfig::default()
    });
    let mut slow = server.connect_with(Permissions::allow_all(), 8 << 10).await;
    slow.subscribe("feed", None).await;
    let mut fast = server.connect().await;
    fast.subscribe("feed", None).await;
    (server, slow, fast)
}

/// Publishes `count` messages of about 1 KiB, each once the fast client has the previous.
async fn publish_in_step(server: &Server, fast: &mut Client, count: u64) {
    let filler = "x".repeat(1000);
    for offset in 1..=count {
        server.publish("feed", json!({"fill": filler}), None).await;
        assert_eq!(fast.message().await.offset, offset);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_a_fast_one_is_not_slowed() {
    let (server, mut slow, mut fast) = slow_and_fast(SlowConsumerPolicy::Disconnect).await;
    publish_in_step(&server, &mut fast, 400).await;
    let stats = server.hub.stats();
    assert_eq!(stats.slow_consumer_disconnects(), 1);
    assert_eq!(stats.dropped(), 0);
    // The slow client finds, after what was already on its way, a close 1008.
    assert_eq!(
        slow.close_frame().await,
        (CloseCode::POLICY_VIOLATION, "slow consumer".to_owned())
    );
    timeout(PATIENCE, slow.server).await.unwrap().unwrap();
    assert_eq!(stats.subscriptions(), 1);
    // The fast client goes on.
    server.publish("feed", json!("more"), None).await;
    assert_eq!(fast.message().await.offset, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_counts_drops_and_keeps_the_newest_for_a_slow_client() {
    let (server, mut slow, mut fast) = slow_and_fast(SlowConsumerPolicy::DropOldest).await;
    publish_in_step(&server, &mut fast, 400).await;
    let stats = server.hub.stats();
    assert_eq!(stats.slow_consumer_disconnects(), 0);
    assert!(stats.dropped() > 0);
    // The slow client reads at last: increasing offsets with a gap, ending at the newest.
    let mut offsets = Vec::new();
    while offsets.last() != Some(&400) {
        offsets.push(slow.message().await.offset);
    }
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(offsets.len() as u64 + stats.dropped(), 400);
}

#[tokio::test]
async fn permissions_are_enforced_with_error_replies() {
    let server = Server::new(HubConfig::default());
    let permissions = Permissions {
        subscribe: vec!["public.*".into()],
        publish: vec!["public.chat".into()],
        user: None,
    };
    let mut client = server.connect_with(permissions, 1 << 16).await;
    let refused = [
        json!({"type": "subscribe", "id": 1, "topic": "secret"}),
        json!({"type": "subscribe", "id": 2, "topic": "*"}),
        json!({"type": "publish", "id": 3, "topic": "public.other", "data": 1}),
    ];
    for (request, id) in refused.into_iter().zip(1u64..) {
        client.send(request).await;
        let error = client.error().await;
        assert_eq!(error.code, ErrorCode::Forbidden);
        assert_eq!(
            error.id,
            Some(tether_gateway::protocol::RequestId::Number(id))
        );
        assert!(error.reason.contains("not allowed"), "{}", error.reason);
    }
    client.subscribe("public.*", None).await;
    client
        .send(json!({"type": "publish", "id": 4, "topic": "public.chat", "data": {"text": "hi"}}))
        .await;
    // The ack and the message, in either order.
    let (mut acked, mut delivered) = (false, false);
    while !(acked && delivered) {
        match client.recv().await {
            ServerMessage::Ack(ack) => acked = ack.offset == Some(1),
            ServerMessage::Message(m) => delivered = m.data.get() == r#"{"text":"hi"}"#,
            ServerMessage::Error(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test]
async fn bad_requests_get_errors_and_the_connection_goes_on() {
    let server = Server::new(HubConfig::default());
    let mut client = server.connect().await;
    client.ws.send(Message::text("{oops")).await.unwrap();
    let error = client.error().await;
    assert_eq!((error.id, error.code), (None, ErrorCode::MalformedJson));
    client.send(json!({"type": "dance", "id": 7})).await;
    assert_eq!(client.error().await.code, ErrorCode::UnknownType);
    client
        .send(json!({"type": "subscribe", "id": 8, "topic": "a..b"}))
        .await;
    assert_eq!(client.error().await.code, ErrorCode::InvalidTopic);
    client
        .send(json!({"type": "unsubscribe", "id": 9, "topic": "a"}))
        .await;
    assert_eq!(client.error().await.code, ErrorCode::NotSubscribed);
    client.send(json!({"type": "subscribe", "id": 10, "topic": "a.*", "since": {"b": {"epoch": "0000000000000001", "offset": 1}}})).await;
    let error = client.error().await;
    assert_eq!(error.code, ErrorCode::BadRequest);
    assert!(error.reason.contains("does not match"), "{}", error.reason);
    client
        .ws
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .unwrap();
    assert_eq!(client.error().await.code, ErrorCode::BadRequest);
    client.subscribe("a", None).await;
    client
        .send(json!({"type": "unsubscribe", "id": "u", "topic": "a"}))
        .await;
    client.ack().await;
}

#[tokio::test]
async fn latest_per_key_resume_gets_the_newest_message_of_each_key() {
    let server = Server::new(HubConfig {
        topics: vec![TopicPolicy {
            pattern: "prices.*".into(),
            history_count: None,
            history_age_secs: None,
            latest_per_key: true,
            slow_consumer: None,
            presence: false,
        }],
        ..HubConfig::default()
    });
    let mut first = None;
    for (symbol, price) in [
        ("AAPL", 1),
        ("MSFT", 2),
        ("AAPL", 3),
        ("GOOG", 4),
        ("MSFT", 5),
    ] {
        let position = server
            .publish("prices.us", json!({"price": price}), Some(symbol))
            .await;
        first.get_or_insert(position);
    }
    let mut client = server.connect().await;
    let ack = client
        .subscribe("prices.us", Some(since(first.unwrap())))
        .await;
    assert_eq!(ack.topics.unwrap()["prices.us"].recovered, Some(true));
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = client.message().await;
        got.push((m.key.unwrap(), m.offset));
    }
    assert_eq!(
        got,
        [("AAPL".into(), 3), ("GOOG".into(), 4), ("MSFT".into(), 5)]
    );
    // A pattern subscribe with an empty map: every topic is new, replayed from its start.
    let mut other = server.connect().await;
    let ack = other.subscribe("prices.*", Some(json!({}))).await;
    assert_eq!(ack.topics.unwrap()["prices.us"].recovered, Some(true));
    assert_eq!(other.message().await.key.as_deref(), Some("AAPL"));
}

#[tokio::test]
async fn overlapping_subscriptions_and_topics_created_later() {
    let server = Server::new(HubConfig::default());
    let mut client = server.connect().await;
    client.subscribe("a.*", None).await;
    client.subscribe("a.b", None).await;
    client
        .send(json!({"type": "publish", "id": 1, "topic": "a.b", "data": [1]}))
        .await;
    client
        .send(json!({"type": "publish", "id": 2, "topic": "a.new", "data": [2]}))
        .await;
    let mut messages = Vec::new();
    let mut acks = 0;
    while acks < 2 || messages.len() < 2 {
        match client.recv().await {
            ServerMessage::Ack(_) => acks += 1,
            ServerMessage::Message(m) => messages.push((m.topic, m.offset)),
            ServerMessage::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(messages, [("a.b".into(), 1), ("a.new".into(), 1)]);
    // Nothing more: a marker publish arrives next, not a duplicate.
    server.publish("a.marker", json!(0), None).await;
    assert_eq!(client.message().await.topic, "a.marker");
}

#[tokio::test]
async fn shutdown_closes_with_going_away() {
    let server = Server::new(HubConfig::default());
    let mut client = server.connect().await;
    client.subscribe("t", None).await;
    server.shutdown.send(true).unwrap();
    assert_eq!(
        client.close_frame().await,
        (CloseCode::GOING_AWAY, "going away".to_owned())
    );
    timeout(PATIENCE, client.server).await.unwrap().unwrap();
    assert_eq!(server.hub.stats().subscriptions(), 0);
}

#[tokio::test]
async fn metrics_count_the_traffic() {
    let server = Server::new(HubConfig::default());
    let mut client = server.connect().await;
    client.subscribe("m", None).await;
    server.publish("m", json!(1), None).await;
    client.message().await;
    let mut metrics = String::new();
    server.hub.render_metrics(&mut metrics);
    for line in [
        "tether_pubsub_publishes_total 1",
        "tether_pubsub_deliveries_total 1",
        "tether_pubsub_subscriptions 1",
        "tether_pubsub_topics 1",
        "tether_pubsub_publish_to_send_seconds_count 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "missing {line} in\n{metrics}"
        );
    }
}

#[tokio::test]
async fn a_dropped_shutdown_sender_is_not_a_shutdown() {
    let server = Server::new(HubConfig::default());
    let (a, b) = duplex(1 << 16);
    let hub = server.hub.clone();
    let serve = tokio::spawn(async move {
        let options = AcceptOptions {
            subprotocols: vec![SUBPROTOCOL.into()],
            ..AcceptOptions::default()
        };
        let ws = tether::accept_with(a, Config::default(), |_| Ok(options))
            .await
            .unwrap();
        let (sender, shutdown) = watch::channel(false);
        drop(sender);
        hub.serve(ws, Permissions::allow_all(), shutdown).await;
    });
    let (ws, _) = ClientBuilder::new("ws://test/")
        .subprotocol(SUBPROTOCOL)
        .connect_on(b)
        .await
        .unwrap();
    let mut client = Client { ws, server: serve };
    client.subscribe("still.open", None).await;
    server.publish("still.open", json!(true), None).await;
    assert_eq!(client.message().await.offset, 1);
    client.ws.close(None).await.unwrap();
    timeout(PATIENCE, client.server).await.unwrap().unwrap();
}
