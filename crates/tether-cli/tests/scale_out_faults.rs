//! Scale-out when Redis goes away: three `tether serve` nodes on one `redis-server`, which
//! is stopped (SIGSTOP) for a while during publishing and then continued. No node crashes,
//! every node's `/healthz` turns degraded and back to ok, publishes are refused (503) while
//! Redis does not answer, and every acknowledged publish reaches every subscriber, which
//! never lost its connection: the nodes fill what their subscription missed from the
//! stream, with no gap and no duplicate. Prints the figures (`--nocapture`).
#![cfg(unix)]

mod scale_out_support;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use scale_out_support::{
    Cluster, Pick, assert_every_ack_delivered, followers, healthy, http, publish,
};
use serde_json::{Value, json};
use support::PATIENCE;
use tether::{ClientBuilder, Message};
use tokio::sync::watch;

const TOPIC: &str = "scale.faults";

/// How long Redis stays stopped once every node has noticed.
const OUTAGE: Duration = Duration::from_millis(1500);

/// Publishes `data` via a random node: `Some(offset)` if acknowledged, `None` if refused
/// with 503; anything else fails the test.
async fn try_publish(cluster: &Cluster, pick: &mut Pick, data: &Value) -> Option<u64> {
    let node = pick.below(cluster.addrs.len());
    let (status, answer) = publish(cluster.addrs[node], TOPIC, data).await;
    match status {
        200 => Some(answer["offset"].as_u64().unwrap()),
        503 => {
            let error = answer["error"].as_str().unwrap_or_default();
            assert!(error.contains("redis"), "503 names the cause: {answer}");
            None
        }
        _ => panic!("publish via node {node}: {status} {answer}"),
    }
}

/// A publish and a subscribe over the WebSocket while Redis is stopped: both answers.
async fn ws_refusals(addr: std::net::SocketAddr) -> Vec<Value> {
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .subprotocol("tether.pubsub.v1")
        .connect()
        .await
        .unwrap();
    let requests = [
        json!({"type": "publish", "id": 7, "topic": TOPIC, "data": {"over": "ws"}}),
        json!({"type": "subscribe", "id": 8, "topic": "scale.other"}),
    ];
    let mut answers = Vec::new();
    for request in requests {
        ws.send(Message::text(request.to_string())).await.unwrap();
        let next = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no answer in time");
        let Some(Ok(Message::Text(text))) = next else {
            panic!("{next:?}")
        };
        let answer: Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["code"], "unavailable", "{answer}");
        assert_eq!(answer["id"], request["id"], "{answer}");
        answers.push(answer);
    }
    answers
}

async fn all_healthy(cluster: &Cluster, ok: bool) -> bool {
    for &addr in &cluster.addrs {
        if healthy(addr).await != ok {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopping_during_publishing_loses_no_acknowledged_publish() {
    let Some(mut cluster) = Cluster::start(3).await else {
        return;
    };
    let (until_tx, until) = watch::channel(u64::MAX);
    let handles = followers(&cluster, TOPIC, &[0, 1, 2, 0, 1, 2], &until).await;
    let mut pick = Pick::new(42);
    let mut acked: BTreeMap<u64, Value> = BTreeMap::new();
    let mut refused = 0u32;
    let mut n = 0u64;
    let mut attempt = async |cluster: &Cluster, acked: &mut BTreeMap<u64, Value>| {
        n += 1;
        let data = json!({"n": n});
        match try_publish(cluster, &mut pick, &data).await {
            Some(offset) => {
                assert!(
                    acked.insert(offset, data).is_none(),
                    "offset {offset} twice"
                );
                true
            }
            None => false,
        }
    };
    // Before: everything works.
    while acked.len() < 50 {
        assert!(
            attempt(&cluster, &mut acked).await,
            "refused while redis is up"
        );
    }
    cluster.redis.signal("STOP");
    let stopped = Instant::now();
    // Publishing goes on until every node says degraded.
    let mut noticed = None;
    while noticed.is_none() {
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "nodes never degraded"
        );
        if !attempt(&cluster, &mut acked).await {
            refused += 1;
        }
        if all_healthy(&cluster, false).await {
            noticed = Some(stopped.elapsed());
        }
    }
    let outage_end = Instant::now() + OUTAGE;
    while Instant::now() < outage_end {
        if !attempt(&cluster, &mut acked).await {
            refused += 1;
        }
    }
    // On the WebSocket protocol, a publish gets an `unavailable` error, and so does a new
    // subscribe; the connection stays.
    let ws_answers = ws_refusals(cluster.addrs[1]).await;
    let (status, metrics) = http(cluster.addrs[0], "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("tether_backplane_up 0"), "{metrics}");
    cluster.redis.signal("CONT");
    let continued = Instant::now();
    let mut back = None;
    while back.is_none() {
        assert!(
            continued.elapsed() < Duration::from_secs(15),
            "nodes never recovered"
        );
        if !attempt(&cluster, &mut acked).await {
            refused += 1;
        }
        if all_healthy(&cluster, true).await {
            back = Some(continued.elapsed());
        }
    }
    let degraded_for = stopped.elapsed();
    // After: everything works again.
    let before_after = acked.len();
    while acked.len() < before_after + 50 {
        assert!(
            attempt(&cluster, &mut acked).await,
            "refused after redis is back"
        );
    }
    let last = *acked.keys().last().unwrap();
    until_tx.send(last).unwrap();
    let delivered = assert_every_ack_delivered(handles, &acked, last).await;
    cluster.assert_running();
    assert!(
        refused > 0,
        "the outage refused no publish: it was not exercised"
    );
    let (_, metrics) = http(cluster.addrs[0], "GET", "/metrics", "").await;
    assert!(metrics.contains("tether_backplane_up 1"), "{metrics}");
    let metric = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("?")
            .to_string()
    };
    eprintln!(
        "scale-out faults: {} publishes acked, {refused} refused (503) during the outage; \
         {} refused ones reached redis late and were delivered too; every \
         one of 6 subscribers got {:?} messages, offsets 1..={last}, same order; redis \
         stopped for {degraded_for:?}: all nodes degraded after {:?}, ok again {:?} after \
         SIGCONT; node 0 metrics: refused {}, caught up {}, degraded {} s; over the \
         WebSocket: {ws_answers:?}",
        acked.len(),
        last as usize - acked.len(),
        delivered,
        noticed.unwrap(),
        back.unwrap(),
        metric("tether_backplane_refused_publishes_total"),
        metric("tether_backplane_caught_up_records_total"),
        metric("tether_backplane_degraded_seconds_total"),
    );
}
