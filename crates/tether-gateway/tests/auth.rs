//! Tokens over real connections: static tokens and JWTs, from the header or `?token=`, with
//! per-topic permissions on the HTTP API and on WebSocket routes.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{config_from, get, http, raw_upgrade, start};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const SECRET: &str = "integration-test-secret-of-32-bytes!";

fn auth_config() -> String {
    format!(
        r#"
[[auth.tokens]]
token = "publisher-token"
publish = ["news.*"]
subscribe = ["*"]

[[auth.tokens]]
token = "reader-token"
subscribe = ["news.*"]

[auth.jwt]
secret = "{SECRET}"
default_subscribe = ["news.*"]
"#
    )
}

fn jwt(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn in_a_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60
}

#[tokio::test]
async fn websocket_upgrades_need_a_valid_token() {
    let gw = start(config_from(&auth_config())).await;
    let none = raw_upgrade(gw.addr, "/ws", "").await;
    assert_eq!(none.status, 401, "{}", none.head);
    assert_eq!(none.header("www-authenticate").as_deref(), Some("Bearer"));
    let bad = raw_upgrade(gw.addr, "/ws", "Authorization: Bearer nope-nope\r\n").await;
    assert_eq!(bad.status, 401);
    assert!(
        bad.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    let good = raw_upgrade(gw.addr, "/ws", "Authorization: Bearer reader-token\r\n").await;
    assert_eq!(good.status, 101, "{}", good.head);
    // Browsers cannot set headers on a WebSocket: the query parameter works too.
    let query = raw_upgrade(gw.addr, "/ws?token=reader-token", "").await;
    assert_eq!(query.status, 101);
    let token = jwt(json!({"exp": in_a_minute(), "sub": ["news.*"]}));
    let signed = raw_upgrade(gw.addr, &format!("/echo?token={token}"), "").await;
    assert_eq!(signed.status, 101);
    let expired = jwt(json!({"exp": 1_000_000_000u64}));
    let answer = raw_upgrade(gw.addr, &format!("/echo?token={expired}"), "").await;
    assert_eq!(answer.status, 401);
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(
        metrics.contains("tether_handshakes_refused_total{reason=\"unauthorized\"} 3\n"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn publish_checks_the_token_and_its_topics() {
    let gw = start(config_from(&auth_config())).await;
    let none = http(gw.addr, "POST", "/api/publish/news.a", &[], "1").await;
    assert_eq!(none.status, 401);
    let bad = http(
        gw.addr,
        "POST",
        "/api/publish/news.a",
        &[("Authorization", "Bearer wrong-token")],
        "1",
    )
    .await;
    assert_eq!(bad.status, 401);
    let reader = http(
        gw.addr,
        "POST",
        "/api/publish/news.a",
        &[("Authorization", "Bearer reader-token")],
        "1",
    )
    .await;
    assert_eq!(reader.status, 403, "{}", reader.body);
    let elsewhere = http(
        gw.addr,
        "POST",
        "/api/publish/sports.a",
        &[("Authorization", "Bearer publisher-token")],
        "1",
    )
    .await;
    assert_eq!(elsewhere.status, 403);
    let ok = http(
        gw.addr,
        "POST",
        "/api/publish/news.a",
        &[("Authorization", "Bearer publisher-token")],
        "1",
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // A JWT whose `pub` claim allows the topic.
    let token = jwt(json!({"exp": in_a_minute(), "pub": ["sports.*"]}));
    let bearer = format!("Bearer {token}");
    let ok = http(
        gw.addr,
        "POST",
        "/api/publish/sports.final",
        &[("Authorization", &bearer)],
        "1",
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    gw.stop().await;
}

#[tokio::test]
async fn topics_list_only_what_the_token_may_subscribe_to() {
    let gw = start(config_from(&auth_config())).await;
    gw.hub.publish("news.a", "1".into(), None).await.unwrap();
    gw.hub.publish("secret.b", "2".into(), None).await.unwrap();
    assert_eq!(get(gw.addr, "/api/topics").await.status, 401);
    let listed = |response: common::HttpResponse| -> Vec<String> {
        response.json()["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic"].as_str().unwrap().to_string())
            .collect()
    };
    let reader = http(
        gw.addr,
        "GET",
        "/api/topics",
        &[("Authorization", "Bearer reader-token")],
        "",
    )
    .await;
    assert_eq!(listed(reader), vec!["news.a"]);
    let publisher = http(gw.addr, "GET", "/api/topics?token=publisher-token", &[], "").await;
    assert_eq!(listed(publisher), vec!["news.a", "secret.b"]);
    gw.stop().await;
}

#[tokio::test]
async fn anonymous_clients_get_the_anonymous_permissions() {
    let gw = start(config_from(
        "[[auth.tokens]]\ntoken = \"admin-token\"\npublish = [\"*\"]\n\
         [auth.anonymous]\nsubscribe = [\"public.*\"]\n",
    ))
    .await;
    let anonymous = raw_upgrade(gw.addr, "/ws", "").await;
    assert_eq!(anonymous.status, 101);
    let publish = http(gw.addr, "POST", "/api/publish/public.x", &[], "1").await;
    assert_eq!(publish.status, 403);
    // A wrong token is still wrong, not anonymous.
    let wrong = raw_upgrade(gw.addr, "/ws?token=guess", "").await;
    assert_eq!(wrong.status, 401);
    gw.stop().await;
}

#[tokio::test]
async fn health_and_metrics_stay_open() {
    let gw = start(config_from(&auth_config())).await;
    assert_eq!(get(gw.addr, "/healthz").await.status, 200);
    assert_eq!(get(gw.addr, "/metrics").await.status, 200);
    assert_eq!(get(gw.addr, "/").await.status, 200);
    gw.stop().await;
}
