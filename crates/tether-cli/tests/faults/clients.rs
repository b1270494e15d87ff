//! The well-behaved clients of the fault tests: an echo probe timing its round trips, a
//! subscriber recording the offsets it receives, and an HTTP publisher recording the offsets
//! acknowledged. The soak test (`tests/soak.rs`) shares this file.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, Message};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::gateway::publish;
use crate::support::PATIENCE;

/// Echo round trips every 20 ms on `/echo` until finished; each one's latency.
pub struct Probe {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<Vec<Duration>, String>>,
}

impl Probe {
    pub async fn start(addr: SocketAddr) -> Probe {
        let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/echo"))
            .connect()
            .await
            .unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for n in 0u64.. {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tick.tick() => {}
                }
                let text = format!("probe {n}");
                let started = Instant::now();
                ws.send(Message::text(text.clone()))
                    .await
                    .map_err(|e| format!("send {n}: {e}"))?;
                match tokio::time::timeout(PATIENCE, ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text => {}
                    other => return Err(format!("round trip {n}: {other:?}")),
                }
                latencies.push(started.elapsed());
            }
            let _ = ws.close(None).await;
            Ok(latencies)
        });
        Probe { stop, task }
    }

    /// Stops the probe: its latencies, sorted.
    pub async fn finish(self) -> Vec<Duration> {
        let _ = self.stop.send(true);
        let mut latencies = self.task.await.unwrap().expect("the probe failed");
        latencies.sort();
        assert!(!latencies.is_empty(), "the probe made no round trip");
        latencies
    }
}

/// A `tether.pubsub.v1` client subscribed to one topic, recording every offset received.
pub struct Subscriber {
    pub offsets: Arc<Mutex<Vec<u64>>>,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Subscribed (the ack received) when this returns.
    pub async fn start(addr: SocketAddr, topic: &str) -> Subscriber {
        let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
            .subprotocol("tether.pubsub.v1")
            .connect()
            .await
            .unwrap();
        let subscribe = serde_json::json!({"type": "subscribe", "id": 1, "topic": topic});
        ws.send(Message::text(subscribe.to_string())).await.unwrap();
        let ack = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
        let Some(Ok(Message::Text(ack))) = ack else {
            panic!("no subscribe ack: {ack:?}")
        };
        assert!(ack.as_str().contains("\"ack\""), "{}", ack.as_str());
        let offsets = Arc::new(Mutex::new(Vec::new()));
        let recorded = offsets.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(text) = msg else { continue };
                let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if value["type"] == "message" {
                    recorded
                        .lock()
                        .unwrap()
                        .push(value["offset"].as_u64().unwrap());
                }
            }
        });
        Subscriber { offsets, task }
    }

    /// Waits until every offset of `acked` has arrived; asserts nothing else did, in order.
    pub async fn assert_received(&self, acked: &[u64]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let got = self.offsets.lock().unwrap().clone();
            if got.len() >= acked.len() || Instant::now() > deadline {
                assert_eq!(
                    got, acked,
                    "the subscriber did not get exactly the acked publishes"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes over HTTP every 10 ms until finished; the offsets acknowledged, in order.
pub struct Publisher {
    stop: watch::Sender<bool>,
    count: watch::Receiver<usize>,
    task: JoinHandle<Vec<u64>>,
}

impl Publisher {
    pub fn start(addr: SocketAddr, topic: &str) -> Publisher {
        let (stop, mut stopped) = watch::channel(false);
        let (counter, count) = watch::channel(0);
        let topic = topic.to_string();
        let task = tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            for n in 0u64.. {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tick.tick() => {}
                }
                if let Some(offset) = publish(addr, &topic, &format!("{{\"n\": {n}}}")).await {
                    acked.push(offset);
                    counter.send_replace(acked.len());
                }
            }
            acked
        });
        Publisher { stop, count, task }
    }

    /// Waits until `n` more publishes have been acknowledged.
    pub async fn more(&mut self, n: usize) {
        let target = *self.count.borrow() + n;
        let reached = self.count.wait_for(|c| *c >= target);
        tokio::time::timeout(PATIENCE, reached)
            .await
            .expect("publishes stalled")
            .expect("the publisher stopped");
    }

    pub async fn finish(self) -> Vec<u64> {
        let _ = self.stop.send(true);
        self.task.await.unwrap()
    }
}
