//! History on the Redis backplane across nodes: a resume on another node is `recovered`
//! while the stream still reaches back and not once it does not (or for another epoch);
//! latest-per-key topics replay the newest record of each key; a topic subscribed to before
//! its first message gets the epoch its messages will have, whichever node publishes.
#![cfg(unix)]

mod scale_out_support;
mod support;

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use scale_out_support::{Cluster, publish};
use serde_json::{Value, json};
use support::PATIENCE;
use tether::{ClientBuilder, Message};

const POLICIES: &str = "[[hub.topics]]\npattern = \"short.*\"\nhistory_count = 5\n\
                        [[hub.topics]]\npattern = \"latest.*\"\nlatest_per_key = true\n";

/// Subscribes to `topic` on `addr` with `since`; returns the ack's entry for the topic and
/// the first `expect` messages (offset, data).
async fn resume(
    addr: SocketAddr,
    topic: &str,
    since: Option<Value>,
    expect: usize,
) -> (Value, Vec<(u64, Value)>) {
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .subprotocol("tether.pubsub.v1")
        .connect()
        .await
        .unwrap();
    let mut subscribe = json!({"type": "subscribe", "id": 1, "topic": topic});
    if let Some(since) = since {
        subscribe["since"] = since;
    }
    ws.send(Message::text(subscribe.to_string())).await.unwrap();
    let mut ack = Value::Null;
    let mut messages = Vec::new();
    while ack.is_null() || messages.len() < expect {
        let next = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("nothing in time");
        let Some(Ok(Message::Text(text))) = next else {
            panic!("{next:?}")
        };
        let value: Value = serde_json::from_str(text.as_str()).unwrap();
        match value["type"].as_str() {
            Some("ack") => ack = value["topics"][topic].clone(),
            Some("message") => {
                messages.push((value["offset"].as_u64().unwrap(), value["data"].clone()));
            }
            _ => panic!("unexpected {value}"),
        }
    }
    (ack, messages)
}

fn offsets(messages: &[(u64, Value)]) -> Vec<u64> {
    messages.iter().map(|(o, _)| *o).collect()
}

async fn publish_ok(addr: SocketAddr, topic: &str, data: Value) -> Value {
    let (status, answer) = publish(addr, topic, &data).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_on_another_node_is_recovered_only_while_the_stream_reaches_back() {
    let Some(cluster) = Cluster::start_with(2, POLICIES).await else {
        return;
    };
    let [a, b] = [cluster.addrs[0], cluster.addrs[1]];
    let mut epoch = Value::Null;
    for n in 1..=3 {
        epoch = publish_ok(a, "short.a", json!(n)).await["epoch"].clone();
    }
    let (ack, got) = resume(b, "short.a", Some(json!({"epoch": epoch, "offset": 1})), 2).await;
    assert_eq!(
        (ack["recovered"].clone(), ack["offset"].clone()),
        (json!(true), json!(3))
    );
    assert_eq!(got, [(2, json!(2)), (3, json!(3))]);
    for n in 4..=10 {
        publish_ok(b, "short.a", json!(n)).await;
    }
    // history_count = 5: offsets 6..=10 remain.
    let (ack, got) = resume(a, "short.a", Some(json!({"epoch": epoch, "offset": 5})), 5).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(offsets(&got), [6, 7, 8, 9, 10]);
    let (ack, got) = resume(b, "short.a", Some(json!({"epoch": epoch, "offset": 3})), 5).await;
    assert_eq!(ack["recovered"], false, "offsets 4 and 5 are gone: {ack}");
    assert_eq!(offsets(&got), [6, 7, 8, 9, 10]);
    let other = json!({"epoch": "0000000000000001", "offset": 10});
    let (ack, got) = resume(a, "short.a", Some(other), 5).await;
    assert_eq!(ack["recovered"], false, "another epoch: {ack}");
    assert_eq!(offsets(&got), [6, 7, 8, 9, 10]);
    let (ack, _) = resume(b, "short.a", Some(json!({"epoch": epoch, "offset": 10})), 0).await;
    assert_eq!(
        (ack["recovered"].clone(), ack["epoch"].clone()),
        (json!(true), epoch)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_per_key_and_topics_before_their_first_message_work_across_nodes() {
    let Some(cluster) = Cluster::start_with(2, POLICIES).await else {
        return;
    };
    let [a, b] = [cluster.addrs[0], cluster.addrs[1]];
    for (key, v) in [("A", 1), ("B", 1), ("A", 2)] {
        let (status, _) = scale_out_support::http(
            a,
            "POST",
            &format!("/api/publish/latest.x?key={key}"),
            &json!({"key": key, "v": v}).to_string(),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (ack, _) = resume(b, "latest.x", None, 0).await;
    let since = json!({"epoch": ack["epoch"], "offset": 0});
    let (ack, got) = resume(b, "latest.x", Some(since), 2).await;
    assert_eq!(
        ack["recovered"], true,
        "replaced records are not lost: {ack}"
    );
    assert_eq!(
        got,
        [
            (2, json!({"key": "B", "v": 1})),
            (3, json!({"key": "A", "v": 2}))
        ]
    );
    // A topic with no message yet: the epoch the subscriber is told is the one messages get.
    let (ack, got) = resume(a, "short.new", None, 0).await;
    assert_eq!((ack["offset"].clone(), got.len()), (json!(0), 0));
    let published = publish_ok(b, "short.new", json!("first")).await;
    assert_eq!(published["epoch"], ack["epoch"]);
    assert_eq!(published["offset"], 1);
}
