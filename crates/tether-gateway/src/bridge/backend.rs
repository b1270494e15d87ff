//! Reaching a bridge's backend: TCP to the first allowed address that answers, then the
//! PROXY header and TLS if configured, all within `connect_timeout`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::proxy_header::header_v2;
use crate::config::ConfigError;

/// The connection to a backend: plain TCP or TLS over it.
pub(crate) enum BackendStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

/// TLS towards the backends of one route.
pub(crate) struct BackendTls {
    connector: TlsConnector,
    /// `tls_server_name`; without it, each target's host.
    server_name: Option<ServerName<'static>>,
}

impl BackendTls {
    /// The TLS client of a route: roots from `ca_file` (PEM), or the webpki roots; no ALPN
    /// (the bytes are the backend's own protocol). `key` prefixes errors (`routes[2]`).
    pub(crate) fn new(
        key: &str,
        ca_file: Option<&std::path::Path>,
        server_name: Option<&str>,
    ) -> Result<BackendTls, ConfigError> {
        let config: ClientConfig = match ca_file {
            None => {
                let shared = tether::tls::client_config(&[])
                    .map_err(|e| ConfigError::new(format!("{key}.tls"), e.to_string()))?;
                let mut config = (*shared).clone();
                config.alpn_protocols.clear();
                config
            }
            Some(path) => {
                let bad = |why: String| ConfigError::new(format!("{key}.tls_ca_file"), why);
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|iter| iter.collect::<Result<_, _>>())
                    .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err(bad(format!("{} holds no PEM certificate", path.display())));
                }
                let mut roots = rustls::RootCertStore::empty();
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| bad(format!("{}: {e}", path.display())))?;
                }
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ConfigError::new(format!("{key}.tls"), e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth()
            }
        };
        let server_name = server_name
            .map(|name| {
                ServerName::try_from(name.to_string()).map_err(|e| {
                    ConfigError::new(format!("{key}.tls_server_name"), format!("{name:?}: {e}"))
                })
            })
            .transpose()?;
        Ok(BackendTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

/// Connects to the first of `addrs` that accepts, writes the PROXY v2 header if `proxy_v2`
/// holds the client's address (and the gateway's address it connected to, else the
/// backend's stands in), then runs the TLS handshake if `tls` is set, with `host` as the
/// server name unless the route names one. The caller bounds the time.
pub(crate) async fn connect(
    addrs: &[SocketAddr],
    host: &str,
    proxy_v2: Option<(SocketAddr, Option<SocketAddr>)>,
    tls: Option<&BackendTls>,
) -> io::Result<BackendStream> {
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    let mut connected = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                connected = Some(tcp);
                break;
            }
            Err(e) => {
                last_error = io::Error::new(e.kind(), format!("{addr}: {e}"));
            }
        }
    }
    let mut tcp = connected.ok_or(last_error)?;
    let _ = tcp.set_nodelay(true);
    if let Some((client, local)) = proxy_v2 {
        let destination = match local {
            Some(local) => local,
            None => tcp.peer_addr()?,
        };
        // The header goes first, before TLS: the backend reads it off the raw connection.
        tcp.write_all(&header_v2(client, destination)).await?;
    }
    let Some(tls) = tls else {
        return Ok(BackendStream::Plain(tcp));
    };
    let name = match &tls.server_name {
        Some(name) => name.clone(),
        None => ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?,
    };
    let stream = tls.connector.connect(name, tcp).await?;
    Ok(BackendStream::Tls(Box::new(stream)))
}

impl AsyncRead for BackendStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BackendStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BackendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BackendStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BackendStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BackendStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BackendStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
