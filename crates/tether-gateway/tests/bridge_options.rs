//! Bridge options over real sockets: TLS towards the backend, the PROXY v2 header, targets
//! from a JWT claim.

mod bridge_support;
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bridge_support::{bridge_client, close_frame, echo_server, free_port, read_bytes};
use common::{PATIENCE, config_from, raw_upgrade, start};
use futures_util::SinkExt;
use tether::{MaybeTlsStream, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A self-signed certificate for `localhost` in a fresh directory, removed on drop.
struct Certificate {
    dir: PathBuf,
    certified: rcgen::CertifiedKey<rcgen::KeyPair>,
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn certificate(name: &str) -> Certificate {
    let dir = std::env::temp_dir().join(format!("tether-bridge-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("ca.pem"), certified.cert.pem()).unwrap();
    Certificate { dir, certified }
}

/// A TLS echo server with `cert`.
async fn tls_echo_server(cert: &Certificate) -> SocketAddr {
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(cert.certified.signing_key.serialize_der())
            .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (mut rd, mut wr) = tokio::io::split(tls);
                let _ = tokio::io::copy(&mut rd, &mut wr).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tls_towards_the_backend_checks_its_certificate() {
    let cert = certificate("tls");
    let backend = tls_echo_server(&cert).await;
    let ca = cert.dir.join("ca.pem");
    let route = |path: &str, name: &str| {
        format!(
            "[[routes]]\npath = \"{path}\"\nkind = \"bridge\"\ntarget = \"{backend}\"\ntls = true\n\
             tls_server_name = \"{name}\"\ntls_ca_file = {:?}\n",
            ca.to_str().unwrap()
        )
    };
    let gw = start(config_from(&format!(
        "{}{}",
        route("/good", "localhost"),
        route("/wrong-name", "other.example")
    )))
    .await;
    let mut ws = bridge_client(gw.addr, "/good").await;
    ws.send(Message::binary(&b"over tls"[..])).await.unwrap();
    assert_eq!(read_bytes(&mut ws, 8).await, b"over tls");
    drop(ws);
    // A certificate for another name: the backend is unreachable as far as the client knows.
    let mut ws = bridge_client(gw.addr, "/wrong-name").await;
    assert_eq!(
        close_frame(&mut ws).await,
        (1011, "backend unreachable".to_string())
    );
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}

#[tokio::test]
async fn the_proxy_v2_header_carries_the_clients_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/p\"\nkind = \"bridge\"\ntarget = \"{backend}\"\nproxy_protocol = \"v2\"\n"
    )))
    .await;
    let mut ws = bridge_client(gw.addr, "/p").await;
    let client = match ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap(),
        _ => unreachable!("a ws:// connection"),
    };
    let (mut tcp, _) = listener.accept().await.unwrap();
    ws.send(Message::binary(&b"after the header"[..]))
        .await
        .unwrap();
    let mut header = [0; 28];
    tokio::time::timeout(PATIENCE, tcp.read_exact(&mut header))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&header[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(&header[12..16], &[0x21, 0x11, 0, 12]);
    let ip = |b: &[u8]| std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    let source = SocketAddr::from((ip(&header[16..20]), port(&header[24..26])));
    let destination = SocketAddr::from((ip(&header[20..24]), port(&header[26..28])));
    assert_eq!(source, client, "the source is the WebSocket client");
    assert_eq!(
        destination, gw.addr,
        "the destination is the gateway's listener"
    );
    let mut payload = [0; 16];
    tcp.read_exact(&mut payload).await.unwrap();
    assert_eq!(&payload, b"after the header");
    tcp.write_all(b"ok").await.unwrap();
    assert_eq!(read_bytes(&mut ws, 2).await, b"ok");
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}

const SECRET: &str = "a secret of thirty-two bytes or more, for tests";

fn jwt(claims: serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_jwt_claim_names_the_target_within_the_allow_list() {
    let echo = echo_server().await;
    let outside = free_port().await;
    let gw = start(config_from(&format!(
        "[[routes]]\npath = \"/desk\"\nkind = \"bridge\"\njwt_claim = \"desk\"\n\
         allow = [\"127.0.0.1:{}\"]\n\n[auth.jwt]\nsecret = \"{SECRET}\"\n",
        echo.port()
    )))
    .await;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let good = jwt(
        serde_json::json!({"desk": echo.to_string(), "exp": exp}),
        SECRET,
    );
    let mut ws = bridge_client(gw.addr, &format!("/desk/{good}")).await;
    ws.send(Message::binary(&b"via jwt"[..])).await.unwrap();
    assert_eq!(read_bytes(&mut ws, 7).await, b"via jwt");
    let offer = "Sec-WebSocket-Protocol: binary\r\n";
    let outside = jwt(
        serde_json::json!({"desk": format!("127.0.0.1:{outside}"), "exp": exp}),
        SECRET,
    );
    let forged = jwt(
        serde_json::json!({"desk": echo.to_string(), "exp": exp}),
        "another secret of thirty-two bytes or more!",
    );
    let expired = jwt(
        serde_json::json!({"desk": echo.to_string(), "exp": 1}),
        SECRET,
    );
    let no_claim = jwt(serde_json::json!({"exp": exp}), SECRET);
    for token in [outside, forged, expired, no_claim] {
        let refused = raw_upgrade(gw.addr, &format!("/desk?token={token}"), offer).await;
        assert_eq!(refused.status, 403, "{refused:?}");
    }
    drop(ws); // an open client that is not polled would hold up the drain
    gw.stop().await;
}
