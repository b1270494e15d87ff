//! wss with a certificate made in the test, and hyper serving HTTP and WebSocket on one port.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tether::{AcceptOptions, ClientBuilder, Config, Error, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn server_tls_config() -> (Arc<rustls::ServerConfig>, Vec<u8>) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = certified.cert.der().to_vec();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert_der.clone())], key)
        .unwrap();
    (Arc::new(config), cert_der)
}

#[tokio::test]
async fn wss_round_trip_with_a_custom_root() {
    let (tls, cert_der) = server_tls_config();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let stream = tokio_rustls::TlsAcceptor::from(tls)
            .accept(tcp)
            .await
            .unwrap();
        let mut ws = tether::accept(stream).await.unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_data() {
                ws.send(msg).await.unwrap();
            }
        }
    });
    let url = format!("wss://localhost:{port}/secure");
    let (mut ws, _) = ClientBuilder::new(&url)
        .add_root_certificate(cert_der)
        .connect()
        .await
        .unwrap();
    ws.send(Message::text("over TLS")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("over TLS"));
    ws.close(None).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn wss_refuses_an_untrusted_certificate() {
    let (tls, _) = server_tls_config();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await;
    });
    let err = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
    server.await.unwrap();
}

/// An echo server on wss with a self-signed certificate for `localhost`; serves one client.
async fn one_wss_echo() -> (u16, Vec<u8>, tokio::task::JoinHandle<()>) {
    let (tls, cert_der) = server_tls_config();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(stream) = tokio_rustls::TlsAcceptor::from(tls).accept(tcp).await else {
            return;
        };
        let mut ws = tether::accept(stream).await.unwrap();
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_data() {
                ws.send(msg).await.unwrap();
            }
        }
    });
    (port, cert_der, server)
}

#[tokio::test]
async fn wss_dangerous_accept_invalid_certificates_takes_a_self_signed_one_for_another_name() {
    let (port, _, server) = one_wss_echo().await;
    // 127.0.0.1 is not a name in the certificate, and nothing trusts it: accepted anyway.
    let (mut ws, _) = ClientBuilder::new(format!("wss://127.0.0.1:{port}/"))
        .dangerous_accept_invalid_certificates(true)
        .connect()
        .await
        .unwrap();
    ws.send(Message::text("unverified")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("unverified")
    );
    ws.close(None).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn wss_trusts_roots_from_pem_and_still_checks_the_name() {
    let (port, cert_der, server) = one_wss_echo().await;
    let pem = pem_of(&cert_der);
    let (mut ws, _) = ClientBuilder::new(format!("wss://localhost:{port}/"))
        .add_root_certificates_pem(pem.as_bytes())
        .unwrap()
        .connect()
        .await
        .unwrap();
    ws.close(None).await.unwrap();
    server.await.unwrap();

    let (port, cert_der, server) = one_wss_echo().await;
    let err = ClientBuilder::new(format!("wss://127.0.0.1:{port}/"))
        .add_root_certificates_pem(pem_of(&cert_der).as_bytes())
        .unwrap()
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Tls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err:?}"
    );
    server.await.unwrap();
    assert!(
        ClientBuilder::new("wss://localhost/")
            .add_root_certificates_pem(b"no certificate here")
            .is_err()
    );
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[tokio::test]
async fn hyper_serves_http_and_websocket_on_one_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = service_fn(
                    |mut req: hyper::Request<hyper::body::Incoming>| async move {
                        if !tether::upgrade::is_upgrade_request(&req) {
                            return Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"plain http"),
                            )));
                        }
                        let options = AcceptOptions {
                            subprotocols: vec!["chat".into()],
                            ..Default::default()
                        };
                        match tether::upgrade::upgrade(&mut req, Config::default(), &options) {
                            Ok((response, upgrade)) => {
                                tokio::spawn(async move {
                                    let mut ws = upgrade.await.unwrap();
                                    while let Some(Ok(msg)) = ws.next().await {
                                        if msg.is_data() {
                                            ws.send(msg).await.unwrap();
                                        }
                                    }
                                });
                                Ok(response)
                            }
                            Err(e) => Ok(tether::upgrade::error_response(&e)),
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });

    let mut http = TcpStream::connect(addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("plain http"),
        "{answer}"
    );

    let (mut ws, response) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .subprotocol("chat")
        .connect()
        .await
        .unwrap();
    assert_eq!(response.subprotocol.as_deref(), Some("chat"));
    assert!(ws.negotiated().compression);
    ws.send(Message::text("through hyper")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("through hyper")
    );
    ws.close(None).await.unwrap();
    server.await.unwrap();
}
