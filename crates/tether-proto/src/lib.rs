//! Sans-I/O WebSocket protocol engine (RFC 6455, RFC 7692).
//!
//! `tether-proto` knows bytes, time given to it, and configuration; it never touches a socket,
//! a clock or a random number generator. The caller (the `tether` crate on tokio, a test, a
//! fuzzer) reads and writes the transport and feeds the engine:
//!
//! ```text
//!            bytes read                          events (messages, ping, pong, close)
//!  socket ──────────────▶ Connection::receive ─▶ Connection::poll_event ──▶ application
//!                                │
//!  socket ◀── io_slices ◀── outbound queue ◀── Connection::send / close ◀── application
//!             advance_transmit      ▲
//!                                   └── automatic pong and close replies
//! ```
//!
//! A large frame can skip the copy out of the caller's read buffer: while
//! [`Connection::direct_read_len`] says so, read straight into the engine's own buffer with
//! [`Connection::receive_into`] (the `tether` driver does).
//!
//! The opening handshake ([`handshake`]) runs first over the same transport: the server parses
//! the request ([`handshake::parse_request`]) and answers it ([`handshake::accept`]); the
//! client builds its request ([`handshake::client_request`]) and checks the answer. The
//! negotiated permessage-deflate parameters then go to [`Connection::server`] or
//! [`Connection::client`].
//!
//! A complete drive loop, client and server in memory:
//!
//! ```
//! use std::io::IoSlice;
//! use tether_proto::handshake::{self, AcceptOptions, ClientRequest};
//! use tether_proto::{Config, Connection, Message};
//!
//! let config = Config::default();
//! // Opening handshake. The key and the masking keys come from the caller's RNG.
//! let request = ClientRequest::new("example.com", "/chat");
//! let (request_bytes, pending) = handshake::client_request(&request, &config, [7; 16]);
//! let (parsed, _) = handshake::parse_request(&request_bytes, &config).unwrap().unwrap();
//! let accepted = handshake::accept(&parsed, &config, &AcceptOptions::default()).unwrap();
//! let (response, _) = pending.parse_response(&accepted.response, &config).unwrap().unwrap();
//!
//! let mut server = Connection::server(config.clone(), accepted.deflate);
//! let mut client = Connection::client(config, response.deflate, || [1, 2, 3, 4]);
//!
//! // Moves what `from` queued to `to`, as a socket would.
//! fn transfer(from: &mut Connection, to: &mut Connection) {
//!     let mut slices = [IoSlice::new(&[]); 16];
//!     let n = from.io_slices(&mut slices);
//!     let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
//!     from.advance_transmit(bytes.len());
//!     to.receive(&bytes);
//! }
//!
//! client.send(Message::text("Hello")).unwrap();
//! transfer(&mut client, &mut server);
//! // Echo every message back; the engine answers pings and closes by itself.
//! while let Some(event) = server.poll_event() {
//!     let msg = event.expect("the client follows the protocol");
//!     assert_eq!(msg, Message::text("Hello"));
//!     server.send(msg).unwrap();
//! }
//! transfer(&mut server, &mut client);
//! assert_eq!(client.poll_event(), Some(Ok(Message::text("Hello"))));
//! ```
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
pub use connection::{
    CloseFrameRef, Connection, DIRECT_READ_MAX, DIRECT_READ_MIN, DataFrame, DataKind, Incoming,
    MaskKeys, MessageRef, PreparedMessage, SHARE_THRESHOLD, SendOptions, Sender, State,
};
pub use error::{ProtocolError, SendError};
pub use message::{Message, Utf8Bytes};
pub use role::Role;
