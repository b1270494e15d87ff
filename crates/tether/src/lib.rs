//! Async WebSocket client and server on tokio, built on the [`tether_proto`] engine.
#![forbid(unsafe_code)]

pub mod client;
mod driver;
mod error;
mod keepalive;
pub mod server;
mod split;
mod stream;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "hyper")]
pub mod upgrade;
mod websocket;

pub use client::{ClientBuilder, connect};
pub use error::Error;
pub use server::{Rejection, accept, accept_with};
pub use split::{ReadHalf, WriteHalf};
pub use stream::MaybeTlsStream;
pub use websocket::{Negotiated, WebSocket};

pub use tether_proto::deflate::DeflateConfig;
pub use tether_proto::handshake::{AcceptOptions, Request, Response};
pub use tether_proto::{
    CloseCode, CloseFrame, Config, Message, PreparedMessage, SendOptions, State, Utf8Bytes,
};
