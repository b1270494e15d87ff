//! Config reload on SIGHUP: a new route answers, a removed route 404s, a new certificate is
//! presented to new TLS handshakes, and WebSockets opened before (on a kept route, on the
//! removed route, over TLS with the old certificate) keep working. A broken file on reload is
//! reported and changes nothing.

use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, MaybeTlsStream, Message, WebSocket};
use tokio::net::TcpStream;

use crate::gateway::Gateway;
use crate::support::{PATIENCE, scratch_file};

type Client = WebSocket<MaybeTlsStream<TcpStream>>;

/// A self-signed certificate for `localhost` written to `cert.pem`/`key.pem` in `dir`; its
/// PEM text, to trust it.
fn certificate(dir: &Path) -> String {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("reload-cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(
        dir.join("reload-key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .unwrap();
    certified.cert.pem()
}

fn config(dir: &Path, extra_route: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\n\
         [[routes]]\npath = \"/ws\"\nkind = \"pubsub\"\n\
         [[routes]]\npath = \"/echo\"\nkind = \"echo\"\n\
         [[routes]]\npath = \"{extra_route}\"\nkind = \"echo\"\n\
         [tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("reload-cert.pem").display(),
        dir.join("reload-key.pem").display()
    )
}

async fn round_trip(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    match tokio::time::timeout(PATIENCE, ws.next()).await.unwrap() {
        Some(Ok(Message::Text(t))) => assert_eq!(t.as_str(), text),
        other => panic!("no echo of {text:?}: {other:?}"),
    }
}

async fn open(url: &str) -> Result<Client, tether::Error> {
    ClientBuilder::new(url).connect().await.map(|(ws, _)| ws)
}

async fn open_tls(url: &str, trusted_pem: &str) -> Result<Client, tether::Error> {
    let builder = ClientBuilder::new(url).add_root_certificates_pem(trusted_pem.as_bytes())?;
    builder.connect().await.map(|(ws, _)| ws)
}

fn status_of(result: Result<Client, tether::Error>) -> u16 {
    match result {
        Err(tether::Error::HandshakeRefused(refused)) => refused.status,
        Err(e) => panic!("not a refusal: {e}"),
        Ok(_) => 101,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_routes_and_certificates_without_dropping_connections() {
    let file = scratch_file("reload.toml", "");
    let dir = file.parent().unwrap().to_path_buf();
    let first_cert = certificate(&dir);
    std::fs::write(&file, config(&dir, "/old")).unwrap();
    let mut gateway = Gateway::start_file(&file, &[]);
    let tls = gateway.tls.unwrap();
    let wss = |path: &str| format!("wss://localhost:{}{path}", tls.port());

    let mut kept = open(&gateway.url("/echo")).await.unwrap();
    let mut on_removed = open(&gateway.url("/old")).await.unwrap();
    let mut over_tls = open_tls(&wss("/echo"), &first_cert).await.unwrap();
    round_trip(&mut kept, "before").await;
    assert_eq!(status_of(open(&gateway.url("/new")).await), 404);

    let second_cert = certificate(&dir);
    std::fs::write(&file, config(&dir, "/new")).unwrap();
    gateway.signal("-HUP");
    let line = gateway.process.stderr_line("config");
    assert!(
        line.contains("config reloaded: 3 routes, TLS certificate reread"),
        "{line}"
    );

    // Open connections keep working, the one on the removed route included.
    round_trip(&mut kept, "after").await;
    round_trip(&mut on_removed, "still here").await;
    round_trip(&mut over_tls, "old certificate, same session").await;
    // New connections see the new routes and the new certificate.
    let mut on_new = open(&gateway.url("/new")).await.unwrap();
    round_trip(&mut on_new, "new route").await;
    assert_eq!(status_of(open(&gateway.url("/old")).await), 404);
    let mut new_tls = open_tls(&wss("/new"), &second_cert).await.unwrap();
    round_trip(&mut new_tls, "new certificate").await;
    match open_tls(&wss("/echo"), &first_cert).await {
        Err(tether::Error::Tls(e)) => assert!(e.to_string().contains("certificate"), "{e}"),
        other => panic!("the old certificate is still presented: {:?}", other.err()),
    }

    // A broken file: said on stderr, and the running config stays.
    std::fs::write(
        &file,
        "[[routes]]\npath = \"/broken\"\nkind = \"nonsense\"\n",
    )
    .unwrap();
    gateway.signal("-HUP");
    let line = gateway.process.stderr_line("config");
    assert!(line.contains("config not reloaded"), "{line}");
    assert!(line.contains("routes[0].kind"), "{line}");
    let mut still_new = open(&gateway.url("/new")).await.unwrap();
    round_trip(&mut still_new, "unchanged").await;
    assert_eq!(status_of(open(&gateway.url("/broken")).await), 404);
    round_trip(&mut kept, "through two reloads").await;
    assert!(gateway.alive());
    eprintln!(
        "faults: SIGHUP reload: /new answers, /old 404s, new TLS handshakes get the new \
         certificate, 3 WebSockets opened before kept working; a broken file was refused \
         ({line})"
    );
}
