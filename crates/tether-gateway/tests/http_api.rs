//! The HTTP side of the gateway over real TCP: health, metrics, topics, publish, pages,
//! traversal attempts, and where plain requests to WebSocket paths go.

mod common;

use common::{config, config_from, get, http, start};

#[tokio::test]
async fn healthz_metrics_and_topics_respond() {
    let gw = start(config()).await;
    let health = get(gw.addr, "/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    assert_eq!(
        health.header("content-type").as_deref(),
        Some("application/json")
    );

    gw.hub
        .publish("news.local", "\"hello\"".into(), None)
        .await
        .unwrap();
    let topics = get(gw.addr, "/api/topics").await;
    assert_eq!(topics.status, 200);
    let list = topics.json()["topics"].as_array().unwrap().clone();
    let news = list.iter().find(|t| t["topic"] == "news.local").unwrap();
    assert!(news["offset"].is_u64(), "{news}");
    assert!(news["epoch"].is_string(), "{news}");

    let metrics = get(gw.addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    for family in [
        "tether_connections_total",
        "tether_http_connections_open",
        "tether_websocket_connections_total{kind=\"echo\"}",
        "tether_websocket_connections_open{kind=\"pubsub\"}",
        "tether_handshakes_refused_total{reason=\"origin\"}",
        "tether_received_bytes_total",
        "tether_sent_bytes_total",
    ] {
        assert!(
            metrics.body.contains(family),
            "{family} missing:\n{}",
            metrics.body
        );
    }
    assert_eq!(http(gw.addr, "POST", "/healthz", &[], "").await.status, 405);
    gw.stop().await;
}

#[tokio::test]
async fn publish_answers_with_the_position() {
    let gw = start(config()).await;
    let first = http(
        gw.addr,
        "POST",
        "/api/publish/sensors.t1",
        &[],
        "{\"c\": 21.5}",
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let body = first.json();
    assert_eq!(body["topic"], "sensors.t1");
    let second = http(gw.addr, "POST", "/api/publish/sensors.t1?key=k1", &[], "22").await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(second.json()["offset"].as_u64() > body["offset"].as_u64());
    assert_eq!(second.json()["epoch"], body["epoch"]);
    assert_eq!(get(gw.addr, "/api/publish/sensors.t1").await.status, 405);
    assert_eq!(get(gw.addr, "/api/nothing").await.status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn publish_refuses_bad_topics_and_large_bodies() {
    let gw = start(config_from("[limits]\nmax_message_size = 1024\n")).await;
    let bad = http(gw.addr, "POST", "/api/publish/bad%20topic*", &[], "1").await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.json()["error"].is_string());
    let big = "x".repeat(2048);
    let large = http(gw.addr, "POST", "/api/publish/big.one", &[], &big).await;
    assert_eq!(large.status, 413, "{}", large.body);
    gw.stop().await;
}

#[tokio::test]
async fn the_built_in_page_is_served() {
    let gw = start(config()).await;
    let page = get(gw.addr, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("tether.pubsub.v1") && page.body.contains("/echo"));
    assert_eq!(get(gw.addr, "/nothing-here").await.status, 404);
    let head = http(gw.addr, "HEAD", "/", &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn static_root_serves_files_and_refuses_traversal() {
    let dir = std::env::temp_dir().join(format!("tether-site-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("www/css")).unwrap();
    std::fs::write(dir.join("www/index.html"), "<p>mine</p>").unwrap();
    std::fs::write(dir.join("www/css/site.css"), "body{}").unwrap();
    std::fs::write(dir.join("www/logo.svg"), "<svg/>").unwrap();
    std::fs::write(dir.join("private.txt"), "do not serve").unwrap();
    let gw = start(config_from(&format!(
        "[static]\nroot = {:?}\n",
        dir.join("www").to_str().unwrap()
    )))
    .await;
    let index = get(gw.addr, "/").await;
    assert_eq!((index.status, index.body.as_str()), (200, "<p>mine</p>"));
    let css = get(gw.addr, "/css/site.css").await;
    assert_eq!(
        css.header("content-type").as_deref(),
        Some("text/css; charset=utf-8")
    );
    let svg = get(gw.addr, "/logo.svg").await;
    assert_eq!(svg.header("content-type").as_deref(), Some("image/svg+xml"));
    assert_eq!(get(gw.addr, "/css").await.status, 301);
    for target in [
        "/../private.txt",
        "/css/../../private.txt",
        "/%2e%2e/private.txt",
        "/css/%2E%2E/%2e%2e/private.txt",
        "/..%2fprivate.txt",
        "/..%5cprivate.txt",
        "/%5c..%5cprivate.txt",
    ] {
        let answer = get(gw.addr, target).await;
        assert!(
            answer.status == 400 || answer.status == 404,
            "{target}: {} {}",
            answer.status,
            answer.body
        );
        assert!(!answer.body.contains("do not serve"), "{target}");
    }
    gw.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn plain_requests_to_websocket_paths_get_426() {
    let gw = start(config()).await;
    let answer = get(gw.addr, "/ws").await;
    assert_eq!(answer.status, 426);
    assert_eq!(answer.header("upgrade").as_deref(), Some("websocket"));
    gw.stop().await;
}

#[tokio::test]
async fn a_route_at_the_root_leaves_the_page_to_plain_gets() {
    let gw = start(config_from("[[routes]]\npath = \"/\"\nkind = \"echo\"\n")).await;
    assert_eq!(get(gw.addr, "/").await.status, 200);
    let mut ws = common::connect(gw.addr, "/", None).await;
    use futures_util::SinkExt;
    ws.send(tether::Message::text("root echo")).await.unwrap();
    assert_eq!(common::next_text(&mut ws).await, "root echo");
    ws.close(None).await.unwrap();
    gw.stop().await;
}
