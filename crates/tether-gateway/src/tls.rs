//! The server side of TLS: certificates and key from PEM files, rustls with the ring provider.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, TlsConfig};

/// A rustls server configuration for `config`: its certificate chain and key, TLS 1.2 and
/// 1.3 with ring's safe defaults, ALPN `http/1.1` (WebSocket runs over HTTP/1.1).
pub fn server_config(config: &TlsConfig) -> Result<Arc<ServerConfig>, ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.cert)
        .and_then(|iter| iter.collect::<Result<_, _>>())
        .map_err(|e| {
            ConfigError::new(
                "tls.cert",
                format!(
                    "cannot read certificates from {}: {e}",
                    config.cert.display()
                ),
            )
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            "tls.cert",
            format!("{} holds no PEM certificate", config.cert.display()),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| {
        ConfigError::new(
            "tls.key",
            format!(
                "cannot read a private key from {}: {e}",
                config.key.display()
            ),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("tls", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConfigError::new(
                "tls.key",
                format!(
                    "does not fit the certificate in {}: {e}",
                    config.cert.display()
                ),
            )
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tether-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn loads_a_generated_certificate() {
        let dir = temp_dir("ok");
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let config = TlsConfig {
            listen: "127.0.0.1:0".into(),
            cert: write(&dir, "cert.pem", &certified.cert.pem()),
            key: write(&dir, "key.pem", &certified.signing_key.serialize_pem()),
            only: false,
        };
        let server = server_config(&config).unwrap();
        assert_eq!(server.alpn_protocols, vec![b"http/1.1".to_vec()]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_name_the_file_key() {
        let dir = temp_dir("bad");
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let mut config = TlsConfig {
            listen: "127.0.0.1:0".into(),
            cert: dir.join("missing.pem"),
            key: write(&dir, "key.pem", &certified.signing_key.serialize_pem()),
            only: false,
        };
        assert_eq!(server_config(&config).unwrap_err().key, "tls.cert");
        config.cert = write(&dir, "cert.pem", &certified.cert.pem());
        config.key = write(&dir, "empty.pem", "");
        assert_eq!(server_config(&config).unwrap_err().key, "tls.key");
        let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        config.key = write(&dir, "other.pem", &other.signing_key.serialize_pem());
        assert_eq!(server_config(&config).unwrap_err().key, "tls.key");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
