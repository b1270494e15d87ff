//! Accepting connections, and backing off when accepting fails.
//!
//! `accept(2)` fails when the process is out of file descriptors (`EMFILE`, `ENFILE`) or
//! kernel memory (`ENOBUFS`, `ENOMEM`). The connection stays in the listen backlog, so the
//! listener is still readable and an immediate retry fails again: without a pause the accept
//! loop would spin on a CPU until a descriptor is freed. [`Backoff`] pauses 10 ms after the
//! first failure, doubling up to 1 s while failures go on, and starts again at 10 ms after an
//! accept succeeds. Every failure is counted (`tether_accept_errors_total`); the log says
//! so once per series of failures, and again when accepting works again.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

/// The pause after the first failed accept.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between retries.
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// The pause before the next accept of one listener: doubling while accepts fail.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    /// Failures since the last accepted connection.
    failures: u32,
}

impl Backoff {
    /// Counts a failure; returns how long to wait before trying again.
    fn failed(&mut self) -> Duration {
        let pause = FIRST_PAUSE
            .saturating_mul(1 << self.failures.min(16))
            .min(LONGEST_PAUSE);
        self.failures = self.failures.saturating_add(1);
        pause
    }

    /// A connection was accepted: the next failure waits the shortest pause again. Returns
    /// how many accepts had failed before it.
    fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }
}

/// The next connection of `listener`; never, without one. Failures are counted in
/// `metrics` and retried after `backoff`'s pause.
pub(crate) async fn accept(
    listener: Option<&TcpListener>,
    backoff: &mut Backoff,
    metrics: &Metrics,
) -> (TcpStream, SocketAddr) {
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    loop {
        match listener.accept().await {
            Ok(accepted) => {
                let failed = backoff.succeeded();
                if failed > 0 {
                    tracing::warn!("accepting again after {failed} failed accepts");
                }
                return accepted;
            }
            Err(e) => {
                metrics.accept_error();
                let first = backoff.failures == 0;
                let pause = backoff.failed();
                if first {
                    tracing::warn!("accept failed: {e}; retrying with backoff (up to 1 s)");
                } else {
                    tracing::debug!("accept failed again: {e}; next try in {pause:?}");
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_second_and_reset_on_success() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u64> = (0..10)
            .map(|_| backoff.failed().as_millis() as u64)
            .collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        for _ in 0..100 {
            assert_eq!(backoff.failed(), LONGEST_PAUSE);
        }
        assert_eq!(backoff.succeeded(), 110);
        assert_eq!(backoff.failed(), FIRST_PAUSE);
    }
}
