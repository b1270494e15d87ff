//! The built-in pages over real TCP: every embedded file with its content type and
//! validators, `/api/routes`, `/tether.js` beside a static root, and the echo route's
//! inspection mode (`tether.inspect.v1`) that the home page's connection panel uses.

mod common;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tether::{ClientBuilder, Message};

use common::{Client, PATIENCE, config, config_from, get, http, next_text, start};

#[tokio::test]
async fn every_page_and_asset_is_served_with_its_type_and_a_validator() {
    let gw = start(config()).await;
    for (path, content_type, needle) in [
        ("/", "text/html; charset=utf-8", "Connection inspector"),
        (
            "/index.html",
            "text/html; charset=utf-8",
            "Connection inspector",
        ),
        ("/ticker", "text/html; charset=utf-8", "Market ticker"),
        ("/scores", "text/html; charset=utf-8", "Score cards"),
        ("/game", "text/html; charset=utf-8", "Territory"),
        ("/chat", "text/html; charset=utf-8", "Chat room"),
        (
            "/tether.js",
            "text/javascript; charset=utf-8",
            "tether.pubsub.v1",
        ),
        ("/assets/style.css", "text/css; charset=utf-8", ":root"),
        (
            "/assets/inspector.js",
            "text/javascript; charset=utf-8",
            "tether.inspect.v1",
        ),
        ("/favicon.svg", "image/svg+xml", "<svg"),
    ] {
        let page = get(gw.addr, path).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(
            page.header("content-type").as_deref(),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            page.header("cache-control").as_deref(),
            Some("no-cache"),
            "{path}"
        );
        assert!(page.body.contains(needle), "{path} lacks {needle:?}");
        let etag = page.header("etag").unwrap();
        let again = http(gw.addr, "GET", path, &[("If-None-Match", &etag)], "").await;
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
    }
    assert_eq!(get(gw.addr, "/assets/missing.js").await.status, 404);
    assert_eq!(get(gw.addr, "/ticker/").await.status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn api_routes_lists_what_the_gateway_serves() {
    let gw = start(config()).await;
    let routes = get(gw.addr, "/api/routes").await;
    assert_eq!(routes.status, 200);
    let routes = routes.json();
    let websocket = routes["websocket"].as_array().unwrap();
    assert_eq!(websocket[0]["path"], "/ws");
    assert_eq!(websocket[0]["kind"], "pubsub");
    assert_eq!(websocket[0]["subprotocols"][0], "tether.pubsub.v1");
    assert_eq!(websocket[1]["path"], "/echo");
    assert_eq!(websocket[1]["subprotocols"][0], "tether.inspect.v1");
    let pages: Vec<&str> = routes["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        pages,
        ["/", "/ticker", "/scores", "/game", "/chat", "/tether.js"]
    );
    // No auth configured: anonymous browsers may publish, so chat and game work.
    assert_eq!(routes["anonymous"]["publish"][0], "*");
    assert_eq!(
        http(gw.addr, "POST", "/api/routes", &[], "").await.status,
        405
    );
    gw.stop().await;

    let gw = start(config_from(
        "[[auth.tokens]]\ntoken = \"0123456789\"\nsubscribe = [\"*\"]\n",
    ))
    .await;
    assert_eq!(
        get(gw.addr, "/api/routes").await.json()["anonymous"],
        Value::Null
    );
    gw.stop().await;
}

#[tokio::test]
async fn tether_js_is_served_beside_a_static_root_that_has_none() {
    let dir = std::env::temp_dir().join(format!("tether-pages-root-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>mine</h1>").unwrap();
    let mut cfg = config();
    cfg.static_files.root = Some(dir.clone());
    let gw = start(cfg).await;
    assert_eq!(get(gw.addr, "/").await.body, "<h1>mine</h1>");
    assert_eq!(get(gw.addr, "/ticker").await.status, 404);
    let client = get(gw.addr, "/tether.js").await;
    assert_eq!(client.status, 200);
    assert!(client.body.contains("export function connect"));
    assert!(
        get(gw.addr, "/api/routes").await.json()["pages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    std::fs::write(dir.join("tether.js"), "// my own").unwrap();
    assert_eq!(get(gw.addr, "/tether.js").await.body, "// my own");
    gw.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn inspected(addr: std::net::SocketAddr, target: &str) -> Client {
    let (ws, _) = ClientBuilder::new(format!("ws://{addr}{target}"))
        .subprotocol("tether.inspect.v1")
        .header("Authorization", "Bearer s3cret-value")
        .connect()
        .await
        .unwrap();
    assert_eq!(ws.subprotocol(), Some("tether.inspect.v1"));
    ws
}

async fn next_json(ws: &mut Client) -> Value {
    let text = next_text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn inspect_reports_the_handshake_then_each_echo_with_secrets_redacted() {
    let gw = start(config()).await;
    let mut ws = inspected(gw.addr, "/echo?room=1&token=s3cret-value").await;
    let handshake = next_json(&mut ws).await;
    assert_eq!(handshake["type"], "handshake");
    assert_eq!(handshake["request"]["method"], "GET");
    assert_eq!(
        handshake["request"]["target"],
        "/echo?room=1&token=[redacted]"
    );
    assert_eq!(handshake["response"]["status"], 101);
    assert!(!handshake.to_string().contains("s3cret"), "{handshake}");
    let headers = handshake["request"]["headers"].as_array().unwrap();
    assert!(headers.contains(&serde_json::json!(["authorization", "[redacted]"])));
    assert!(headers.contains(&serde_json::json!([
        "sec-websocket-protocol",
        "tether.inspect.v1"
    ])));
    let response = handshake["response"]["headers"].as_array().unwrap();
    assert!(response.contains(&serde_json::json!([
        "sec-websocket-protocol",
        "tether.inspect.v1"
    ])));
    assert_eq!(handshake["compression"], ws.negotiated().compression);

    // Text that looks like a report is still echoed, after its report.
    let sneaky = r#"{"type":"handshake"}"#;
    ws.send(Message::text(sneaky)).await.unwrap();
    let report = next_json(&mut ws).await;
    assert_eq!(report["type"], "echo");
    assert_eq!(report["received"]["opcode"], "text");
    assert_eq!(report["received"]["length"], sneaky.len());
    assert_eq!(report["sent"]["frames"], 1);
    assert_eq!(report["sent"]["fin"], true);
    assert_eq!(next_text(&mut ws).await, sneaky);
    ws.send(Message::binary(vec![7u8; 100])).await.unwrap();
    let report = next_json(&mut ws).await;
    assert_eq!(report["received"]["opcode"], "binary");
    assert_eq!(report["sent"]["compressed"], ws.negotiated().compression);
    let echo = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert_eq!(echo.unwrap().unwrap(), Message::binary(vec![7u8; 100]));
    gw.stop().await;
}

#[tokio::test]
async fn inspect_pings_on_request_and_closes_with_the_code_and_reason_asked_for() {
    let gw = start(config()).await;
    let mut ws = inspected(gw.addr, "/echo").await;
    assert_eq!(next_json(&mut ws).await["type"], "handshake");
    ws.send(Message::text(r#"{"inspect":"ping"}"#))
        .await
        .unwrap();
    // The ping frame itself (our engine answers it), then the report, then the pong's report.
    let ping = tokio::time::timeout(PATIENCE, ws.next()).await.unwrap();
    assert_eq!(ping.unwrap().unwrap(), Message::Ping("inspect-1".into()));
    let report = next_json(&mut ws).await;
    assert_eq!(
        report,
        serde_json::json!({"type": "ping", "payload": "inspect-1"})
    );
    let pong = next_json(&mut ws).await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["payload"], "inspect-1");
    assert!(pong["rtt_ms"].as_f64().unwrap() >= 0.0);

    ws.send(Message::text(r#"{"inspect":"close","code":1005}"#))
        .await
        .unwrap();
    let refused = next_json(&mut ws).await;
    assert_eq!(refused["type"], "error");
    assert!(refused["reason"].as_str().unwrap().contains("1005"));
    ws.send(Message::text(r#"{"inspect":"jump"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "error");

    ws.send(Message::text(
        r#"{"inspect":"close","code":4000,"reason":"bye now"}"#,
    ))
    .await
    .unwrap();
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(frame.code.0, 4000);
                assert_eq!(frame.reason.as_str(), "bye now");
                break;
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => panic!("expected close 4000, got {other:?}"),
        }
    }
    gw.stop().await;
}

#[tokio::test]
async fn echo_without_the_subprotocol_stays_a_plain_echo() {
    let gw = start(config()).await;
    let mut ws = common::connect(gw.addr, "/echo", None).await;
    assert_eq!(ws.subprotocol(), None);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hello");
    gw.stop().await;
}
