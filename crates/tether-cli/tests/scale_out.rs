//! Scale-out on Redis with real processes: one `redis-server` and three `tether serve` nodes
//! on it (`hub.backplane = "redis"`). Subscribers spread over the nodes receive every
//! publish, whichever node took it, in the same order with the same offsets; when a node is
//! killed, its subscribers resume on another node from their last position with no gap.
//! redis-server comes from `.ci/run`; in CI a missing one fails the test.
#![cfg(unix)]

mod scale_out_support;
mod support;

use std::collections::BTreeMap;

use scale_out_support::{Cluster, Pick, followers, gated_followers, publish};
use serde_json::{Value, json};
use tokio::sync::watch;

const TOPIC: &str = "scale.orders";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_publish_in_one_order_to_every_subscriber() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let (until_tx, until) = watch::channel(u64::MAX);
    // Two subscribers per node.
    let handles = followers(&cluster, TOPIC, &[0, 1, 2, 0, 1, 2], &until).await;
    // Three publishers at once, each on random nodes.
    const PER_PUBLISHER: usize = 100;
    let mut publishers = Vec::new();
    for p in 0..3u64 {
        let addrs = cluster.addrs.clone();
        publishers.push(tokio::spawn(async move {
            let mut pick = Pick::new(0x9e37_79b9 + p);
            let mut acks = Vec::new();
            for i in 0..PER_PUBLISHER {
                let node = pick.below(addrs.len());
                let data = json!({"publisher": p, "n": i, "via": node});
                let (status, answer) = publish(addrs[node], TOPIC, &data).await;
                assert_eq!(status, 200, "publish via node {node}: {answer}");
                acks.push((
                    answer["offset"].as_u64().unwrap(),
                    answer["epoch"].clone(),
                    data,
                ));
            }
            acks
        }));
    }
    let mut acked: BTreeMap<u64, Value> = BTreeMap::new();
    let mut epochs = Vec::new();
    for publisher in publishers {
        for (offset, epoch, data) in publisher.await.unwrap() {
            assert!(
                acked.insert(offset, data).is_none(),
                "offset {offset} acked twice"
            );
            epochs.push(epoch);
        }
    }
    epochs.dedup();
    assert_eq!(
        epochs.len(),
        1,
        "one epoch for the topic on every node: {epochs:?}"
    );
    let total = (3 * PER_PUBLISHER) as u64;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    until_tx.send(total).unwrap();
    let mut first: Option<Vec<(u64, Value)>> = None;
    for (i, handle) in handles.into_iter().enumerate() {
        let seen = handle.await.unwrap();
        seen.assert_complete(&format!("subscriber {i}"), total);
        assert_eq!(seen.epochs[0], epochs[0].as_str().unwrap());
        for (offset, data) in &seen.messages {
            assert_eq!(&acked[offset], data, "subscriber {i}, offset {offset}");
        }
        match &first {
            None => first = Some(seen.messages),
            Some(order) => assert_eq!(order, &seen.messages, "subscriber {i}'s order"),
        }
    }
    eprintln!(
        "scale-out: {total} publishes over 3 nodes, 6 subscribers (2 per node) each got all \
         {total} in the same order, offsets 1..={total}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_subscribers_resume_on_another_node_with_no_gap() {
    let Some(mut cluster) = Cluster::start(3).await else {
        return;
    };
    let (until_tx, until) = watch::channel(u64::MAX);
    // Three subscribers on node 0 (the one killed), one on each other node. Their
    // reconnections wait until MISSED more messages are published after the kill.
    let (gate, gate_rx) = watch::channel(true);
    let handles = gated_followers(&cluster, TOPIC, &[0, 0, 0, 1, 2], &until, &gate_rx).await;
    const TOTAL: u64 = 240;
    const KILL_AT: u64 = 80;
    const MISSED: u64 = 20;
    let mut pick = Pick::new(7);
    let mut last = 0;
    for i in 0..TOTAL {
        if i == KILL_AT + MISSED {
            gate.send(true).unwrap();
        }
        if i == KILL_AT {
            gate.send(false).unwrap();
            let mut node = cluster.nodes[0].take().unwrap();
            node.process.child.kill().unwrap(); // SIGKILL, by PID
            node.process.child.wait().unwrap();
        }
        // Publishes go to the surviving nodes (node 0 too, before the kill).
        let node = if i < KILL_AT {
            pick.below(3)
        } else {
            1 + pick.below(2)
        };
        let (status, answer) = publish(cluster.addrs[node], TOPIC, &json!({"n": i})).await;
        assert_eq!(status, 200, "publish {i} via node {node}: {answer}");
        last = answer["offset"].as_u64().unwrap();
        assert_eq!(last, i + 1);
    }
    until_tx.send(last).unwrap();
    for (i, handle) in handles.into_iter().enumerate() {
        let seen = handle.await.unwrap();
        seen.assert_complete(&format!("subscriber {i}"), TOTAL);
        for (offset, data) in &seen.messages {
            assert_eq!(data["n"], offset - 1, "subscriber {i}, offset {offset}");
        }
        if i < 3 {
            assert!(
                seen.nodes.len() >= 2 && seen.nodes[1] != 0,
                "{:?}",
                seen.nodes
            );
            for ack in &seen.acks[1..] {
                assert_eq!(ack["topics"][TOPIC]["recovered"], true, "resume ack {ack}");
            }
            // It resumed from at most KILL_AT, with at least MISSED messages published since.
            let resumed_at = seen.acks[1]["topics"][TOPIC]["offset"].as_u64().unwrap();
            assert!(
                resumed_at >= KILL_AT + MISSED,
                "resume ack {}, all acks {:?}, nodes {:?}",
                seen.acks[1],
                seen.acks,
                seen.nodes
            );
            eprintln!(
                "scale-out kill: subscriber {i} went over nodes {:?}, held off while {MISSED} were \
                 published, resumed with acks {:?}",
                seen.nodes,
                seen.acks[1..]
                    .iter()
                    .map(|a| &a["topics"][TOPIC])
                    .collect::<Vec<_>>()
            );
        }
    }
    cluster.assert_running();
}
