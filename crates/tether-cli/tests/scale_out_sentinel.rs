//! Scale-out on Redis Sentinel, and on Redis over TLS.
//!
//! Sentinel: a master with two replicas and one sentinel; two `tether serve` nodes find the
//! master through the sentinel (`hub.redis_sentinels`) and acknowledge a publish only once
//! every replica has it (`hub.redis_wait_replicas = "all"`; with 1, about 2 runs in 7 lost
//! the last acknowledged publish, because the sentinel promoted the replica that lacked it). The master is killed (SIGKILL) between
//! publishes; the sentinel promotes a replica, the nodes follow it, and every acknowledged
//! publish, before and after the failover, reaches both subscribers, which kept their
//! connections, in one order with no gap. Prints the figures (`--nocapture`).
//!
//! TLS: a TLS-only redis-server; a node on `rediss://...#insecure` works (health ok,
//! publish acknowledged, message delivered).
#![cfg(unix)]

mod scale_out_support;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use scale_out_support::{Pick, assert_every_ack_delivered, follow, healthy, publish, wait_health};
use serde_json::{Value, json};
use support::redis::Redis;
use support::{PATIENCE, Serve};
use tether::{ClientBuilder, Message};
use tokio::sync::{oneshot, watch};

const TOPIC: &str = "scale.sentinel";
const MASTER: &str = "tether-test";

/// A directory of this test process's own for the sentinel's config file.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tether-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_a_sentinel_failover_and_lose_no_acknowledged_publish() {
    let Some(master) = Redis::start() else {
        return;
    };
    let replicas = [
        Redis::replica_of(&master).unwrap(),
        Redis::replica_of(&master).unwrap(),
    ];
    let scratch = Scratch::new("sentinel");
    let sentinel = Redis::sentinel(&master, MASTER, 2, &scratch.0).unwrap();
    let config = format!(
        "[hub]\nbackplane = \"redis\"\nredis_sentinels = [\"redis://127.0.0.1:{}\"]\n\
         redis_master = \"{MASTER}\"\nredis_wait_replicas = \"all\"\nredis_timeout = \"1s\"\n\
         redis_ping_interval = \"100ms\"\nredis_max_backoff = \"200ms\"\n",
        sentinel.port
    );
    let nodes: Vec<Serve> = (0..2).map(|_| Serve::start(Some(&config))).collect();
    let addrs: Vec<_> = nodes.iter().map(|n| n.addr).collect();
    for &addr in &addrs {
        wait_health(addr, true).await;
    }
    let (until_tx, until) = watch::channel(u64::MAX);
    let (_gate_tx, gate) = watch::channel(true);
    let mut followers = Vec::new();
    for first in 0..2 {
        let (ready_tx, ready_rx) = oneshot::channel();
        followers.push(tokio::spawn(follow(
            addrs.clone(),
            first,
            TOPIC.to_string(),
            ready_tx,
            until.clone(),
            gate.clone(),
        )));
        tokio::time::timeout(PATIENCE, ready_rx)
            .await
            .unwrap()
            .unwrap();
    }

    let mut pick = Pick::new(7);
    let mut acked: BTreeMap<u64, Value> = BTreeMap::new();
    let mut refused = 0u32;
    let mut n = 0u64;
    // Ok(true) acked, Ok(false) refused with 503 (its answer kept for the figures).
    let mut attempt = async |acked: &mut BTreeMap<u64, Value>, refusal: &mut Option<Value>| {
        n += 1;
        let data = json!({"n": n});
        let (status, answer) = publish(addrs[pick.below(addrs.len())], TOPIC, &data).await;
        match status {
            200 => {
                let offset = answer["offset"].as_u64().unwrap();
                assert!(
                    acked.insert(offset, data).is_none(),
                    "offset {offset} twice"
                );
                true
            }
            503 => {
                refusal.get_or_insert(answer);
                false
            }
            _ => panic!("publish: {status} {answer}"),
        }
    };
    // Before the kill every publish should be acked. A refusal here (a load spike past the
    // replication wait, or the sentinel's own 300 ms down-after on a busy machine) is retried
    // and reported: the property under test is that no acknowledged publish is lost.
    let (mut refused_before, mut first_refusal_before) = (0u32, None);
    let started = Instant::now();
    while acked.len() < 20 {
        if !attempt(&mut acked, &mut first_refusal_before).await {
            refused_before += 1;
            assert!(
                started.elapsed() < PATIENCE,
                "only {} publishes acked before the failover, {refused_before} refused; \
                 the first: {first_refusal_before:?}",
                acked.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(master);
    let killed = Instant::now();
    let mut degraded_seen = false;
    let mut first_refusal = None;
    let before = acked.len();
    while acked.len() < before + 20 {
        assert!(
            killed.elapsed() < Duration::from_secs(40),
            "no failover: {} acked since the kill, {refused} refused; the first: {first_refusal:?}",
            acked.len() - before
        );
        if attempt(&mut acked, &mut first_refusal).await {
            continue;
        }
        refused += 1;
        degraded_seen |= !healthy(addrs[0]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_after = killed.elapsed();
    let last = *acked.keys().last().unwrap();
    let unacked: Vec<u64> = (1..=last).filter(|o| !acked.contains_key(o)).collect();
    eprintln!("offsets up to {last} not acknowledged (refused, yet stored): {unacked:?}");
    until_tx.send(last).unwrap();
    assert_every_ack_delivered(followers, &acked, last).await;
    for (i, mut node) in nodes.into_iter().enumerate() {
        assert!(
            node.process.child.try_wait().unwrap().is_none(),
            "node {i} exited"
        );
    }
    drop(replicas);
    drop(sentinel);
    eprintln!(
        "scale-out sentinel: master killed after 20 acked publishes; the nodes acked 20 more \
         through the promoted replica {recovered_after:?} after the kill ({refused} refused \
         meanwhile, node 0 degraded seen: {degraded_seen}; the first refusal: {}); both \
         subscribers got offsets 1..={last} in one order with every acked one; refused before \
         the kill: {refused_before}{}",
        first_refusal.map_or_else(|| "none".to_string(), |v| v.to_string()),
        first_refusal_before.map_or_else(String::new, |v| format!(" (the first: {v})")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_works_on_redis_over_tls() {
    let scratch = Scratch::new("redis-tls");
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = scratch.0.join("cert.pem");
    let key = scratch.0.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let Some(redis) = Redis::start_tls(&cert, &key) else {
        return;
    };
    let config = format!(
        "[hub]\nbackplane = \"redis\"\nredis_url = \"rediss://127.0.0.1:{}/#insecure\"\n\
         redis_timeout = \"2s\"\n",
        redis.port
    );
    let node = Serve::start(Some(&config));
    wait_health(node.addr, true).await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{}/ws", node.addr))
        .subprotocol("tether.pubsub.v1")
        .connect()
        .await
        .unwrap();
    let subscribe = json!({"type": "subscribe", "id": 1, "topic": "tls.t"});
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    let next = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    let Some(Ok(Message::Text(ack))) = next else {
        panic!("{next:?}")
    };
    assert!(ack.as_str().contains("\"ack\""), "{}", ack.as_str());
    let (status, answer) = publish(node.addr, "tls.t", &json!({"over": "tls"})).await;
    assert_eq!(status, 200, "{answer}");
    let next = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    let Some(Ok(Message::Text(message))) = next else {
        panic!("{next:?}")
    };
    let message: Value = serde_json::from_str(message.as_str()).unwrap();
    assert_eq!(message["data"], json!({"over": "tls"}));
    assert_eq!(message["offset"], answer["offset"]);
    drop(redis);
}

/// `redis_wait_replicas = "all"` waits for at least one replica: with none, every publish is
/// refused (yet stored in the stream, and never notified). Once a replica has attached, the
/// next publish is acknowledged, and the subscriber gets it after every refused one, in
/// order: the node's gap fill reads them from the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publishes_left_in_the_stream_arrive_with_the_next_acknowledged_one() {
    let Some(master) = Redis::start() else {
        return;
    };
    let config = format!(
        "[hub]\nbackplane = \"redis\"\nredis_url = \"{}\"\nredis_wait_replicas = \"all\"\n\
         redis_timeout = \"400ms\"\nredis_ping_interval = \"100ms\"\n",
        master.url()
    );
    let node = Serve::start(Some(&config));
    wait_health(node.addr, true).await;
    let (until_tx, until) = watch::channel(u64::MAX);
    let (_gate_tx, gate) = watch::channel(true);
    let (ready_tx, ready_rx) = oneshot::channel();
    let follower = tokio::spawn(follow(
        vec![node.addr],
        0,
        "wait.all".to_string(),
        ready_tx,
        until,
        gate,
    ));
    tokio::time::timeout(PATIENCE, ready_rx)
        .await
        .unwrap()
        .unwrap();
    for n in 1..=3 {
        let (status, answer) = publish(node.addr, "wait.all", &json!({ "n": n })).await;
        assert_eq!(status, 503, "publish {n} without a replica: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("only 0 of 1 replicas"), "{error}");
    }
    let replica = Redis::replica_of(&master).unwrap();
    // The node counts the replica at its next health check (every 100 ms).
    let attached = Instant::now();
    let answer = loop {
        let (status, answer) = publish(node.addr, "wait.all", &json!({ "n": 4 })).await;
        if status == 200 {
            break answer;
        }
        assert!(
            attached.elapsed() < PATIENCE,
            "still refused with a replica: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let last = answer["offset"].as_u64().unwrap();
    until_tx.send(last).unwrap();
    let seen = follower.await.unwrap();
    seen.assert_complete("subscriber", last);
    let data: Vec<&Value> = seen.messages.iter().map(|(_, d)| &d["n"]).collect();
    assert_eq!(data.first(), Some(&&json!(1)), "{data:?}");
    assert_eq!(data.last(), Some(&&json!(4)), "{data:?}");
    eprintln!(
        "wait all: 3 publishes refused without a replica; acked {:?} after the replica \
         attached; the subscriber got offsets 1..={last} in order",
        attached.elapsed()
    );
    drop(replica);
}
