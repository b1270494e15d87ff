//! Sans-I/O WebSocket protocol engine (RFC 6455, RFC 7692).
#![forbid(unsafe_code)]

pub mod close;
pub mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod message;
mod outbound;
pub mod role;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use config::{Config, ConfigError};
pub use connection::{Connection, MaskKeys, PreparedMessage, SendOptions, State};
pub use error::{ProtocolError, SendError};
pub use message::{Message, Utf8Bytes};
pub use role::Role;
