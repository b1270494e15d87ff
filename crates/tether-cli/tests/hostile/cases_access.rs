//! Who may get in: path traversal out of the static root, bridge tokens and the allow-list,
//! JWTs that are unsigned, expired or signed with another key, a forbidden Origin, and a
//! publish outside the token's permissions.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, Message};

use crate::server::{GOOD_ORIGIN, SECRET_TEXT, expired_jwt, good_jwt, jwt_with, unsigned_jwt};
use crate::table::Outcome;
use crate::wire::{PATIENCE, exchange, upgrade_request};

async fn static_case(addr: SocketAddr, target: &str, expected: &str) -> Outcome {
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let reply = exchange(addr, request.as_bytes()).await;
    let actual = match &reply {
        None => "closed without answer".to_string(),
        Some(r) if r.text().contains(SECRET_TEXT) => format!("{} LEAKED THE SECRET", r.status),
        Some(r) => r.status.to_string(),
    };
    let detail = reply.map(|r| r.text()).unwrap_or_default();
    Outcome::new("static", format!("GET {target}"), expected, actual, detail)
}

async fn upgrade_case(
    addr: SocketAddr,
    name: &str,
    target: &str,
    extra: &str,
    expected: &str,
) -> Outcome {
    let reply = exchange(addr, upgrade_request(target, extra).as_bytes()).await;
    // The status, and the body when there is one: the reason.
    let actual = reply
        .as_ref()
        .map_or("closed without answer".into(), |r| match r.text().trim() {
            "" => r.status.to_string(),
            body => format!("{}: {body}", r.status),
        });
    let detail = reply.map(|r| r.text()).unwrap_or_default();
    Outcome::new("access", name, expected, actual, detail)
}

pub async fn run(addr: SocketAddr) -> Vec<Outcome> {
    let mut out = Vec::new();
    out.push(static_case(addr, "/index.html", "200").await);
    for (target, expected) in [
        ("/../secret.txt", "400"),
        ("/%2e%2e/secret.txt", "400"),
        ("/.%2e/secret.txt", "400"),
        ("/%2e%2e%2fsecret.txt", "400"),
        ("/..%2fsecret.txt", "400"),
        ("/..\\secret.txt", "400"),
        ("/..%5csecret.txt", "400"),
        ("/index.html%00.txt", "400"),
        ("/public/../../secret.txt", "400"),
        ("http://127.0.0.1/../secret.txt", "400"),
    ] {
        out.push(static_case(addr, target, expected).await);
    }

    let binary = "Sec-WebSocket-Protocol: binary\r\n";
    out.push(
        upgrade_case(
            addr,
            "bridge token for a target outside the allow-list",
            "/vnc/outside",
            binary,
            "403: the bridge's target is not in the route's allow list",
        )
        .await,
    );
    out.push(
        upgrade_case(
            addr,
            "unknown bridge token",
            "/vnc/no-such-token",
            binary,
            "403: unknown or invalid bridge token",
        )
        .await,
    );
    out.push(upgrade_case(addr, "bridge without a token", "/vnc", binary, "401: this bridge needs a token: /path/<token>, ?token=<token> or Authorization: Bearer").await);
    out.push(
        upgrade_case(
            addr,
            "allowed bridge token (control)",
            "/vnc/good",
            binary,
            "101",
        )
        .await,
    );

    let echo = |token: &str| format!("/echo?token={token}");
    out.push(
        upgrade_case(
            addr,
            "no token",
            "/echo",
            "",
            "401: a bearer token is required (Authorization: Bearer <token>, or ?token=<token>)",
        )
        .await,
    );
    out.push(
        upgrade_case(
            addr,
            "JWT with alg none",
            &echo(&unsigned_jwt()),
            "",
            "401: invalid token: JWT algorithm \"none\" is not accepted",
        )
        .await,
    );
    out.push(
        upgrade_case(
            addr,
            "expired JWT",
            &echo(&expired_jwt()),
            "",
            "401: invalid token: the token has expired",
        )
        .await,
    );
    let wrong = jwt_with(
        "another-secret-of-at-least-32-bytes!",
        serde_json::json!({"exp": 4_000_000_000u64}),
    );
    out.push(
        upgrade_case(
            addr,
            "JWT signed with the wrong key",
            &echo(&wrong),
            "",
            "401: invalid token: bad signature",
        )
        .await,
    );
    let bearer = format!("Authorization: Bearer {}\r\n", good_jwt());
    out.push(
        upgrade_case(
            addr,
            "forbidden Origin",
            "/echo",
            &format!("{bearer}Origin: https://evil.example\r\n"),
            "403: origin not allowed (RFC 6455 §10.2)",
        )
        .await,
    );
    out.push(
        upgrade_case(
            addr,
            "allowed Origin (control)",
            "/echo",
            &format!("{bearer}Origin: {GOOD_ORIGIN}\r\n"),
            "101",
        )
        .await,
    );
    out.push(forbidden_publish(addr).await);
    out
}

/// A publish to a topic outside the token's `public.*` is refused with its reason, and the
/// connection goes on.
async fn forbidden_publish(addr: SocketAddr) -> Outcome {
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/ws?token={}", good_jwt()))
        .subprotocol("tether.pubsub.v1")
        .connect()
        .await
        .unwrap();
    let request = r#"{"type":"publish","id":1,"topic":"secret.plans","data":1}"#;
    ws.send(Message::text(request)).await.unwrap();
    let reply = match tokio::time::timeout(PATIENCE, ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => text.to_string(),
        other => format!("{other:?}"),
    };
    let actual = match serde_json::from_str::<serde_json::Value>(&reply) {
        Ok(v) => format!(
            "{} {}: {}",
            v["type"].as_str().unwrap_or("?"),
            v["code"].as_str().unwrap_or("?"),
            v["reason"].as_str().unwrap_or("?")
        ),
        Err(_) => reply.clone(),
    };
    let _ = ws.close(None).await;
    Outcome::new(
        "access",
        "publish to secret.plans with a public.* token",
        "error forbidden: not allowed to publish to \"secret.plans\"",
        actual,
        reply,
    )
}
