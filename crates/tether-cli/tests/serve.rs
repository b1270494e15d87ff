//! `tether serve` as a process: it starts with the defaults and the demo feeds, takes flags and
//! environment overrides, refuses bad config files naming the key, and on SIGTERM or SIGINT
//! sends close 1001 to every client and exits 0.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tether::{ClientBuilder, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PATIENCE: Duration = Duration::from_secs(20);

/// A running `tether` process; killed if the test ends without stopping it.
struct Tether {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Tether {
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Tether {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
        command
            .args(args)
            .env_remove("TETHER_CONFIG")
            .env_remove("TETHER_LISTEN")
            .env("TETHER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Tether {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle` and returns it.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {needle:?}; stderr so far:\n{}",
            self.seen.join("\n")
        );
    }

    /// The plain listener's address, from the startup banner.
    fn http_addr(&mut self) -> SocketAddr {
        let line = self.wait_for_line("listening on http://");
        let addr = line.split("http://").nth(1).unwrap().trim_end_matches('/');
        addr.parse().unwrap()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit on its own.
    fn wait(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends at the end of stderr: take every line it has.
                while let Ok(line) = self.lines.recv_timeout(PATIENCE) {
                    self.seen.push(line);
                }
                return (status, self.seen.join("\n"));
            }
            assert!(Instant::now() < deadline, "tether did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Reads messages until the close frame, then to the end of the stream; returns its code.
async fn close_code<S>(ws: &mut tether::WebSocket<S>) -> Option<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => {
                // Keep polling so our close reply goes out and the handshake completes.
                while let Ok(Some(_)) = tokio::time::timeout(PATIENCE, ws.next()).await {}
                return frame.map(|f| f.code.0);
            }
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tether-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn serve_runs_the_demo_and_stops_gracefully_on_sigterm() {
    let mut tether = Tether::spawn(&["serve", "--listen", "127.0.0.1:0"], &[]);
    let addr = tether.http_addr();
    tether.wait_for_line(&format!("ws://{addr}/ws"));

    let (status, page) = get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(page.contains("tether.pubsub.v1"));

    // The demo feeds publish at once.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, topics) = get(addr, "/api/topics").await;
        let topics: serde_json::Value = serde_json::from_str(&topics).unwrap();
        let names: Vec<&str> = topics["topics"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["topic"].as_str())
            .collect();
        if names.iter().any(|t| t.starts_with("stocks."))
            && names.iter().any(|t| t.starts_with("scores."))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no demo topics: {names:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (mut pubsub, response) = ClientBuilder::new(format!("ws://{addr}/ws"))
        .subprotocol("tether.pubsub.v1")
        .connect()
        .await
        .unwrap();
    assert_eq!(response.subprotocol.as_deref(), Some("tether.pubsub.v1"));
    let (mut echo, _) = ClientBuilder::new(format!("ws://{addr}/echo"))
        .connect()
        .await
        .unwrap();
    let readers = [
        tokio::spawn(async move { close_code(&mut pubsub).await }),
        tokio::spawn(async move { close_code(&mut echo).await }),
    ];

    tether.signal("TERM");
    for reader in readers {
        assert_eq!(reader.await.unwrap(), Some(1001));
    }
    let (status, output) = tether.wait();
    assert!(status.success(), "{status:?}\n{output}");
    assert!(output.contains("tether: stopped"), "{output}");
}

#[tokio::test]
async fn sigint_stops_it_too() {
    let mut tether = Tether::spawn(&["serve", "--no-demo"], &[("TETHER_LISTEN", "127.0.0.1:0")]);
    let addr = tether.http_addr();
    assert_eq!(get(addr, "/healthz").await.0, 200);
    tether.signal("INT");
    let (status, output) = tether.wait();
    assert!(status.success(), "{status:?}\n{output}");
}

#[tokio::test]
async fn flags_and_environment_override_the_file() {
    // Port 1 cannot be bound without privileges: the override must win for this to start.
    let config = temp_file(
        "override.toml",
        "listen = \"127.0.0.1:1\"\ndemo = false\n[[routes]]\npath = \"/\"\nkind = \"echo\"\n",
    );
    let config = config.to_str().unwrap();
    let mut tether = Tether::spawn(
        &["serve", "--config", config],
        &[("TETHER_LISTEN", "127.0.0.1:0")],
    );
    let addr = tether.http_addr();
    let (mut ws, _) = ClientBuilder::new(format!("ws://{addr}/"))
        .connect()
        .await
        .unwrap();
    futures_util::SinkExt::send(&mut ws, Message::text("via config"))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        Message::text("via config")
    );
    tether.signal("TERM");
    assert_eq!(close_code(&mut ws).await, Some(1001));
    assert!(tether.wait().0.success());
}

#[test]
fn bad_config_files_stop_startup_naming_the_key() {
    let cases = [
        (
            "kind.toml",
            "[[routes]]\npath = \"/ws\"\nkind = \"pubsub\"\n[[routes]]\npath = \"/x\"\nkind = \"foo\"\n",
            "routes[1].kind: unknown kind \"foo\", expected pubsub, echo, bridge or proxy (line 6, column 8)",
        ),
        (
            "unknown.toml",
            "[limits]\nmax_conections = 10\n",
            "limits.max_conections: unknown field `max_conections`",
        ),
        (
            "value.toml",
            "[limits]\nhandshake_timeout = \"soon\"\n",
            "limits.handshake_timeout: \"soon\" is not a duration",
        ),
        (
            "zero.toml",
            "[limits]\nmax_connections = 0\n",
            "limits.max_connections: must be at least 1",
        ),
        (
            "tls.toml",
            "[tls]\nlisten = \"127.0.0.1:0\"\ncert = \"missing-cert.pem\"\nkey = \"missing-key.pem\"\n",
            "tls.cert: cannot read certificates from",
        ),
        (
            "jwt.toml",
            "[auth.jwt]\nalgorithm = \"RS256\"\n",
            "auth.jwt.public_key_file: RS256 needs a PEM public key",
        ),
    ];
    for (name, text, expected) in cases {
        let path = temp_file(name, text);
        let tether = Tether::spawn(&["serve", "--config", path.to_str().unwrap()], &[]);
        let (status, output) = tether.wait();
        assert_eq!(status.code(), Some(1), "{name}: {output}");
        assert!(
            output.contains(expected),
            "{name}: expected {expected:?} in:\n{output}"
        );
        assert!(
            output.contains(name),
            "{name}: the file is not named:\n{output}"
        );
    }
}

#[test]
fn tls_flags_must_come_together() {
    let tether = Tether::spawn(&["serve", "--tls-listen", "127.0.0.1:0"], &[]);
    let (status, output) = tether.wait();
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("--tls-listen, --cert and --key"),
        "{output}"
    );
}

#[test]
fn a_busy_port_is_reported() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let tether = Tether::spawn(&["serve", "--listen", &addr], &[]);
    let (status, output) = tether.wait();
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains(&format!("listen: cannot listen on {addr}")),
        "{output}"
    );
}

/// The binary runs on jemalloc with the options of .cargo/config.toml: jemalloc prints its
/// options at exit when `_RJEM_MALLOC_CONF` asks for statistics, and the system allocator
/// prints nothing.
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[test]
fn the_binary_runs_on_jemalloc_with_the_workspace_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr);
    for option in [
        "opt.tcache_max: 131072",
        "opt.tcache_nslots_large: 4",
        "opt.dirty_decay_ms: 1000",
    ] {
        assert!(
            stats.contains(option),
            "no {option:?} in jemalloc's statistics: {}",
            &stats[..stats.len().min(2000)]
        );
    }
}
