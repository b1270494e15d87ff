//! WebSocket handshakes through the gateway: subprotocols, compression, Origin, the precise
//! refusals, and the echo route.

mod common;

use common::{config, config_from, connect, get, next_text, raw_request, raw_upgrade, start};
use futures_util::SinkExt;
use tether::{ClientBuilder, Message};

#[tokio::test]
async fn pubsub_route_picks_its_subprotocol_and_compression() {
    let gw = start(config()).await;
    let (ws, response) = ClientBuilder::new(format!("ws://{}/ws", gw.addr))
        .subprotocol("other.v9")
        .subprotocol("tether.pubsub.v1")
        .connect()
        .await
        .unwrap();
    assert_eq!(response.subprotocol.as_deref(), Some("tether.pubsub.v1"));
    let extensions = String::from_utf8_lossy(response.header("sec-websocket-extensions").unwrap());
    assert!(extensions.starts_with("permessage-deflate"), "{extensions}");
    assert!(ws.negotiated().compression);
    drop(ws);
    gw.stop().await;
}

#[tokio::test]
async fn echo_route_echoes_text_and_binary() {
    let gw = start(config()).await;
    let mut ws = connect(gw.addr, "/echo", None).await;
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hello");
    ws.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
    use futures_util::StreamExt;
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2])
    );
    ws.close(None).await.unwrap();
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(
        metrics.contains("tether_websocket_messages_received_total{kind=\"echo\"} 2\n"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_refused_origin_gets_403_and_is_counted() {
    let gw = start(config_from(
        "allowed_origins = [\"https://good.example\"]\n",
    ))
    .await;
    let refused = raw_upgrade(gw.addr, "/ws", "Origin: https://evil.example\r\n").await;
    assert_eq!(refused.status, 403, "{}", refused.head);
    let allowed = raw_upgrade(gw.addr, "/ws", "Origin: https://good.example\r\n").await;
    assert_eq!(allowed.status, 101, "{}", allowed.head);
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(metrics.contains("tether_handshakes_refused_total{reason=\"origin\"} 1\n"));
    gw.stop().await;
}

#[tokio::test]
async fn a_route_origin_list_overrides_the_global_one() {
    let gw = start(config_from(
        "allowed_origins = [\"https://good.example\"]\n\
         [[routes]]\npath = \"/open\"\nkind = \"echo\"\nallowed_origins = [\"https://other.example\"]\n",
    ))
    .await;
    let answer = raw_upgrade(gw.addr, "/open", "Origin: https://good.example\r\n").await;
    assert_eq!(answer.status, 403);
    let answer = raw_upgrade(gw.addr, "/open", "Origin: https://other.example\r\n").await;
    assert_eq!(answer.status, 101);
    gw.stop().await;
}

#[tokio::test]
async fn broken_handshakes_get_their_precise_status() {
    let gw = start(config()).await;
    let upgrade = |key: &str, version: &str| {
        format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n",
            gw.addr
        )
    };
    // Wrong version: 426 with the version we speak.
    let answer = raw_request(gw.addr, &upgrade("dGhlIHNhbXBsZSBub25jZQ==", "8")).await;
    assert_eq!(answer.status, 426, "{}", answer.head);
    assert_eq!(
        answer.header("sec-websocket-version").as_deref(),
        Some("13")
    );
    // A key that is not 16 bytes of base64: 400.
    let answer = raw_request(gw.addr, &upgrade("c2hvcnQ=", "13")).await;
    assert_eq!(answer.status, 400, "{}", answer.head);
    // Too many headers: hyper refuses the head with 431.
    let many: String = (0..80).map(|i| format!("X-Filler-{i}: x\r\n")).collect();
    let answer = raw_upgrade(gw.addr, "/ws", &many).await;
    assert_eq!(answer.status, 431, "{}", answer.head);
    // No route at the path: 404.
    let answer = raw_upgrade(gw.addr, "/nowhere", "").await;
    assert_eq!(answer.status, 404);
    let metrics = get(gw.addr, "/metrics").await.body;
    assert!(
        metrics.contains("tether_handshakes_refused_total{reason=\"version\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tether_handshakes_refused_total{reason=\"bad_request\"} 1\n"),
        "{metrics}"
    );
    gw.stop().await;
}
