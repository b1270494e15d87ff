//! Graceful shutdown: every WebSocket client gets close 1001, `run` returns, and nothing
//! accepts connections afterwards.

mod common;

use std::time::{Duration, Instant};

use common::{close_code, config, connect, start};

#[tokio::test]
async fn every_client_gets_1001_and_run_returns() {
    let gw = start(config()).await;
    let addr = gw.addr;
    let mut clients = vec![
        connect(addr, "/echo", None).await,
        connect(addr, "/echo", None).await,
        connect(addr, "/ws", Some("tether.pubsub.v1")).await,
        connect(addr, "/ws", Some("tether.pubsub.v1")).await,
    ];
    // Each client reads until its close frame, as a real client would.
    let readers: Vec<_> = clients
        .drain(..)
        .map(|mut ws| tokio::spawn(async move { close_code(&mut ws).await }))
        .collect();
    let started = Instant::now();
    gw.stop().await;
    // Every client answered the close at once: no waiting for the shutdown deadline.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    for reader in readers {
        assert_eq!(reader.await.unwrap(), Some(1001));
    }
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_client_that_never_answers_is_dropped_at_the_deadline() {
    let gw = start(tether_gateway::GatewayConfig {
        shutdown_timeout: Duration::from_millis(500),
        ..config()
    })
    .await;
    // Connected, but never reads: it cannot answer the close frame.
    let _stuck = connect(gw.addr, "/echo", None).await;
    let started = Instant::now();
    gw.stop().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
}
