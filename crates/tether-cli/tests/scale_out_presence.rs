//! Presence through `tether serve`: on one node with the in-memory backplane, and across
//! three nodes on one `redis-server`. Clients authenticate with JWTs whose `sub` names the
//! user; a presence query (WebSocket `presence`, `GET /api/presence/TOPIC`) on any node
//! lists every node's clients; a clean close or an unsubscribe removes the entry at once, a
//! node killed with SIGKILL loses its clients within `hub.presence_ttl`, and a Redis that
//! is killed and started again (empty) gets every live entry back once the links return.
#![cfg(unix)]

mod scale_out_support;
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{EncodingKey, Header};
use scale_out_support::{Cluster, http, wait_health};
use serde_json::{Value, json};
use support::{PATIENCE, Serve};
use tether::{ClientBuilder, Message, WebSocket};
use tokio::net::TcpStream;

const SECRET: &str = "presence-test-secret-of-at-least-32-bytes";
const TOPIC: &str = "room.lobby";

type Ws = WebSocket<tether::MaybeTlsStream<TcpStream>>;

/// Presence for `room.*`, JWT auth; `ttl` is `hub.presence_ttl`. Goes after `[hub]` keys.
fn config(ttl: &str) -> String {
    format!(
        "presence_ttl = \"{ttl}\"\n\
         [[hub.topics]]\npattern = \"room.*\"\npresence = true\n\
         [auth.jwt]\nsecret = \"{SECRET}\"\ndefault_subscribe = [\"room.*\", \"plain.*\"]\n\
         default_publish = [\"room.*\"]\n"
    )
}

/// A JWT for `user` (its `sub`), with the default permissions.
fn token(user: &str) -> String {
    token_with(json!({"sub": user}))
}

fn token_with(mut claims: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    claims["exp"] = json!(now + 3600);
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn connect(addr: SocketAddr, token: &str) -> Ws {
    let (ws, _) = ClientBuilder::new(format!("ws://{addr}/ws?token={token}"))
        .subprotocol("tether.pubsub.v1")
        .connect()
        .await
        .unwrap();
    ws
}

/// Sends `request` and returns the answer (skipping pings).
async fn ask(ws: &mut Ws, request: Value) -> Value {
    ws.send(Message::text(request.to_string())).await.unwrap();
    loop {
        let next = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("no answer in time");
        match next {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("no answer: {other:?}"),
        }
    }
}

/// A connection of `user` on `addr`, subscribed to `topic` `times` times.
async fn subscriber(addr: SocketAddr, user: &str, topic: &str, times: usize) -> Ws {
    let mut ws = connect(addr, &token(user)).await;
    for id in 0..times {
        let ack = ask(
            &mut ws,
            json!({"type": "subscribe", "id": id, "topic": topic}),
        )
        .await;
        assert_eq!(ack["type"], "ack", "{user}: {ack}");
    }
    ws
}

/// The presence of `topic` over the WebSocket of `addr`: the whole answer.
async fn presence_ws(addr: SocketAddr, topic: &str) -> Value {
    let mut ws = connect(addr, &token("observer")).await;
    let answer = ask(
        &mut ws,
        json!({"type": "presence", "id": "p", "topic": topic}),
    )
    .await;
    let _ = ws.close(None).await;
    answer
}

/// The presence of `topic` over HTTP: the status and the answer.
async fn presence_http(addr: SocketAddr, topic: &str, token: &str) -> (u16, Value) {
    let path = format!("/api/presence/{topic}?token={token}");
    let (status, body) = http(addr, "GET", &path, "").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// The users of a presence answer, sorted.
fn users(answer: &Value) -> Vec<String> {
    let mut users: Vec<String> = answer["clients"]
        .as_array()
        .unwrap_or_else(|| panic!("no clients: {answer}"))
        .iter()
        .map(|c| c["user"].as_str().unwrap_or("-").to_string())
        .collect();
    users.sort();
    users
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    names.sort();
    names
}

/// Polls the HTTP presence of `addr` until it lists exactly `expected`; returns how long
/// that took.
async fn wait_users(addr: SocketAddr, expected: &[&str]) -> Duration {
    let expected = sorted(expected);
    let start = Instant::now();
    loop {
        let (status, answer) = presence_http(addr, TOPIC, &token("observer")).await;
        if status == 200 && users(&answer) == expected {
            assert_eq!(answer["count"], expected.len(), "{answer}");
            return start.elapsed();
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{addr}: presence stayed {status} {answer}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of `name` in the metrics of `addr`.
async fn metric(addr: SocketAddr, name: &str) -> String {
    let (_, body) = http(addr, "GET", "/metrics", "").await;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in the metrics"))
        .to_string()
}

#[tokio::test]
async fn presence_on_one_node_follows_subscriptions_and_refuses_precisely() {
    let serve = Serve::start(Some(&format!("[hub]\n{}", config("15s"))));
    let addr = serve.addr;
    let mut alice = subscriber(addr, "alice", TOPIC, 3).await;
    let mut bob = subscriber(addr, "bob", TOPIC, 1).await;
    // A pattern subscription does not count.
    let _carol = subscriber(addr, "carol", "room.*", 1).await;
    let answer = presence_ws(addr, TOPIC).await;
    assert_eq!(answer["type"], "ack", "{answer}");
    assert_eq!(answer["id"], "p");
    assert_eq!(answer["topic"], TOPIC);
    assert_eq!(answer["count"], 2, "{answer}");
    assert_eq!(answer.get("truncated"), None, "{answer}");
    assert_eq!(users(&answer), sorted(&["alice", "bob"]));
    let clients: Vec<&str> = answer["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client"].as_str().unwrap())
        .collect();
    assert_ne!(clients[0], clients[1]);
    assert_eq!(metric(addr, "tether_presence_entries").await, "2");
    let (status, http_answer) = presence_http(addr, TOPIC, &token("observer")).await;
    assert_eq!(status, 200, "{http_answer}");
    assert_eq!(http_answer["clients"], answer["clients"]);
    assert_eq!(http_answer["truncated"], false);

    let ack = ask(
        &mut alice,
        json!({"type": "unsubscribe", "id": 9, "topic": TOPIC}),
    )
    .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    wait_users(addr, &["bob"]).await;
    bob.close(None).await.ok();
    wait_users(addr, &[]).await;
    assert_eq!(metric(addr, "tether_presence_entries").await, "0");

    // Precise refusals, over both APIs.
    let answer = presence_ws(addr, "plain.news").await;
    assert_eq!(
        (answer["type"].as_str(), answer["code"].as_str()),
        (Some("error"), Some("presence_disabled")),
        "{answer}"
    );
    let (status, answer) = presence_http(addr, "plain.news", &token("observer")).await;
    assert_eq!(status, 404, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("presence = true"),
        "{answer}"
    );
    let answer = presence_ws(addr, "room.*").await;
    assert_eq!(answer["code"], "invalid_topic", "{answer}");
    let (status, _) = presence_http(addr, "room.*", &token("observer")).await;
    assert_eq!(status, 400);
    let outsider = token_with(json!({"sub": ["other.*"]}));
    let mut ws = connect(addr, &outsider).await;
    let answer = ask(
        &mut ws,
        json!({"type": "presence", "id": 1, "topic": TOPIC}),
    )
    .await;
    assert_eq!(answer["code"], "forbidden", "{answer}");
    let (status, _) = presence_http(addr, TOPIC, &outsider).await;
    assert_eq!(status, 403);
    let (status, _) = http(addr, "GET", &format!("/api/presence/{TOPIC}"), "").await;
    assert_eq!(status, 401);
    let (status, _) = http(addr, "POST", &format!("/api/presence/{TOPIC}"), "").await;
    assert_eq!(status, 405);
    serve.stop();
}

/// The test's short TTL, and the slack allowed on top of it for a loaded machine.
const SHORT_TTL: Duration = Duration::from_millis(900);
const SLACK: Duration = Duration::from_secs(3);

#[tokio::test]
async fn presence_spans_nodes_and_a_killed_nodes_clients_expire_within_the_ttl() {
    let ttl = format!("{}ms", SHORT_TTL.as_millis());
    let Some(mut cluster) = Cluster::start_with(3, &config(&ttl)).await else {
        return;
    };
    let addrs = cluster.addrs.clone();
    let mut clients = Vec::new();
    let mut everyone = Vec::new();
    for (node, &addr) in addrs.iter().enumerate() {
        for i in 0..2 {
            let user = format!("u{node}{i}");
            // Subscribing twice still makes one entry.
            clients.push(subscriber(addr, &user, TOPIC, 1 + i).await);
            everyone.push(user);
        }
    }
    let _pattern = subscriber(addrs[1], "pattern", "room.*", 1).await;
    let everyone: Vec<&str> = everyone.iter().map(String::as_str).collect();
    for &addr in &addrs {
        let answer = presence_ws(addr, TOPIC).await;
        assert_eq!(answer["count"], 6, "{addr}: {answer}");
        assert_eq!(users(&answer), sorted(&everyone), "{addr}");
        let mut nodes: Vec<&str> = answer["clients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client"].as_str().unwrap().split('-').next().unwrap())
            .collect();
        nodes.sort();
        nodes.dedup();
        assert_eq!(nodes.len(), 3, "one client id prefix per node: {answer}");
        wait_users(addr, &everyone).await;
    }
    assert_eq!(metric(addrs[2], "tether_presence_entries").await, "2");

    // SIGKILL: node 2 leaves nothing behind but its entries, which expire.
    let killed_at = Instant::now();
    drop(cluster.nodes[2].take());
    let waited = wait_users(addrs[0], &everyone[..4]).await;
    let gone = killed_at.elapsed();
    println!("a killed node's clients disappeared {gone:?} after the kill (ttl {SHORT_TTL:?})");
    assert!(
        gone < SHORT_TTL + SLACK,
        "gone after {gone:?} (waited {waited:?})"
    );
    // The live nodes' entries outlast many TTLs: they are refreshed.
    tokio::time::sleep(SHORT_TTL * 3).await;
    wait_users(addrs[1], &everyone[..4]).await;
    cluster.assert_running();
}

#[tokio::test]
async fn a_clean_close_leaves_at_once_and_entries_return_after_redis_restarts() {
    // A TTL far beyond the test's patience: entries disappear only by leaving, and come
    // back after the restart only by the re-add when the link returns (the periodic
    // refresh, every 40 s, does not come within the test).
    let Some(mut cluster) = Cluster::start_with(3, &config("120s")).await else {
        return;
    };
    let addrs = cluster.addrs.clone();
    let mut a = subscriber(addrs[0], "a", TOPIC, 1).await;
    let _b = subscriber(addrs[1], "b", TOPIC, 1).await;
    let _c = subscriber(addrs[2], "c", TOPIC, 1).await;
    wait_users(addrs[2], &["a", "b", "c"]).await;
    a.close(None).await.ok();
    wait_users(addrs[1], &["b", "c"]).await;

    cluster.redis.kill();
    for &addr in &addrs {
        wait_health(addr, false).await;
    }
    let answer = presence_ws(addrs[0], TOPIC).await;
    assert_eq!(answer["code"], "unavailable", "{answer}");
    let (status, answer) = presence_http(addrs[1], TOPIC, &token("observer")).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("redis"),
        "{answer}"
    );

    cluster.redis.start_again();
    for &addr in &addrs {
        wait_health(addr, true).await;
    }
    let back = wait_users(addrs[0], &["b", "c"]).await;
    println!("entries were back {back:?} after the links returned");
    cluster.assert_running();
}
