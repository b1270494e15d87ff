//! `tether serve` reloads its configuration on SIGHUP: the config file (and the flags and
//! environment, as at start) is read again and handed to the gateway's
//! [`tether_gateway::Reloader`], which applies the routes and the TLS certificate without
//! closing a listener or a connection. A file that does not load leaves the running
//! configuration in force; either way stderr says what happened.

use tether_gateway::{GatewayConfig, Reloader};

/// SIGHUP, caught from now on (before `tether serve` says it listens, so a SIGHUP sent right
/// after never meets the default action, which would end the process).
pub(crate) struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    /// Starts catching SIGHUP; must run inside the runtime.
    pub(crate) fn catch() -> Hangup {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .map_err(|e| eprintln!("tether: cannot catch SIGHUP, config reload is off: {e}"))
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    /// Reloads on every SIGHUP until the runtime stops; `load` reads the configuration again.
    pub(crate) async fn reload_on_each(
        self,
        reloader: Reloader,
        load: impl Fn() -> Result<GatewayConfig, String>,
    ) {
        #[cfg(unix)]
        if let Some(mut signal) = self.signal {
            while signal.recv().await.is_some() {
                reload(&reloader, &load);
            }
        }
        #[cfg(not(unix))]
        let _ = (reloader, load);
        std::future::pending::<()>().await;
    }
}

fn reload(reloader: &Reloader, load: &impl Fn() -> Result<GatewayConfig, String>) {
    let outcome = load().and_then(|config| reloader.reload(config).map_err(|e| e.to_string()));
    match outcome {
        Ok(done) => {
            let tls = if done.tls {
                ", TLS certificate reread"
            } else {
                ""
            };
            eprintln!("tether: config reloaded: {} routes{tls}", done.routes);
            if !done.restart_needed.is_empty() {
                eprintln!(
                    "tether: changed but not applied until a restart: {}",
                    done.restart_needed.join(", ")
                );
            }
        }
        Err(message) => {
            eprintln!("tether: config not reloaded, the running config stays: {message}");
        }
    }
}
