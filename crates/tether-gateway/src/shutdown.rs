//! Every task the gateway starts, and how they stop: first gracefully (clients get close 1001
//! and finish their closing handshakes), then, after the deadline, by cancellation.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The gateway's tasks: connections, WebSocket sessions, demo feeds.
pub(crate) struct Tasks {
    tracker: TaskTracker,
    graceful: watch::Sender<bool>,
    cancel: CancellationToken,
}

impl Tasks {
    pub(crate) fn new() -> Self {
        Tasks {
            tracker: TaskTracker::new(),
            graceful: watch::channel(false).0,
            cancel: CancellationToken::new(),
        }
    }

    /// Runs `task` until it ends or the drain deadline passes.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = task => {}
                () = cancel.cancelled() => {}
            }
        });
    }

    /// Flips to `true` when shutdown begins: tasks say goodbye to their peers and end.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.graceful.subscribe()
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.graceful.borrow()
    }

    /// Tells every task to finish, waits up to `deadline` for them, then cancels the rest.
    /// Returns how many tasks had to be cancelled.
    pub(crate) async fn drain(&self, deadline: Duration) -> usize {
        self.graceful.send_replace(true);
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let left = self.tracker.len();
        self.cancel.cancel();
        self.tracker.wait().await;
        left
    }
}

/// Waits until `signal` flips to `true`: `true` then, `false` if the gateway is gone.
pub(crate) async fn signalled(signal: &mut watch::Receiver<bool>) -> bool {
    signal.wait_for(|down| *down).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn graceful_tasks_finish_and_stuck_ones_are_cancelled() {
        let tasks = Tasks::new();
        let mut signal = tasks.shutdown_signal();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        tasks.spawn(async move {
            assert!(signalled(&mut signal).await);
            done_tx.send("graceful").unwrap();
        });
        tasks.spawn(std::future::pending());
        assert!(!tasks.is_shutting_down());
        assert_eq!(tasks.drain(Duration::from_secs(5)).await, 1);
        assert!(tasks.is_shutting_down());
        assert_eq!(done_rx.recv().await, Some("graceful"));
    }

    #[tokio::test]
    async fn nothing_to_cancel_when_all_finish() {
        let tasks = Tasks::new();
        tasks.spawn(async {});
        assert_eq!(tasks.drain(Duration::from_secs(5)).await, 0);
    }
}
