//! Accepting connections: the server side of the opening handshake over any byte stream.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use tether_proto::Config;
use tether_proto::Connection;
use tether_proto::handshake::{self, AcceptOptions, Request};

use crate::websocket::Negotiated;
use crate::{Error, WebSocket};

/// An application's refusal of a handshake: the HTTP status, headers and text body to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The HTTP status, e.g. 401, 403 or 404.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// A short text body for people.
    pub body: String,
}

impl Rejection {
    /// A refusal with `status` and a text body.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Rejection {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

/// Accepts a WebSocket on `stream` with the default [`Config`] and no subprotocol.
pub async fn accept<S>(stream: S) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, Config::default(), |_| Ok(AcceptOptions::default())).await
}

/// Accepts a WebSocket on `stream`. `callback` sees the validated-to-parse request (path,
/// headers, offered subprotocols) and answers with the [`AcceptOptions`] (the subprotocols the
/// server speaks in order of preference, an Origin allow-list, extra response headers) or a
/// [`Rejection`].
///
/// Malformed or refused requests are answered with their precise status (400, 403, 426, 431)
/// and the matching [`Error`] is returned. The caller bounds the time it takes (wrap the call
/// in `tokio::time::timeout`).
///
/// `config` is a [`Config`], or an `Arc<Config>` that many connections share: an idle
/// connection then holds a pointer to it instead of a copy.
pub async fn accept_with<S, F>(
    mut stream: S,
    config: impl Into<Arc<Config>>,
    callback: F,
) -> Result<WebSocket<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(&Request) -> Result<AcceptOptions, Rejection>,
{
    let config: Arc<Config> = config.into();
    let (request, buf, head_len) = match read_request(&mut stream, &config).await {
        Ok(parsed) => parsed,
        Err(ReadError::Io(e)) => return Err(Error::Io(e)),
        Err(ReadError::Handshake(e)) => {
            refuse(&mut stream, &e.response()).await;
            return Err(Error::Handshake(e));
        }
    };
    let options = match callback(&request) {
        Ok(options) => options,
        Err(r) => {
            refuse(
                &mut stream,
                &handshake::reject_response(r.status, &r.headers, &r.body),
            )
            .await;
            return Err(Error::Rejected(r.status));
        }
    };
    let accepted = match handshake::accept(&request, &config, &options) {
        Ok(accepted) => accepted,
        Err(e) => {
            refuse(&mut stream, &e.response()).await;
            return Err(Error::Handshake(e));
        }
    };
    stream.write_all(&accepted.response).await?;
    stream.flush().await?;
    let negotiated = Negotiated {
        subprotocol: accepted.subprotocol,
        compression: accepted.deflate.is_some(),
    };
    let conn = Connection::server(config, accepted.deflate);
    Ok(WebSocket::from_connection(
        stream,
        conn,
        negotiated,
        &buf[head_len..],
    ))
}

enum ReadError {
    Io(std::io::Error),
    Handshake(handshake::HandshakeError),
}

/// Reads until the request head is complete, bounded by `max_handshake_size`.
async fn read_request<S>(
    stream: &mut S,
    config: &Config,
) -> Result<(Request, Vec<u8>, usize), ReadError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    loop {
        let searched = buf.len().saturating_sub(3);
        let read = stream
            .read_buf(&mut limit(&mut buf, config.max_handshake_size + 1))
            .await
            .map_err(ReadError::Io)?;
        if read == 0 {
            return Err(ReadError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        // Parse only once the end of the head may be here (or the limit is passed), so a
        // request dribbled byte by byte costs a scan of the new bytes, not of all of them.
        let complete = buf[searched..].windows(4).any(|w| w == b"\r\n\r\n");
        if !complete && buf.len() <= config.max_handshake_size {
            continue;
        }
        match handshake::parse_request(&buf, config) {
            Ok(Some((request, head_len))) => return Ok((request, buf, head_len)),
            Ok(None) => continue,
            Err(e) => return Err(ReadError::Handshake(e)),
        }
    }
}

/// A `BufMut` view of `buf` that will not grow it past `max` bytes.
fn limit(buf: &mut Vec<u8>, max: usize) -> bytes::buf::Limit<&mut Vec<u8>> {
    let room = max.saturating_sub(buf.len()).max(1);
    bytes::BufMut::limit(buf, room)
}

/// Sends an error response and closes the write side; errors are moot at this point.
async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, response: &[u8]) {
    let _ = stream.write_all(response).await;
    let _ = stream.shutdown().await;
}
