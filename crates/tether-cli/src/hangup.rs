//! `tether serve` reloads its configuration on SIGHUP: the config file (and the flags and
//! environment, as at start) is read again and handed to the gateway's
//! [`tether_gateway::Reloader`], which applies the routes and the TLS certificate without
//! closing a listener or a connection. A file that does not load leaves the running
//! configuration in force; either way stderr says what happened.

use tether_gateway::{GatewayConfig, Reloader};

/// Reloads on every SIGHUP until the runtime stops; `load` reads the configuration again.
pub(crate) async fn reload_on_hangup(
    reloader: Reloader,
    load: impl Fn() -> Result<GatewayConfig, String>,
) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(e) => {
                eprintln!("tether: cannot watch SIGHUP, config reload is off: {e}");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            let outcome =
                load().and_then(|config| reloader.reload(config).map_err(|e| e.to_string()));
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
    }
    #[cfg(not(unix))]
    {
        let _ = (reloader, load);
        std::future::pending::<()>().await;
    }
}
