//! The Tether gateway: one port serving pages, topic publish/subscribe over WebSocket, an echo
//! route, WebSocket-to-TCP bridges, an HTTP API (publish, topics, health, metrics), with TLS,
//! auth and limits.
//!
//! ```no_run
//! use tether_gateway::{Gateway, GatewayConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = GatewayConfig::load("tether.toml".as_ref())?;
//! let gateway = Gateway::bind(config).await?;
//! // Publish from the program itself, beside the clients and `POST /api/publish/{topic}`:
//! gateway
//!     .hub()
//!     .publish("scores.final", r#"{"home": 2, "away": 1}"#.into(), None)
//!     .await?;
//! gateway.run(async { tokio::signal::ctrl_c().await.unwrap() }).await;
//! # Ok(()) }
//! ```
//!
//! How a request travels:
//!
//! ```text
//! listener ──> connection (TLS?, hyper HTTP/1.1, head timeout) ──> routes
//!                 /healthz /metrics /api/* ──> api ──> hub.publish / hub.topics
//!                 upgrade to a route path ──> websocket: handshake, Origin, token, limits
//!                                               ──> pubsub: hub.serve | echo
//!                                               ──> bridge: TCP (TLS?) to a backend
//!                 anything else ──> static_files (built-in pages or a directory)
//! ```
//!
//! Every task is tracked; on shutdown the gateway stops accepting, WebSocket sessions send close
//! 1001 and finish their closing handshakes, and whatever is left at the deadline is cancelled.
#![forbid(unsafe_code)]

mod accept;
mod api;
mod auth;
mod bridge;
pub mod config;
mod connection;
mod demo;
mod directory;
mod echo;
pub mod hub;
pub mod inspect;
mod limiter;
mod metered;
mod metrics;
mod pages;
pub mod protocol;
mod proxy;
pub mod reload;
mod request;
mod response;
mod routes;
mod server;
mod session;
mod shutdown;
mod static_files;
pub mod tls;
mod websocket;

pub use config::{ConfigError, GatewayConfig, Overrides};
pub use reload::{Reloaded, Reloader};
pub use server::{Error, Gateway};
