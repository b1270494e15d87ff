//! A well-behaved client doing echo round trips through every attack phase, timing each.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, Message};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::good_jwt;
use crate::wire::PATIENCE;

/// Time between the probe's round trips.
const INTERVAL: Duration = Duration::from_millis(20);

/// The running probe; [`Probe::finish`] stops it and returns every round trip's latency.
pub struct Probe {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<Vec<Duration>, String>>,
}

impl Probe {
    pub async fn start(addr: SocketAddr) -> Probe {
        let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/echo?token={}", good_jwt()))
            .connect()
            .await
            .unwrap();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut tick = tokio::time::interval(INTERVAL);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tick.tick() => {}
                }
                n += 1;
                let text = format!("probe {n}");
                let started = Instant::now();
                ws.send(Message::text(text.clone()))
                    .await
                    .map_err(|e| format!("send {n}: {e}"))?;
                match tokio::time::timeout(PATIENCE, ws.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text => {}
                    other => return Err(format!("round trip {n}: {other:?}")),
                }
                latencies.push(started.elapsed());
            }
            let _ = ws.close(None).await;
            Ok(latencies)
        });
        Probe { stop, task }
    }

    pub async fn finish(self) -> Result<Vec<Duration>, String> {
        let _ = self.stop.send(true);
        self.task.await.unwrap()
    }
}

/// The `q` quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at]
}
