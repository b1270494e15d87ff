//! `tether pub` and `tether sub` against `tether serve`: publishing with acks and refusals,
//! tokens, history with `--since`, and `sub` resuming across a dropped connection with no gap
//! and no duplicate.
//!
//! The resume test puts a TCP relay of its own between `sub` and the gateway: it cuts the
//! sub's connection (both sockets closed, no closing handshake, as when a network path
//! dies), holds the sub's reconnection while more messages are published straight to the
//! gateway, then lets it through. Restarting an in-memory gateway would not do: its history
//! and epoch are gone after a restart, which `sub` reports as a reset, not a resume.
#![cfg(unix)]

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use support::{PATIENCE, Process, Serve, run, tether};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, watch};

/// A TCP relay to `upstream` that can cut its connections and hold new ones.
struct Relay {
    addr: SocketAddr,
    accepted: watch::Receiver<usize>,
    gate: watch::Sender<bool>,
    cut: broadcast::Sender<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (count_tx, accepted) = watch::channel(0usize);
        let (gate, gate_rx) = watch::channel(true);
        let (cut, _) = broadcast::channel(4);
        let cut_tx = cut.clone();
        tokio::spawn(async move {
            let count = AtomicUsize::new(0);
            while let Ok((client, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                count_tx.send_replace(n);
                let mut gate = gate_rx.clone();
                let mut cut = cut_tx.subscribe();
                tokio::spawn(async move {
                    // Held until the gate opens: the client waits for its handshake answer.
                    let _ = gate.wait_for(|open| *open).await;
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.recv() => {} // both sockets dropped: no close frame
                    }
                });
            }
        });
        Relay {
            addr,
            accepted,
            gate,
            cut,
        }
    }

    /// Drops every relayed connection and holds the next ones.
    fn cut_and_hold(&self) {
        self.gate.send_replace(false);
        let _ = self.cut.send(());
    }

    async fn wait_accepted(&mut self, n: usize) {
        tokio::time::timeout(PATIENCE, self.accepted.wait_for(|count| *count >= n))
            .await
            .expect("no reconnection in time")
            .unwrap();
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }
}

/// `tether pub URL TOPIC` with one message per line of `lines`.
fn publish(url: &str, topic: &str, lines: impl Iterator<Item = String>) {
    let input: String = lines.map(|l| l + "\n").collect();
    let out = run(&["pub", url, topic], input.as_bytes());
    assert_eq!(out.code(), 0, "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_resumes_after_a_dropped_connection_without_gap_or_duplicate() {
    let serve = Serve::start(None);
    let url = serve.url("/ws");
    let topic = "test.resume";
    // The first message, and its position: the sub starts before it with --since EPOCH:0.
    let out = run(&["pub", "--print-position", &url, topic, "1"], b"");
    assert_eq!(out.code(), 0, "{out:?}");
    let position = out.stdout.strip_prefix("test.resume ").unwrap().to_string();
    let epoch = position.strip_suffix(":1").unwrap().to_string();

    let mut relay = Relay::start(serve.addr).await;
    let mut command = tether();
    command
        .args([
            "sub",
            "--json",
            "-n",
            "30",
            "--since",
            &format!("{epoch}:0"),
        ])
        .arg(format!("ws://{}/ws", relay.addr))
        .arg(topic)
        .stdin(Stdio::null());
    let mut sub = Process::spawn(command);

    let mut received: Vec<Value> = Vec::new();
    let mut read = |sub: &mut Process, n: usize| {
        for _ in 0..n {
            received.push(serde_json::from_str(&sub.stdout_line()).unwrap());
        }
    };
    publish(&url, topic, (2..=10).map(|i| i.to_string()));
    read(&mut sub, 10);

    relay.cut_and_hold();
    // Published while the sub is cut off: it must get them from history on resume.
    publish(&url, topic, (11..=20).map(|i| i.to_string()));
    relay.wait_accepted(2).await;
    relay.open();
    publish(&url, topic, (21..=30).map(|i| i.to_string()));
    read(&mut sub, 20);
    let out = sub.wait();
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stderr.contains("reconnecting in"), "{}", out.stderr);
    assert!(!out.stderr.contains("missing"), "{}", out.stderr);

    let offsets: Vec<u64> = received
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (1..=30).collect::<Vec<u64>>());
    for (i, message) in received.iter().enumerate() {
        assert_eq!(message["type"], "message");
        assert_eq!(message["topic"], topic);
        assert_eq!(message["epoch"], epoch.as_str());
        assert_eq!(message["data"], i as u64 + 1, "{message}");
    }
}

const AUTH: &str = "\
[[auth.tokens]]
token = \"publisher-token-0123456789\"
subscribe = [\"*\"]
publish = [\"news.*\"]

[auth.anonymous]
subscribe = [\"*\"]
publish = []
";

#[test]
fn pub_waits_for_acks_reports_refusals_and_sub_reads_history_since_a_position() {
    let serve = Serve::start(Some(AUTH));
    let url = serve.url("/ws");
    let token = "publisher-token-0123456789";

    // Anonymous clients may not publish: the refusal is reported, exit 8.
    let out = run(&["pub", &url, "news.local", "hello"], b"");
    assert_eq!(out.code(), 8, "{out:?}");
    assert!(
        out.stderr.contains("message 1 refused: forbidden"),
        "{}",
        out.stderr
    );

    // With the token: each line is a message, JSON as is, other text as a JSON string.
    let out = run(
        &[
            "pub",
            "--token",
            token,
            "--print-position",
            &url,
            "news.local",
        ],
        b"{\"headline\": \"first\"}\nplain text\n\n42\n",
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let positions: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(positions.len(), 3, "{positions:?}");
    let epoch = positions[0].split([' ', ':']).nth(1).unwrap().to_string();
    assert_eq!(positions[2], format!("news.local {epoch}:3"));
    // Outside the token's grant: refused; the other lines still go.
    let out = run(&["pub", "--token", token, &url, "other.topic"], b"1\n2\n");
    assert_eq!(out.code(), 8, "{out:?}");
    assert!(
        out.stderr.contains("2 of 2 messages refused"),
        "{}",
        out.stderr
    );

    // History after offset 1: messages 2 and 3; plain lines print the data (a string as its
    // text), --json the envelope.
    let since = format!("{epoch}:1");
    let out = run(
        &["sub", "-n", "2", "--since", &since, &url, "news.local"],
        b"",
    );
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "plain text\n42"),
        "{out:?}"
    );
    let out = run(
        &[
            "sub",
            "--json",
            "-n",
            "1",
            "--since",
            &format!("{epoch}:0"),
            &url,
            "news.local",
        ],
        b"",
    );
    assert_eq!(out.code(), 0, "{out:?}");
    let envelope: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(envelope["offset"], 1);
    assert_eq!(envelope["data"]["headline"], "first");
    assert!(envelope["ts"].as_u64().unwrap() > 0);

    // A bad token is refused at the handshake and not retried.
    let out = run(&["sub", "--token", "wrong", &url, "news.local"], b"");
    assert_eq!(out.code(), 5, "{out:?}");
    assert!(out.stderr.contains("401"), "{}", out.stderr);
    // A server that is not a pub/sub route says so.
    let out = run(&["pub", &serve.url("/echo"), "news.local", "x"], b"");
    assert_eq!(out.code(), 5, "{out:?}");
    assert!(out.stderr.contains("tether.pubsub.v1"), "{}", out.stderr);
}

/// A gateway that keeps history in memory loses it on restart: `sub` reconnects, learns from
/// the ack that its position is gone (recovered: false), says so, and goes on with the new
/// epoch's messages.
#[test]
fn sub_reports_a_reset_history_after_a_gateway_restart_and_goes_on() {
    let serve = Serve::start(None);
    let listen = serve.addr.to_string();
    let url = serve.url("/ws");
    let topic = "test.restart";
    let out = run(&["pub", "--print-position", &url, topic, "\"before\""], b"");
    assert_eq!(out.code(), 0, "{out:?}");
    let epoch = out
        .stdout
        .rsplit(' ')
        .next()
        .unwrap()
        .strip_suffix(":1")
        .unwrap()
        .to_string();

    let mut command = tether();
    command
        .args([
            "sub",
            "--json",
            "-n",
            "2",
            "--since",
            &format!("{epoch}:0"),
            &url,
            topic,
        ])
        .stdin(Stdio::null());
    let mut sub = Process::spawn(command);
    let first: Value = serde_json::from_str(&sub.stdout_line()).unwrap();
    assert_eq!(
        (first["offset"].as_u64(), first["data"].as_str()),
        (Some(1), Some("before"))
    );

    serve.stop();
    sub.stderr_line("the server closed the connection with 1001");
    let serve = Serve::start_at(&listen);
    // The sub is back once the ack told it the old position is gone.
    sub.stderr_line("history since the last position is gone");
    let out = run(&["pub", &url, topic, "\"after\""], b"");
    assert_eq!(out.code(), 0, "{out:?}");
    let second: Value = serde_json::from_str(&sub.stdout_line()).unwrap();
    assert_eq!(
        (second["offset"].as_u64(), second["data"].as_str()),
        (Some(1), Some("after"))
    );
    assert_ne!(second["epoch"], first["epoch"]);
    sub.stderr_line(&format!("{topic}: history was reset (epoch {epoch} is now"));
    let out = sub.wait();
    assert_eq!(out.code(), 0, "{out:?}");
    drop(serve);
}
