//! Reloading the configuration while serving (`tether serve` does it on SIGHUP).
//!
//! What a reload applies: the `routes` (new, changed and removed ones), `allowed_origins`,
//! and the TLS certificate and key (`tls.cert`, `tls.key`, read again even when the paths are
//! the same). The new routes and the new TLS acceptor replace the old ones atomically: each
//! request looks the route table up once, each new connection takes the acceptor once.
//! Connections already open keep what they were accepted with: a WebSocket on a route that
//! was changed or removed goes on with its old settings until it closes; a TLS connection
//! keeps its session. The listeners stay open, so no connection is refused during a reload.
//!
//! What needs a restart: `listen`, `tls.listen`, adding or removing `[tls]`, `tls.only`,
//! `limits`, `auth`, `hub`, `static`, `demo` and `shutdown_timeout`. A reload whose file
//! changes any of them applies the rest and names them in [`Reloaded::restart_needed`].
//!
//! A config that does not load or validate (or whose certificate does not) changes nothing:
//! the error is returned and the running configuration stays in force.

use std::sync::{Arc, Mutex, RwLock};

use tokio_rustls::TlsAcceptor;

use crate::bridge::BridgeRoute;
use crate::config::{ConfigError, GatewayConfig, RouteKind};
use crate::metrics::Metrics;
use crate::server::{Error, State};
use crate::websocket::Route;
use crate::{demo, pages, tls};

/// A value that readers take a snapshot of and a reload replaces whole.
pub(crate) struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub(crate) fn new(value: T) -> Self {
        Live(RwLock::new(Arc::new(value)))
    }

    /// The current value; it stays valid (and unchanged) for as long as it is held.
    pub(crate) fn load(&self) -> Arc<T> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn store(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(value);
    }
}

/// The topic policies the gateway adds to what the config says, at start and on reload alike
/// (so comparing two configs' `hub` compares what runs).
pub(crate) fn add_builtin_policies(config: &mut GatewayConfig) {
    if config.demo {
        demo::add_topic_policies(&mut config.hub);
    }
    if config.static_files.root.is_none() {
        pages::add_topic_policies(&mut config.hub);
    }
}

/// The routes of `config`, with the gateway-wide engine limits of `state_limits`. A bridge
/// route whose path `metrics` already counts keeps its counters. Nothing is registered yet:
/// [`register_bridges`] does that once the whole configuration is known to be good.
pub(crate) fn build_routes(
    config: &GatewayConfig,
    connection_config: &tether::Config,
    metrics: &Metrics,
) -> Result<Vec<Route>, Error> {
    let mut routes = Vec::with_capacity(config.routes.len());
    for (i, r) in config.routes.iter().enumerate() {
        let mut route = Route::new(r, config.allowed_origins.as_ref(), connection_config)
            .map_err(|(key, problem)| ConfigError::new(format!("routes[{i}].{key}"), problem))?;
        if r.kind == RouteKind::Bridge {
            let mut bridge = BridgeRoute::new(r, &format!("routes[{i}]"))?;
            if let Some(counting) = metrics.bridge(&r.path) {
                bridge.metrics = counting;
            }
            route.bridge = Some(Arc::new(bridge));
        }
        routes.push(route);
    }
    Ok(routes)
}

/// Makes `/metrics` render the counters of exactly these routes' bridges.
pub(crate) fn register_bridges(metrics: &Metrics, routes: &[Route]) {
    metrics.set_bridges(
        routes
            .iter()
            .filter_map(|r| r.bridge.as_ref().map(|b| b.metrics.clone()))
            .collect(),
    );
}

/// What a successful reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reloaded {
    /// The number of WebSocket routes now served.
    pub routes: usize,
    /// Whether the TLS certificate and key were read again.
    pub tls: bool,
    /// The keys that changed in the file but apply only after a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Applies new configurations to a running [`crate::Gateway`] (see the module docs of
/// what applies). From [`crate::Gateway::reloader`]; cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    pub(crate) state: Arc<State>,
    /// The configuration in force (as started, with the reloads applied).
    pub(crate) running: Arc<Mutex<GatewayConfig>>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

impl Reloader {
    /// Validates `config` and applies its routes and TLS certificate; on any error nothing
    /// changes and the running configuration stays in force.
    pub fn reload(&self, mut config: GatewayConfig) -> Result<Reloaded, Error> {
        config.validate()?;
        add_builtin_policies(&mut config);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let state = &self.state;
        let routes = build_routes(&config, &state.limits.connection_config(), &state.metrics)?;
        let acceptor = match (&running.tls, &config.tls) {
            (Some(_), Some(new)) => Some(TlsAcceptor::from(tls::server_config(new)?)),
            _ => None,
        };
        let restart_needed = restart_needed(&running, &config);
        // Everything is built: swap.
        register_bridges(&state.metrics, &routes);
        let count = routes.len();
        state.routes.store(routes);
        let tls = acceptor.is_some();
        if let Some(acceptor) = acceptor {
            state.tls.store(Some(acceptor));
        }
        running.routes = config.routes;
        running.allowed_origins = config.allowed_origins;
        if let (Some(old), Some(new)) = (running.tls.as_mut(), config.tls) {
            old.cert = new.cert;
            old.key = new.key;
        }
        Ok(Reloaded {
            routes: count,
            tls,
            restart_needed,
        })
    }
}

/// The restart-only keys whose values differ between `running` and `new`.
fn restart_needed(running: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    let tls_listen = |c: &GatewayConfig| c.tls.as_ref().map(|t| (t.listen.clone(), t.only));
    let tls_only = |c: &GatewayConfig| c.tls.as_ref().is_some_and(|t| t.only);
    let checks: [(&'static str, bool); 9] = [
        ("listen", running.listen != new.listen && !tls_only(new)),
        ("tls", running.tls.is_some() != new.tls.is_some()),
        (
            "tls.listen",
            running.tls.is_some() && new.tls.is_some() && tls_listen(running) != tls_listen(new),
        ),
        ("limits", running.limits != new.limits),
        ("auth", running.auth != new.auth),
        ("hub", running.hub != new.hub),
        ("static", running.static_files != new.static_files),
        ("demo", running.demo != new.demo),
        (
            "shutdown_timeout",
            running.shutdown_timeout != new.shutdown_timeout,
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_keys_that_need_a_restart() {
        let running = GatewayConfig::default();
        let mut new = running.clone();
        assert!(restart_needed(&running, &new).is_empty());
        new.routes.pop();
        new.allowed_origins = Some(vec!["https://example.com".into()]);
        assert!(restart_needed(&running, &new).is_empty(), "routes reload");
        new.listen = "127.0.0.1:9".into();
        new.demo = false;
        new.limits.max_connections += 1;
        assert_eq!(restart_needed(&running, &new), ["listen", "limits", "demo"]);
    }

    #[test]
    fn a_snapshot_outlives_a_store() {
        let live = Live::new(vec![1]);
        let before = live.load();
        live.store(vec![2, 3]);
        assert_eq!(*before, [1]);
        assert_eq!(*live.load(), [2, 3]);
    }
}
