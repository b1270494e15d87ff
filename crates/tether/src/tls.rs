//! wss clients with rustls.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::Error;

/// TLS settings of a client.
#[derive(Clone, Debug, Default)]
pub(crate) struct TlsOptions {
    /// DER certificates trusted besides the webpki roots.
    pub(crate) extra_roots: Vec<Vec<u8>>,
    /// A complete configuration that replaces the default.
    pub(crate) config: Option<Arc<ClientConfig>>,
}

/// The default client configuration: webpki roots plus `extra_roots`, ALPN http/1.1.
pub fn client_config(extra_roots: &[Vec<u8>]) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in extra_roots {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(Error::Tls)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The WebSocket handshake is HTTP/1.1 (RFC 6455 §4.1); say so to servers that also speak h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub(crate) async fn connect(
    options: &TlsOptions,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Error> {
    let config = match &options.config {
        Some(c) => c.clone(),
        None => client_config(&options.extra_roots)?,
    };
    let name =
        ServerName::try_from(host.to_string()).map_err(|e| Error::Url(format!("{host}: {e}")))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            // rustls reports certificate problems as io errors wrapping rustls::Error.
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(tls) => Error::Tls(tls.clone()),
                None => Error::Io(e),
            }
        })
}
