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
    /// Accept any server certificate (see `ClientBuilder::dangerous_accept_invalid_certificates`).
    pub(crate) dangerous_accept_invalid_certificates: bool,
}

/// Parses every `CERTIFICATE` block of a PEM text into DER (for
/// `ClientBuilder::add_root_certificates_pem`).
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, Error> {
    use rustls::pki_types::pem::PemObject;
    let ders = CertificateDer::pem_slice_iter(pem)
        .map(|cert| cert.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_pem(format!("reading PEM certificates: {e}")))?;
    if ders.is_empty() {
        return Err(invalid_pem("no CERTIFICATE block in the PEM text".into()));
    }
    Ok(ders)
}

fn invalid_pem(why: String) -> Error {
    Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, why))
}

/// The client configuration of `options`: the given one, or webpki roots plus the extra
/// roots, or (dangerous) no certificate check at all.
fn config_for(options: &TlsOptions) -> Result<Arc<ClientConfig>, Error> {
    if let Some(config) = &options.config {
        return Ok(config.clone());
    }
    if !options.dangerous_accept_invalid_certificates {
        return client_config(&options.extra_roots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate (expired, self-signed, for another name), while still
/// checking that the server holds the key of the certificate it sent: the handshake's
/// signatures are verified as usual. Encryption without authentication: anyone on the path
/// can impersonate the server.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
    let config = config_for(options)?;
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
