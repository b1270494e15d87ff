//! Sans-I/O WebSocket protocol engine (RFC 6455, RFC 7692).
#![forbid(unsafe_code)]

pub mod config;
pub mod deflate;
pub mod handshake;
pub mod role;

pub use config::{Config, ConfigError};
pub use role::Role;
