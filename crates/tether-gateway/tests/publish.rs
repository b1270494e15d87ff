//! Publishing through the gateway reaches subscribers: HTTP publish to a WebSocket subscriber,
//! per-topic permissions of tokens on subscribe and publish, and the demo feeds.

mod common;

use std::collections::BTreeSet;

use common::{Client, config, config_from, http, next_text, start};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tether::{ClientBuilder, Message};

async fn request(ws: &mut Client, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// The next message as JSON.
async fn next_json(ws: &mut Client) -> Value {
    serde_json::from_str(&next_text(ws).await).unwrap()
}

async fn subscriber(addr: std::net::SocketAddr, query: &str, topic: &str) -> (Client, Value) {
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws{query}"))
        .subprotocol("tether.pubsub.v1")
        .connect()
        .await
        .unwrap();
    request(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "topic": topic}),
    )
    .await;
    let reply = next_json(&mut ws).await;
    (ws, reply)
}

#[tokio::test]
async fn http_publish_reaches_a_websocket_subscriber() {
    let gw = start(config()).await;
    let (mut ws, ack) = subscriber(gw.addr, "", "orders.*").await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let answer = http(
        gw.addr,
        "POST",
        "/api/publish/orders.eu?key=o-17",
        &[],
        r#"{"qty": 3}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let position = answer.json();
    let message = next_json(&mut ws).await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["topic"], "orders.eu");
    assert_eq!(message["key"], "o-17");
    assert_eq!(message["data"], json!({"qty": 3}));
    assert_eq!(message["offset"], position["offset"]);
    assert_eq!(message["epoch"], position["epoch"]);
    // A body that is not JSON arrives as a JSON string.
    let answer = http(gw.addr, "POST", "/api/publish/orders.us", &[], "plain text").await;
    assert_eq!(answer.status, 200);
    assert_eq!(next_json(&mut ws).await["data"], "plain text");
    ws.close(None).await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn token_permissions_refuse_subscribe_and_publish_per_topic() {
    let gw = start(config_from(
        "[[auth.tokens]]\ntoken = \"reader-token\"\nsubscribe = [\"news.*\"]\npublish = [\"chat.*\"]\n",
    ))
    .await;
    let (mut ws, refused) = subscriber(gw.addr, "?token=reader-token", "secret.*").await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["code"], "forbidden");
    request(
        &mut ws,
        json!({"type": "subscribe", "id": 2, "topic": "news.*"}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    request(
        &mut ws,
        json!({"type": "publish", "id": 3, "topic": "news.x", "data": 1}),
    )
    .await;
    let refused = next_json(&mut ws).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    request(
        &mut ws,
        json!({"type": "publish", "id": 4, "topic": "chat.x", "data": 1}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "ack");
    // The HTTP API applies the same permissions.
    let bearer = [("Authorization", "Bearer reader-token")];
    assert_eq!(
        http(gw.addr, "POST", "/api/publish/news.x", &bearer, "1")
            .await
            .status,
        403
    );
    assert_eq!(
        http(gw.addr, "POST", "/api/publish/chat.y", &bearer, "1")
            .await
            .status,
        200
    );
    ws.close(None).await.unwrap();
    gw.stop().await;
}

#[tokio::test]
async fn demo_feeds_publish_stocks_and_scores_with_latest_per_key_history() {
    let gw = start(tether_gateway::GatewayConfig {
        demo: true,
        ..config()
    })
    .await;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{}/ws", gw.addr))
        .subprotocol("tether.pubsub.v1")
        .connect()
        .await
        .unwrap();
    // Wait for the first score card, then ask for the history of every stock: one per symbol.
    request(
        &mut ws,
        json!({"type": "subscribe", "id": 1, "topic": "scores.*"}),
    )
    .await;
    let mut scores = BTreeSet::new();
    while scores.len() < 3 {
        let msg = next_json(&mut ws).await;
        if msg["type"] == "message" {
            assert!(msg["data"]["home_score"].is_u64(), "{msg}");
            scores.insert(msg["topic"].as_str().unwrap().to_string());
        }
    }
    request(
        &mut ws,
        json!({"type": "subscribe", "id": 2, "topic": "stocks.*", "since": {}}),
    )
    .await;
    let mut symbols = BTreeSet::new();
    while symbols.len() < 7 {
        let msg = next_json(&mut ws).await;
        if msg["type"] == "message" && msg["topic"].as_str().unwrap().starts_with("stocks.") {
            assert_eq!(msg["key"], msg["data"]["symbol"], "{msg}");
            assert!(msg["data"]["price"].as_f64().unwrap() > 0.0);
            symbols.insert(msg["key"].as_str().unwrap().to_string());
        }
    }
    assert!(symbols.contains("TTX"), "{symbols:?}");
    ws.close(None).await.unwrap();
    gw.stop().await;
}
