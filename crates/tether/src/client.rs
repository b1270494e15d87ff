//! Connecting: the client side of the opening handshake, over TCP, TLS or any byte stream.

use http::Uri;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use tether_proto::handshake::{self, ClientHandshakeError, ClientRequest, Response};
use tether_proto::{Config, Connection};

use crate::stream::MaybeTlsStream;
use crate::websocket::Negotiated;
use crate::{Error, RefusedHandshake, WebSocket};

/// Resolves `host` and connects to its addresses in turn (RFC 6455 §4.1: "the client MUST
/// open a connection to the host"), naming every address tried when all fail.
async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, Error> {
    let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| Error::Resolve {
            host: host.to_string(),
            source,
        })?
        .collect();
    let mut last = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the name resolved to no address",
    );
    for address in &addresses {
        match TcpStream::connect(address).await {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = e,
        }
    }
    Err(Error::Connect {
        host: host.to_string(),
        port,
        tried: addresses,
        source: last,
    })
}

/// Connects to a `ws://` or `wss://` URL with the default configuration.
pub async fn connect(url: &str) -> Result<(WebSocket<MaybeTlsStream<TcpStream>>, Response), Error> {
    ClientBuilder::new(url).connect().await
}

/// Options for a client connection.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    url: String,
    config: Config,
    subprotocols: Vec<String>,
    headers: Vec<(String, String)>,
    origin: Option<String>,
    #[cfg(feature = "tls")]
    tls: crate::tls::TlsOptions,
}

/// Where a URL says to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) secure: bool,
    /// Host name or IP address, without IPv6 brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// `Host` header value: the authority, with the port only when it is not the default.
    pub(crate) authority: String,
    pub(crate) resource: String,
}

pub(crate) fn parse_url(url: &str) -> Result<Target, Error> {
    let uri: Uri = url.parse().map_err(|e| Error::Url(format!("{url}: {e}")))?;
    let secure = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        Some(other) => {
            return Err(Error::Url(format!(
                "{url}: scheme must be ws or wss, not {other}"
            )));
        }
        None => return Err(Error::Url(format!("{url}: no scheme (ws:// or wss://)"))),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| Error::Url(format!("{url}: no host")))?;
    if authority.as_str().contains('@') {
        return Err(Error::Url(format!(
            "{url}: user information is not supported"
        )));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let default_port = if secure { 443 } else { 80 };
    let port = authority.port_u16().unwrap_or(default_port);
    let host_header = if port == default_port {
        authority.host().to_string()
    } else {
        format!("{}:{port}", authority.host())
    };
    // RFC 6455 §3: the resource name is the path (or "/") and the query; no fragment.
    let resource = uri.path_and_query().map_or("/".to_string(), |p| {
        if p.as_str().starts_with('/') {
            p.as_str().to_string()
        } else {
            format!("/{}", p.as_str())
        }
    });
    Ok(Target {
        secure,
        host,
        port,
        authority: host_header,
        resource,
    })
}

impl ClientBuilder {
    /// A client for `url` (`ws://host[:port]/path?query` or `wss://...`).
    pub fn new(url: impl Into<String>) -> Self {
        ClientBuilder {
            url: url.into(),
            config: Config::default(),
            subprotocols: Vec::new(),
            headers: Vec::new(),
            origin: None,
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsOptions::default(),
        }
    }

    /// Limits and compression settings (`config.deflate = None` offers no compression).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Offers a subprotocol; call again for more, most preferred first.
    pub fn subprotocol(mut self, protocol: impl Into<String>) -> Self {
        self.subprotocols.push(protocol.into());
        self
    }

    /// Adds a request header (e.g. `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends an `Origin` header, as browsers do.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Trusts `der` as a root certificate for wss, besides the webpki roots (for tests and
    /// private certificate authorities).
    #[cfg(feature = "tls")]
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.tls.extra_roots.push(der.into());
        self
    }

    /// Trusts every certificate of a PEM text (`-----BEGIN CERTIFICATE-----` blocks) as a
    /// root for wss, besides the webpki roots. Fails when the text holds no certificate.
    #[cfg(feature = "tls")]
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, Error> {
        self.tls
            .extra_roots
            .extend(crate::tls::certificates_from_pem(pem)?);
        Ok(self)
    }

    /// **Dangerous**: for wss, accepts any server certificate (self-signed, expired, issued
    /// for another name) instead of checking it against the trusted roots. The connection is
    /// encrypted but the server is not authenticated, so anyone on the path can read and
    /// change the traffic. For testing against servers with throwaway certificates only
    /// (`tether connect --insecure`). Named after rustls's `dangerous()` configuration.
    #[cfg(feature = "tls")]
    pub fn dangerous_accept_invalid_certificates(mut self, accept: bool) -> Self {
        self.tls.dangerous_accept_invalid_certificates = accept;
        self
    }

    /// Uses this rustls configuration for wss instead of the default one.
    #[cfg(feature = "tls")]
    pub fn tls_config(mut self, config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        self.tls.config = Some(config);
        self
    }

    /// Opens the TCP connection (and TLS for wss) and performs the opening handshake.
    pub async fn connect(self) -> Result<(WebSocket<MaybeTlsStream<TcpStream>>, Response), Error> {
        let stream = self.open_transport().await?;
        self.connect_on(stream).await
    }

    /// Opens the transport only: resolves the host ([`Error::Resolve`]), connects over TCP to
    /// its addresses in turn ([`Error::Connect`]) and, for wss, does the TLS handshake
    /// ([`Error::Tls`]). Finish with [`connect_on`](Self::connect_on), possibly through a
    /// wrapper such as [`trace::Traced`](crate::trace::Traced).
    pub async fn open_transport(&self) -> Result<MaybeTlsStream<TcpStream>, Error> {
        let target = parse_url(&self.url)?;
        let tcp = connect_tcp(&target.host, target.port).await?;
        let _ = tcp.set_nodelay(true);
        if target.secure {
            #[cfg(feature = "tls")]
            return Ok(MaybeTlsStream::Tls(Box::new(
                crate::tls::connect(&self.tls, &target.host, tcp).await?,
            )));
            #[cfg(not(feature = "tls"))]
            return Err(Error::Url("wss:// needs the `tls` feature".into()));
        }
        Ok(MaybeTlsStream::Plain(tcp))
    }

    /// Performs the opening handshake over an already connected `stream` (the URL supplies
    /// the `Host` header and resource).
    pub async fn connect_on<S>(self, stream: S) -> Result<(WebSocket<S>, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let target = parse_url(&self.url)?;
        self.handshake_with_target(stream, &target).await
    }

    async fn handshake_with_target<S>(
        self,
        mut stream: S,
        target: &Target,
    ) -> Result<(WebSocket<S>, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut request = ClientRequest::new(target.authority.clone(), target.resource.clone());
        request.subprotocols = self.subprotocols;
        request.origin = self.origin;
        request.extra_headers = self.headers;
        // RFC 6455 §4.1: the key is "a randomly selected 16-byte value".
        let (bytes, pending) = handshake::client_request(&request, &self.config, rand::random());
        stream.write_all(&bytes).await?;
        stream.flush().await?;
        let mut buf = Vec::with_capacity(512);
        let (response, head_len) = loop {
            let room = (self.config.max_handshake_size + 1)
                .saturating_sub(buf.len())
                .max(1);
            if stream
                .read_buf(&mut bytes::BufMut::limit(&mut buf, room))
                .await?
                == 0
            {
                return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            match pending.parse_response(&buf, &self.config) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(ClientHandshakeError::NotSwitchingProtocols {
                    status,
                    reason,
                    headers,
                }) => {
                    let after_head = buf
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map_or(&[][..], |end| &buf[end + 4..]);
                    let (body, body_truncated) = crate::refused::read_body(
                        &mut stream,
                        &headers,
                        after_head,
                        self.config.close_timeout,
                    )
                    .await;
                    return Err(Error::HandshakeRefused(Box::new(RefusedHandshake {
                        status,
                        reason,
                        headers,
                        body,
                        body_truncated,
                    })));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let negotiated = Negotiated {
            subprotocol: response.subprotocol.clone(),
            compression: response.deflate.is_some(),
        };
        // RFC 6455 §5.3: a fresh, unpredictable masking key for every frame.
        let conn = Connection::client(self.config, response.deflate, rand::random::<[u8; 4]>);
        Ok((
            WebSocket::from_connection(stream, conn, negotiated, &buf[head_len..]),
            response,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_resource() {
        let t = parse_url("ws://example.com/chat?room=1").unwrap();
        assert_eq!(
            (
                t.secure,
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.resource.as_str()
            ),
            (false, "example.com", 80, "example.com", "/chat?room=1")
        );
        let t = parse_url("wss://[::1]:8443").unwrap();
        assert_eq!(
            (
                t.secure,
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.resource.as_str()
            ),
            (true, "::1", 8443, "[::1]:8443", "/")
        );
        assert!(matches!(
            parse_url("http://example.com"),
            Err(Error::Url(_))
        ));
        assert!(matches!(parse_url("example.com"), Err(Error::Url(_))));
    }
}
