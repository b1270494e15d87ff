//! Helpers of the scale-out tests: a Redis and several `tether serve` nodes on it, an HTTP
//! client for the publish API and `/healthz`, and subscribers that follow a topic across
//! nodes, resuming from their last position when their node goes away.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tether::{ClientBuilder, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};

use crate::support::redis::Redis;
use crate::support::{PATIENCE, Serve};

/// The most a test may take; each stays well under a minute.
pub const TEST_LIMIT: Duration = Duration::from_secs(50);

/// Redis and `count` gateway nodes on it, all healthy.
pub struct Cluster {
    pub nodes: Vec<Option<Serve>>,
    pub addrs: Vec<SocketAddr>,
    pub redis: Redis,
}

impl Cluster {
    /// `None` when redis-server is missing outside CI.
    pub async fn start(count: usize) -> Option<Cluster> {
        Cluster::start_with(count, "").await
    }

    /// With `more` appended to every node's config (after its `[hub]` table).
    pub async fn start_with(count: usize, more: &str) -> Option<Cluster> {
        let redis = Redis::start()?;
        let config = format!(
            "[hub]\nbackplane = \"redis\"\nredis_url = \"{}\"\nredis_timeout = \"300ms\"\n\
             redis_ping_interval = \"100ms\"\nredis_max_backoff = \"200ms\"\n{more}",
            redis.url()
        );
        let nodes: Vec<Serve> = (0..count).map(|_| Serve::start(Some(&config))).collect();
        let addrs = nodes.iter().map(|n| n.addr).collect();
        let cluster = Cluster {
            nodes: nodes.into_iter().map(Some).collect(),
            addrs,
            redis,
        };
        for &addr in &cluster.addrs {
            wait_health(addr, true).await;
        }
        Some(cluster)
    }

    /// Asserts that every node still running has not exited.
    pub fn assert_running(&mut self) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if let Some(node) = node {
                let status = node.process.child.try_wait().unwrap();
                assert!(status.is_none(), "node {i} exited: {status:?}");
            }
        }
    }
}

/// One HTTP/1.1 request; returns the status and the body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("no HTTP answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Publishes `data` to `topic` through node `addr`: the status and the answer's JSON.
pub async fn publish(addr: SocketAddr, topic: &str, data: &Value) -> (u16, Value) {
    let (status, body) = http(
        addr,
        "POST",
        &format!("/api/publish/{topic}"),
        &data.to_string(),
    )
    .await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// Whether `/healthz` of `addr` says ok (200) rather than degraded (503).
pub async fn healthy(addr: SocketAddr) -> bool {
    let (status, body) = http(addr, "GET", "/healthz", "").await;
    assert!(status == 200 || status == 503, "/healthz: {status} {body}");
    status == 200
}

/// Polls `/healthz` until it is `ok` (or degraded); returns how long that took.
pub async fn wait_health(addr: SocketAddr, ok: bool) -> Duration {
    let start = Instant::now();
    while healthy(addr).await != ok {
        assert!(
            start.elapsed() < PATIENCE,
            "{addr} /healthz did not turn {}",
            if ok { "ok" } else { "degraded" }
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// A tiny deterministic generator, for picking nodes.
pub struct Pick(u64);

impl Pick {
    pub fn new(seed: u64) -> Pick {
        Pick(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Followed {
    /// Every message, in arrival order: offset and data.
    pub messages: Vec<(u64, Value)>,
    pub epochs: Vec<String>,
    /// The acks of every subscribe (one per connection).
    pub acks: Vec<Value>,
    /// The nodes it was connected to, in order.
    pub nodes: Vec<usize>,
}

impl Followed {
    /// Asserts offsets `1..=last`, each once, in order, in one epoch.
    pub fn assert_complete(&self, name: &str, last: u64) {
        let offsets: Vec<u64> = self.messages.iter().map(|(o, _)| *o).collect();
        let expected: Vec<u64> = (1..=last).collect();
        if offsets != expected {
            let gaps: Vec<_> = offsets.windows(2).filter(|w| w[1] != w[0] + 1).collect();
            panic!(
                "{name}: {} messages, not 1..={last} in order; breaks at {gaps:?}; first {:?}, \
                 last {:?}",
                offsets.len(),
                offsets.first(),
                offsets.last()
            );
        }
        let mut epochs = self.epochs.clone();
        epochs.dedup();
        assert_eq!(epochs.len(), 1, "{name}: epochs {epochs:?}");
    }
}

/// Awaits every follower and asserts that each kept its one connection and got offsets
/// `1..=last` in the same order, with every acknowledged publish's data at its offset.
/// Returns how many messages each got.
pub async fn assert_every_ack_delivered(
    followers: Vec<tokio::task::JoinHandle<Followed>>,
    acked: &std::collections::BTreeMap<u64, Value>,
    last: u64,
) -> Vec<usize> {
    let mut counts = Vec::new();
    let mut first: Option<Vec<(u64, Value)>> = None;
    for (i, handle) in followers.into_iter().enumerate() {
        let seen = handle.await.unwrap();
        assert_eq!(seen.nodes.len(), 1, "subscriber {i} kept its connection");
        seen.assert_complete(&format!("subscriber {i}"), last);
        let by_offset: std::collections::BTreeMap<u64, &Value> =
            seen.messages.iter().map(|(o, d)| (*o, d)).collect();
        for (offset, data) in acked {
            assert_eq!(
                by_offset.get(offset),
                Some(&data),
                "subscriber {i}, acked offset {offset}"
            );
        }
        counts.push(seen.messages.len());
        match &first {
            None => first = Some(seen.messages),
            Some(order) => assert_eq!(order, &seen.messages, "subscriber {i}'s order"),
        }
    }
    counts
}

/// Follows `topic` from node `first` on (then the next nodes, in turn, when a node goes
/// away), resuming after the last message received, until `until` is reached. `ready` fires
/// after the first subscribe's ack. A reconnection waits for `gate` to be open.
pub async fn follow(
    addrs: Vec<SocketAddr>,
    first: usize,
    topic: String,
    ready: oneshot::Sender<()>,
    mut until: watch::Receiver<u64>,
    mut gate: watch::Receiver<bool>,
) -> Followed {
    let deadline = Instant::now() + TEST_LIMIT;
    let mut seen = Followed::default();
    let mut ready = Some(ready);
    let mut node = first;
    loop {
        assert!(
            Instant::now() < deadline,
            "{topic} follower: out of time: {seen:?}"
        );
        if !seen.nodes.is_empty() {
            tokio::time::timeout(PATIENCE, gate.wait_for(|open| *open))
                .await
                .expect("the gate stayed closed")
                .expect("the gate was dropped");
        }
        let url = format!("ws://{}/ws", addrs[node]);
        let connected = ClientBuilder::new(url)
            .subprotocol("tether.pubsub.v1")
            .connect()
            .await;
        let Ok((mut ws, _)) = connected else {
            node = (node + 1) % addrs.len();
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        seen.nodes.push(node);
        let mut subscribe = json!({"type": "subscribe", "id": 1, "topic": topic});
        if let (Some((offset, _)), Some(epoch)) = (seen.messages.last(), seen.epochs.last()) {
            subscribe["since"] = json!({"epoch": epoch, "offset": offset});
        }
        if ws.send(Message::text(subscribe.to_string())).await.is_err() {
            node = (node + 1) % addrs.len();
            continue;
        }
        loop {
            if seen
                .messages
                .last()
                .is_some_and(|(o, _)| *o >= *until.borrow())
            {
                let _ = ws.close(None).await;
                return seen;
            }
            let next = tokio::select! {
                next = tokio::time::timeout(PATIENCE, ws.next()) => next.expect("no message in time"),
                _ = until.changed() => continue,
            };
            let text = match next {
                Some(Ok(Message::Text(text))) => text.as_str().to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                // The node went away: resume on the next one.
                _ => break,
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            match value["type"].as_str() {
                Some("message") => {
                    seen.messages
                        .push((value["offset"].as_u64().unwrap(), value["data"].clone()));
                    seen.epochs
                        .push(value["epoch"].as_str().unwrap().to_string());
                }
                Some("ack") => {
                    seen.acks.push(value);
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                }
                _ => panic!("{topic} follower: unexpected {text}"),
            }
        }
        node = (node + 1) % addrs.len();
    }
}

/// Starts a follower per entry of `first_nodes`; returns when every one is subscribed.
pub async fn followers(
    cluster: &Cluster,
    topic: &str,
    first_nodes: &[usize],
    until: &watch::Receiver<u64>,
) -> Vec<tokio::task::JoinHandle<Followed>> {
    let (gate, gate_rx) = watch::channel(true);
    let handles = gated_followers(cluster, topic, first_nodes, until, &gate_rx).await;
    // Open for good: `wait_for` sees the last value even once the sender is gone.
    drop(gate);
    handles
}

/// [`followers`] whose reconnections wait for `gate`.
pub async fn gated_followers(
    cluster: &Cluster,
    topic: &str,
    first_nodes: &[usize],
    until: &watch::Receiver<u64>,
    gate: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Followed>> {
    let mut handles = Vec::new();
    for &node in first_nodes {
        let (ready_tx, ready_rx) = oneshot::channel();
        handles.push(tokio::spawn(follow(
            cluster.addrs.clone(),
            node,
            topic.to_string(),
            ready_tx,
            until.clone(),
            gate.clone(),
        )));
        tokio::time::timeout(PATIENCE, ready_rx)
            .await
            .expect("a follower did not subscribe in time")
            .expect("a follower failed before subscribing");
    }
    handles
}
