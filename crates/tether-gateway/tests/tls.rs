//! wss and https with a certificate made in the test, beside or instead of the plain port.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{PATIENCE, config_from, next_text, parse_response, start};
use futures_util::SinkExt;
use rustls::pki_types::{CertificateDer, ServerName};
use tether::{ClientBuilder, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Certificate {
    dir: PathBuf,
    der: Vec<u8>,
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn certificate(name: &str) -> Certificate {
    let dir = std::env::temp_dir().join(format!("tether-tls-it-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    Certificate {
        dir,
        der: certified.cert.der().to_vec(),
    }
}

fn tls_section(cert: &Certificate, only: bool) -> String {
    format!(
        "[tls]\nlisten = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\nonly = {only}\n",
        cert.dir.join("cert.pem").to_str().unwrap(),
        cert.dir.join("key.pem").to_str().unwrap(),
    )
}

#[tokio::test]
async fn wss_and_https_work_beside_the_plain_port() {
    let cert = certificate("beside");
    let gw = start(config_from(&tls_section(&cert, false))).await;
    let tls_addr = gw.tls_addr.unwrap();
    assert_ne!(tls_addr, gw.addr);

    let (mut ws, response) =
        ClientBuilder::new(format!("wss://localhost:{}/echo", tls_addr.port()))
            .add_root_certificate(cert.der.clone())
            .connect()
            .await
            .unwrap();
    assert!(response.header("sec-websocket-extensions").is_some());
    ws.send(Message::text("secure hello")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "secure hello");
    ws.close(None).await.unwrap();

    // HTTPS on the same port.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert.der.clone())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(tls_addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut raw))
        .await
        .unwrap();
    let answer = parse_response(&raw);
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["status"], "ok");

    // The plain port still answers.
    assert_eq!(common::get(gw.addr, "/healthz").await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn tls_only_has_no_plain_listener() {
    let cert = certificate("only");
    let config = config_from(&tls_section(&cert, true));
    let gateway = tether_gateway::Gateway::bind(config).await.unwrap();
    assert!(gateway.local_addr().is_none());
    assert!(gateway.tls_local_addr().is_some());
}

#[tokio::test]
async fn an_untrusted_client_handshake_fails_and_is_counted() {
    let cert = certificate("untrusted");
    let gw = start(config_from(&tls_section(&cert, false))).await;
    let tls_addr = gw.tls_addr.unwrap();
    // No root for our certificate: the client refuses it and aborts the handshake.
    let err = ClientBuilder::new(format!("wss://localhost:{}/echo", tls_addr.port()))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, tether::Error::Tls(_)), "{err:?}");
    // Plain text on the TLS port is not HTTP to it either.
    let mut tcp = TcpStream::connect(tls_addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let _ = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut Vec::new()))
        .await
        .unwrap();
    let metrics = common::get(gw.addr, "/metrics").await.body;
    assert!(
        metrics.contains("tether_handshakes_refused_total{reason=\"tls\"} 2\n"),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_bad_key_file_stops_startup_with_the_key_named() {
    let cert = certificate("badkey");
    std::fs::write(cert.dir.join("key.pem"), "not a key").unwrap();
    let err = tether_gateway::Gateway::bind(config_from(&tls_section(&cert, false)))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("tls.key: "), "{err}");
}
