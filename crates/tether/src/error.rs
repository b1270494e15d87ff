//! The error type of the async layer.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use tether_proto::handshake::{ClientHandshakeError, HandshakeError};
use tether_proto::{ProtocolError, SendError};

/// Anything that can go wrong on a WebSocket connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The transport failed.
    Io(io::Error),
    /// The peer broke the protocol; a close frame with the matching code was sent.
    Protocol(ProtocolError),
    /// A message could not be queued.
    Send(SendError),
    /// The client's opening handshake was refused; the HTTP error response was sent.
    Handshake(HandshakeError),
    /// The application refused the opening handshake with this status.
    Rejected(u16),
    /// The server's answer to our opening handshake failed a check. (A status other than 101
    /// is [`Error::HandshakeRefused`] instead, with the response's body.)
    ClientHandshake(ClientHandshakeError),
    /// The transport closed before the closing handshake finished (close code 1006).
    AbnormalClosure,
    /// The connection is closed; nothing more can be sent or received.
    ConnectionClosed,
    /// No data from the peer within the idle timeout (keepalive pings went unanswered).
    IdleTimeout,
    /// The URL cannot be used to connect.
    Url(String),
    /// The URL's host name could not be resolved to an address (DNS).
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No TCP connection could be opened to any address of the host.
    Connect {
        /// The host as given in the URL.
        host: String,
        /// The port.
        port: u16,
        /// Every address tried, in order.
        tried: Vec<SocketAddr>,
        /// The error of the last address tried.
        source: io::Error,
    },
    /// The server answered the opening handshake with a status other than 101; its status,
    /// headers and body are here.
    HandshakeRefused(Box<crate::RefusedHandshake>),
    /// TLS setup failed.
    #[cfg(feature = "tls")]
    Tls(rustls::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Send(e) => write!(f, "cannot send: {e}"),
            Error::Handshake(e) => write!(f, "handshake refused: {e}"),
            Error::Rejected(status) => write!(
                f,
                "handshake rejected by the application with status {status}"
            ),
            Error::ClientHandshake(e) => write!(f, "server's handshake response refused: {e}"),
            Error::AbnormalClosure => {
                f.write_str("connection closed without a closing handshake (1006)")
            }
            Error::ConnectionClosed => f.write_str("connection closed"),
            Error::IdleTimeout => f.write_str("no data from the peer within the idle timeout"),
            Error::Url(why) => write!(f, "bad URL: {why}"),
            Error::Resolve { host, source } => write!(f, "cannot resolve {host}: {source}"),
            Error::Connect {
                host,
                port,
                tried,
                source,
            } => {
                write!(f, "cannot connect to {host}:{port}")?;
                let tried: Vec<String> = tried.iter().map(ToString::to_string).collect();
                if !tried.is_empty() && tried != [format!("{host}:{port}")] {
                    write!(f, " (tried {})", tried.join(", "))?;
                }
                write!(f, ": {source}")
            }
            Error::HandshakeRefused(refused) => write!(f, "handshake refused: {refused}"),
            #[cfg(feature = "tls")]
            Error::Tls(e) => write!(f, "TLS error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            Error::Protocol(e) => Some(e),
            Error::Send(e) => Some(e),
            Error::Handshake(e) => Some(e),
            Error::ClientHandshake(e) => Some(e),
            Error::Resolve { source, .. } | Error::Connect { source, .. } => Some(source),
            #[cfg(feature = "tls")]
            Error::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        Error::Protocol(e)
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Closed => Error::ConnectionClosed,
            e => Error::Send(e),
        }
    }
}

impl From<HandshakeError> for Error {
    fn from(e: HandshakeError) -> Self {
        Error::Handshake(e)
    }
}

impl From<ClientHandshakeError> for Error {
    fn from(e: ClientHandshakeError) -> Self {
        Error::ClientHandshake(e)
    }
}
