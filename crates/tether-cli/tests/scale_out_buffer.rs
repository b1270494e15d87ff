//! Scale-out with `hub.redis_outage = "buffer"`: while Redis does not answer (SIGSTOP), the
//! nodes hold publishes unacknowledged instead of refusing them; once Redis is continued they
//! append them in arrival order and only then acknowledge them, and every subscriber gets
//! them. A publish that would go over `redis_buffer_bytes`, or that waits longer than
//! `redis_buffer_wait`, is refused with 503 and never appears in the stream. Prints the
//! figures (`--nocapture`).
#![cfg(unix)]

mod scale_out_support;
mod support;

use std::time::{Duration, Instant};

use scale_out_support::{Cluster, followers, healthy, http, publish};
use serde_json::{Value, json};
use tokio::sync::watch;

const TOPIC: &str = "scale.buffer";

async fn all_healthy(cluster: &Cluster, ok: bool) -> bool {
    for &addr in &cluster.addrs {
        if healthy(addr).await != ok {
            return false;
        }
    }
    true
}

/// Stops Redis and waits until every node says degraded.
async fn stop_redis(cluster: &mut Cluster) -> Duration {
    cluster.redis.signal("STOP");
    let stopped = Instant::now();
    while !all_healthy(cluster, false).await {
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "nodes never degraded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stopped.elapsed()
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_publishes_are_acknowledged_in_order_once_redis_is_back() {
    let Some(mut cluster) = Cluster::start_with(
        2,
        "redis_outage = \"buffer\"\nredis_buffer_wait = \"20s\"\n",
    )
    .await
    else {
        return;
    };
    let (until_tx, until) = watch::channel(u64::MAX);
    let handles = followers(&cluster, TOPIC, &[0, 1], &until).await;
    for n in 0..10 {
        let (status, answer) = publish(cluster.addrs[n % 2], TOPIC, &json!({"n": n})).await;
        assert_eq!(status, 200, "{answer}");
    }
    let noticed = stop_redis(&mut cluster).await;
    // Publishes to both nodes, started one after the other; none may be answered yet.
    let mut held = Vec::new();
    for n in 10..30usize {
        let addr = cluster.addrs[n % 2];
        held.push((
            n,
            tokio::spawn(async move { publish(addr, TOPIC, &json!({"n": n})).await }),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (n, handle) in &held {
        assert!(
            !handle.is_finished(),
            "publish {n} was answered while redis was stopped"
        );
    }
    let (_, metrics) = http(cluster.addrs[0], "GET", "/metrics", "").await;
    let held_bytes = metric(&metrics, "tether_backplane_held_bytes");
    assert!(held_bytes > 0, "{metrics}");
    cluster.redis.signal("CONT");
    let continued = Instant::now();
    let mut offsets: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    for (n, handle) in held {
        let (status, answer) = handle.await.unwrap();
        assert_eq!(status, 200, "held publish {n}: {answer}");
        offsets[n % 2].push(answer["offset"].as_u64().unwrap());
    }
    let answered_after = continued.elapsed();
    for (node, offsets) in offsets.iter().enumerate() {
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "node {node} appended its held publishes out of arrival order: {offsets:?}"
        );
    }
    let mut all: Vec<u64> = offsets.concat();
    all.sort_unstable();
    assert_eq!(all, (11..=30).collect::<Vec<u64>>());
    until_tx.send(30).unwrap();
    for (i, handle) in handles.into_iter().enumerate() {
        let seen = handle.await.unwrap();
        assert_eq!(seen.nodes.len(), 1, "subscriber {i} kept its connection");
        seen.assert_complete(&format!("subscriber {i}"), 30);
        for (offset, data) in &seen.messages {
            // Offsets 1..=10 were published before the outage as n = 0..=9.
            if *offset <= 10 {
                assert_eq!(data["n"], *offset - 1);
            }
        }
    }
    let (_, metrics) = http(cluster.addrs[0], "GET", "/metrics", "").await;
    assert_eq!(metric(&metrics, "tether_backplane_held_bytes"), 0);
    assert_eq!(
        metric(&metrics, "tether_backplane_held_publishes_total"),
        10
    );
    assert_eq!(metric(&metrics, "tether_backplane_held_refused_total"), 0);
    cluster.assert_running();
    eprintln!(
        "scale-out buffer: nodes degraded {noticed:?} after SIGSTOP; 20 publishes held \
         ({held_bytes} bytes on node 0) and acknowledged {answered_after:?} after SIGCONT, \
         each node's in arrival order; both subscribers got offsets 1..=30"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buffer_refuses_what_does_not_fit_or_waits_too_long() {
    let Some(mut cluster) = Cluster::start_with(
        1,
        "redis_outage = \"buffer\"\nredis_buffer_wait = \"400ms\"\nredis_buffer_bytes = \"4 KiB\"\n",
    )
    .await
    else {
        return;
    };
    let addr = cluster.addrs[0];
    let (status, _) = publish(addr, TOPIC, &json!("before")).await;
    assert_eq!(status, 200);
    stop_redis(&mut cluster).await;
    // Over the buffer's bytes: refused at once.
    let big = Value::String("x".repeat(8 * 1024));
    let started = Instant::now();
    let (status, answer) = publish(addr, TOPIC, &big).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("hub.redis_buffer_bytes"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_millis(400));
    // Held, but redis stays away longer than the wait: refused after it.
    let started = Instant::now();
    let (status, answer) = publish(addr, TOPIC, &json!("late")).await;
    let waited = started.elapsed();
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("hub.redis_buffer_wait"),
        "{answer}"
    );
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    cluster.redis.signal("CONT");
    let continued = Instant::now();
    while !healthy(addr).await {
        assert!(continued.elapsed() < Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Neither refused publish is in the stream: the next one is offset 2.
    let (status, answer) = publish(addr, TOPIC, &json!("after")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["offset"], 2, "{answer}");
    let (_, metrics) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(metric(&metrics, "tether_backplane_held_refused_total"), 2);
    assert_eq!(metric(&metrics, "tether_backplane_held_bytes"), 0);
    cluster.assert_running();
}
