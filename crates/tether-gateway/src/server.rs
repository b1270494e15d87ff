//! The gateway: listeners, the accept loop, and graceful shutdown.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio_rustls::TlsAcceptor;

use crate::accept::{Backoff, accept};
use crate::auth::Authenticator;
use crate::config::{ConfigError, GatewayConfig, Limits};
use crate::hub::Hub;
use crate::limiter::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::reload::{Live, Reloader};
use crate::shutdown::Tasks;
use crate::static_files::StaticFiles;
use crate::websocket::Route;
use crate::{connection, demo, reload, tls};

/// Why the gateway cannot start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid, or a file it names cannot be used.
    Config(ConfigError),
    /// A listen address cannot be bound.
    Listen {
        /// The config key of the address (`listen`, `tls.listen`).
        key: &'static str,
        /// The address as configured.
        address: String,
        /// Why binding failed.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Listen {
                key,
                address,
                source,
            } => write!(f, "{key}: cannot listen on {address}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::Listen { source, .. } => Some(source),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

/// What every connection task shares.
pub(crate) struct State {
    pub(crate) hub: Arc<Hub>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) auth: Authenticator,
    /// The WebSocket routes; a reload replaces them ([`crate::reload`]).
    pub(crate) routes: Live<Vec<Route>>,
    /// The TLS listener's acceptor (certificate and key); a reload replaces it.
    pub(crate) tls: Live<Option<TlsAcceptor>>,
    pub(crate) statics: StaticFiles,
    pub(crate) limiter: Arc<ConnectionLimiter>,
    /// Transport connections not (yet) upgraded, per client: `limits.max_pending_per_ip`.
    pub(crate) pending: Arc<ConnectionLimiter>,
    pub(crate) tasks: Tasks,
    pub(crate) limits: Limits,
}

/// A gateway whose listeners are bound: HTTP, the WebSocket routes, the API and the pages on
/// one port (and on a TLS port if configured). [`Gateway::run`] serves until shutdown.
///
/// ```no_run
/// # async fn example() -> Result<(), tether_gateway::Error> {
/// let gateway = tether_gateway::Gateway::bind(Default::default()).await?;
/// println!("open http://{}/", gateway.local_addr().unwrap());
/// gateway.run(async { tokio::signal::ctrl_c().await.unwrap() }).await;
/// # Ok(()) }
/// ```
pub struct Gateway {
    state: Arc<State>,
    plain: Option<TcpListener>,
    tls: Option<TcpListener>,
    running: Arc<Mutex<GatewayConfig>>,
    demo: bool,
    shutdown_timeout: Duration,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addr", &self.local_addr())
            .field("tls_local_addr", &self.tls_local_addr())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Validates `config`, loads its keys and certificates, and binds its listeners.
    pub async fn bind(mut config: GatewayConfig) -> Result<Gateway, Error> {
        config.validate()?;
        reload::add_builtin_policies(&mut config);
        let auth = Authenticator::new(&config.auth)?;
        let statics = StaticFiles::new(&config.static_files)?;
        let tls_only = config.tls.as_ref().is_some_and(|t| t.only);
        let (tls, acceptor) = match &config.tls {
            Some(tls_config) => {
                let acceptor = TlsAcceptor::from(tls::server_config(tls_config)?);
                let listener = listen(
                    "tls.listen",
                    &tls_config.listen,
                    config.limits.listen_backlog,
                )
                .await?;
                (Some(listener), Some(acceptor))
            }
            None => (None, None),
        };
        let plain = match tls_only {
            true => None,
            false => Some(listen("listen", &config.listen, config.limits.listen_backlog).await?),
        };
        let limits = config.limits.clone();
        let connection_config = limits.connection_config();
        let metrics = Arc::new(Metrics::new());
        let routes = reload::build_routes(&config, &connection_config, &metrics)?;
        reload::register_bridges(&metrics, &routes);
        let state = State {
            hub: Hub::from_config(config.hub.clone())
                .map_err(|(key, problem)| ConfigError::new(key, problem))?,
            metrics,
            auth,
            routes: Live::new(routes),
            tls: Live::new(acceptor),
            statics,
            limiter: ConnectionLimiter::new(limits.max_connections, limits.max_connections_per_ip),
            // The total is bounded by the open-files limit already.
            pending: ConnectionLimiter::new(usize::MAX, limits.max_pending_per_ip),
            tasks: Tasks::new(),
            limits,
        };
        Ok(Gateway {
            state: Arc::new(state),
            plain,
            tls,
            demo: config.demo,
            shutdown_timeout: config.shutdown_timeout,
            running: Arc::new(Mutex::new(config)),
        })
    }

    /// A handle that applies new configurations while the gateway runs: routes and TLS
    /// certificates, without closing a listener or a connection ([`crate::reload`]).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            state: self.state.clone(),
            running: self.running.clone(),
        }
    }

    /// The plain (`http`/`ws`) listener's address, unless TLS only.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The TLS (`https`/`wss`) listener's address, if configured.
    pub fn tls_local_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The pub/sub hub, to publish from the embedding program.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.state.hub
    }

    /// Serves until `shutdown` completes, then stops accepting, sends close 1001 to every
    /// WebSocket client, lets HTTP requests in flight finish, and waits up to
    /// `shutdown_timeout` for all of it before cancelling what is left.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Gateway {
            state,
            plain,
            tls,
            demo,
            shutdown_timeout,
            running: _,
        } = self;
        if demo {
            state
                .tasks
                .spawn(demo::run(state.hub.clone(), state.tasks.shutdown_signal()));
        }
        tokio::pin!(shutdown);
        let (mut plain_backoff, mut tls_backoff) = (Backoff::default(), Backoff::default());
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                (tcp, peer) = accept(plain.as_ref(), &mut plain_backoff, &state.metrics) => {
                    state.tasks.spawn(connection::serve(state.clone(), tcp, peer, None));
                }
                (tcp, peer) = accept(tls.as_ref(), &mut tls_backoff, &state.metrics) => {
                    // The acceptor in force now: a reload changes it for new connections.
                    let acceptor = state.tls.load().as_ref().clone();
                    state.tasks.spawn(connection::serve(state.clone(), tcp, peer, acceptor));
                }
            }
        }
        drop(plain);
        drop(tls);
        tracing::info!("shutting down: closing connections (up to {shutdown_timeout:?})");
        let cancelled = state.tasks.drain(shutdown_timeout).await;
        if cancelled > 0 {
            tracing::warn!("{cancelled} connections did not finish in time and were dropped");
        }
    }
}

/// Binds `address` (the first of its resolved addresses that binds) with a listen backlog
/// of `backlog` (`limits.listen_backlog`; tokio's `TcpListener::bind` uses 1024).
async fn listen(key: &'static str, address: &str, backlog: u32) -> Result<TcpListener, Error> {
    let error = |source| Error::Listen {
        key,
        address: address.to_string(),
        source,
    };
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await.map_err(error)? {
        match bind_with_backlog(addr, backlog) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(error(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    })))
}

fn bind_with_backlog(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restarted gateway binds at once, past its old
    // connections in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Opens up to `n` connections to `addr` one after the other (none is accepted by the
    /// listener, so its backlog alone decides) and counts those the kernel completes, up to
    /// the first that does not complete within `within`. One at a time: a SYN that finds
    /// the queue full is dropped, where a burst would get all its SYN-ACKs before any
    /// handshake filled the queue.
    async fn connects_within(addr: SocketAddr, n: usize, within: Duration) -> usize {
        let mut held = Vec::new();
        while held.len() < n {
            match tokio::time::timeout(within, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(tcp)) => held.push(tcp),
                _ => break,
            }
        }
        held.len()
    }

    /// The configured backlog reaches `listen(2)`: with nothing accepting, Linux queues
    /// backlog + 1 connections and drops the next SYN (retransmitted only after 1 s).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_listen_backlog_is_the_configured_one() {
        let small = listen("listen", "127.0.0.1:0", 1).await.unwrap();
        let completed =
            connects_within(small.local_addr().unwrap(), 6, Duration::from_millis(300)).await;
        assert_eq!(completed, 2, "backlog 1 should queue exactly 2 connections");
        let large = listen("listen", "127.0.0.1:0", 64).await.unwrap();
        let completed =
            connects_within(large.local_addr().unwrap(), 32, Duration::from_secs(5)).await;
        assert_eq!(completed, 32);
    }

    #[tokio::test]
    async fn an_address_that_does_not_bind_is_reported_with_its_key() {
        let taken = listen("listen", "127.0.0.1:0", 16).await.unwrap();
        let busy = taken.local_addr().unwrap().to_string();
        match listen("tls.listen", &busy, 16).await {
            Err(Error::Listen { key, address, .. }) => {
                assert_eq!((key, address.as_str()), ("tls.listen", busy.as_str()));
            }
            other => panic!("expected a listen error, got {other:?}"),
        }
    }
}
