//! Async WebSocket client and server on tokio, built on the [`tether_proto`] engine.
//!
//! A [`WebSocket`] runs over any `AsyncRead + AsyncWrite` (TCP, TLS, an upgraded hyper
//! connection, an in-memory duplex). It is a `Stream` of [`Message`]s from the peer and a
//! `Sink` for messages to it.
//!
//! ```no_run
//! use futures_util::{SinkExt, StreamExt};
//! use tether::Message;
//!
//! async fn client() -> Result<(), tether::Error> {
//!     let (mut ws, _response) = tether::connect("ws://127.0.0.1:9001/").await?;
//!     ws.send(Message::text("hello")).await?;
//!     while let Some(msg) = ws.next().await {
//!         println!("{:?}", msg?);
//!     }
//!     Ok(())
//! }
//!
//! async fn serve(tcp: tokio::net::TcpStream) -> Result<(), tether::Error> {
//!     let mut ws = tether::accept(tcp).await?;
//!     while let Some(Ok(msg)) = ws.next().await {
//!         if msg.is_data() {
//!             ws.feed(msg).await?; // queued: all replies to one read leave in one write
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! - [`accept_with`] lets the application see the request, choose subprotocols, refuse with a
//!   status or add response headers; [`upgrade::upgrade`] does the same for a hyper 1 request.
//! - [`ClientBuilder`] sets subprotocols, headers, limits, compression and TLS roots; a
//!   refused handshake comes back as [`Error::HandshakeRefused`] with the status and body.
//! - [`trace::Traced`] shows the handshake and every frame header on the wire.
//! - Limits live in [`Config`]; sending waits while half of `max_outbound_buffer` is queued,
//!   and reading stops past the whole of it.
#![forbid(unsafe_code)]

pub mod client;
mod driver;
mod error;
mod keepalive;
mod refused;
pub mod server;
mod split;
mod stream;
#[cfg(feature = "tls")]
pub mod tls;
pub mod trace;
#[cfg(feature = "hyper")]
pub mod upgrade;
mod websocket;

pub use client::{ClientBuilder, connect};
pub use error::Error;
pub use refused::{MAX_REFUSED_BODY, RefusedHandshake};
pub use server::{Rejection, accept, accept_with};
pub use split::{ReadHalf, WriteHalf};
pub use stream::MaybeTlsStream;
pub use websocket::{ForEachRef, Negotiated, WebSocket};

pub use tether_proto::deflate::DeflateConfig;
pub use tether_proto::handshake::{AcceptOptions, Request, Response};
pub use tether_proto::{
    CloseCode, CloseFrame, CloseFrameRef, Config, DataFrame, DataKind, Incoming, Message,
    MessageRef, PreparedMessage, SHARE_THRESHOLD, SendError, SendOptions, Sender, State, Utf8Bytes,
};
