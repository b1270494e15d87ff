//! The upstream of a proxy route: where it is, how long to wait for it, and the transport to
//! it (TCP, and TLS for `wss://`).

use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tether::MaybeTlsStream;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::proxy::{ProxySettings, UpstreamUrl};

/// The transport to an upstream.
pub(crate) type UpstreamStream = MaybeTlsStream<TcpStream>;

/// An upstream, ready to connect to.
pub(crate) struct Upstream {
    pub(crate) url: UpstreamUrl,
    /// How long connecting and the upstream's answer (handshake or response head) may take.
    pub(crate) timeout: Duration,
    tls: Option<TlsConnector>,
}

impl Upstream {
    /// The upstream of `settings`, with its TLS configuration loaded. Errors name the key.
    pub(crate) fn new(settings: &ProxySettings) -> Result<Upstream, (&'static str, String)> {
        let tls = if settings.url.secure {
            let mut roots = Vec::new();
            if let Some(path) = &settings.ca_file {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect())
                    .map_err(|e| {
                        (
                            "upstream_ca_file",
                            format!("cannot read certificates from {}: {e}", path.display()),
                        )
                    })?;
                if certs.is_empty() {
                    return Err((
                        "upstream_ca_file",
                        format!("{} holds no certificate", path.display()),
                    ));
                }
                roots.extend(certs.into_iter().map(|c| c.to_vec()));
            }
            let config = tether::tls::client_config(&roots)
                .map_err(|e| ("upstream_ca_file", e.to_string()))?;
            Some(TlsConnector::from(config))
        } else {
            None
        };
        Ok(Upstream {
            url: settings.url.clone(),
            timeout: settings.timeout,
            tls,
        })
    }

    /// Opens the transport (TCP, then TLS for `wss://`). Not bounded in time: callers wrap
    /// the whole exchange in [`Upstream::timeout`].
    pub(crate) async fn connect(&self) -> std::io::Result<UpstreamStream> {
        let tcp = TcpStream::connect((self.url.host.as_str(), self.url.port)).await?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(MaybeTlsStream::Plain(tcp)),
            Some(connector) => {
                let name = ServerName::try_from(self.url.host.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let tls = connector.connect(name, tcp).await?;
                Ok(MaybeTlsStream::Tls(Box::new(tls)))
            }
        }
    }
}
