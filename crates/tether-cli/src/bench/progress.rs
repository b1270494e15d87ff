//! The progress line on stderr, once a second while a run goes: `\r`-rewritten on a
//! terminal, one line per second otherwise, nothing with `--json` when stderr is no terminal.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::recorder::Totals;

/// The running progress line; cleared when finished.
#[derive(Debug)]
pub struct Progress {
    task: Option<JoinHandle<()>>,
    terminal: bool,
}

impl Progress {
    /// Starts printing `label` and the counts of `totals` once a second.
    pub fn start(label: &'static str, totals: Arc<Totals>, json: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        if json && !terminal {
            return Progress {
                task: None,
                terminal,
            };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut last_count = 0;
            loop {
                tick.tick().await;
                let count = totals.messages.load(Ordering::Relaxed);
                let line = format!(
                    "[{label}] {:>5.1} s  {count} {}  {}/s  errors {}  drops {}",
                    start.elapsed().as_secs_f64(),
                    if Instant::now() < totals.measure_from {
                        "(warming up)"
                    } else {
                        "messages"
                    },
                    count - last_count,
                    totals.errors.load(Ordering::Relaxed),
                    totals.drops.load(Ordering::Relaxed),
                );
                last_count = count;
                let mut err = std::io::stderr().lock();
                let _ = if terminal {
                    write!(err, "\r\x1b[2K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
        });
        Progress {
            task: Some(task),
            terminal,
        }
    }

    /// Stops the line (and clears it on a terminal).
    pub fn finish(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            if self.terminal {
                eprint!("\r\x1b[2K");
            }
        }
    }
}
