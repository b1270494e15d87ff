//! The `tether serve` process under attack: its config (every route kind, JWT auth, an Origin
//! allow-list, small limits), a static root with a secret beside it, a bridge backend, and
//! its resident memory read from `/proc/PID/status`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

/// The HS256 secret of the gateway's `[auth.jwt]`.
pub const SECRET: &str = "hostile-input-test-secret-32-bytes!!";
/// The one Origin browsers may open WebSockets from.
pub const GOOD_ORIGIN: &str = "https://good.example";
/// `limits.max_message_size` (and `max_frame_size`) of the test config.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// `limits.handshake_timeout` of the test config.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// `limits.max_pending_per_ip` of the test config (the default).
pub const PENDING_PER_IP: usize = 256;
/// The secret file beside the static root, which no request may read.
pub const SECRET_TEXT: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";

/// A running `tether serve`, killed by PID when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The allowed bridge backend; accepted connections are dropped.
    _backend: TcpListener,
}

impl Server {
    /// Writes the config and the files it names into `dir`, starts `tether serve` on port 0.
    pub fn start(dir: &Path) -> Server {
        let _ = std::fs::remove_dir_all(dir);
        let root = dir.join("public");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<h1>hostile</h1>").unwrap();
        std::fs::write(dir.join("secret.txt"), SECRET_TEXT).unwrap();
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = backend.local_addr().unwrap().port();
        let tokens = dir.join("bridge-tokens.txt");
        std::fs::write(
            &tokens,
            format!("good: 127.0.0.1:{port}\noutside: 10.255.255.1:22\n"),
        )
        .unwrap();
        let config = dir.join("tether.toml");
        std::fs::write(&config, config_text(&root, &tokens, port)).unwrap();

        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env_remove("TETHER_CONFIG")
            .env_remove("TETHER_LISTEN")
            .env_remove("TETHER_STATIC_ROOT")
            .env("TETHER_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("tether did not start:\n{}", seen.join("\n")));
            let line: String = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("tether did not start:\n{}", seen.join("\n")));
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.trim_end_matches('/').parse().unwrap();
            }
            seen.push(line);
        };
        Server {
            child,
            addr,
            _backend: backend,
        }
    }

    /// The process's resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    /// Whether the process is still running (it must never exit under attack).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn config_text(root: &Path, tokens: &PathBuf, port: u16) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
demo = false
shutdown_timeout = "2s"
allowed_origins = ["{GOOD_ORIGIN}"]

[[routes]]
path = "/ws"
kind = "pubsub"

[[routes]]
path = "/echo"
kind = "echo"

[[routes]]
path = "/vnc"
kind = "bridge"
token_file = {tokens:?}
allow = ["127.0.0.1:{port}"]

[static]
root = {root:?}

[limits]
max_message_size = "1 MiB"
max_frame_size = "1 MiB"
handshake_timeout = "5s"
max_pending_per_ip = {PENDING_PER_IP}

[auth.jwt]
secret = "{SECRET}"
default_subscribe = ["public.*"]
default_publish = ["public.*"]
"#
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 JWT over `claims`, signed with `secret`.
pub fn jwt_with(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A valid token for an hour, with the default permissions (`public.*`).
pub fn good_jwt() -> String {
    jwt_with(SECRET, json!({"exp": now() + 3600}))
}

/// A token that expired long ago (beyond any leeway).
pub fn expired_jwt() -> String {
    jwt_with(SECRET, json!({"exp": now() - 3600}))
}

/// `{"alg":"none"}` with valid claims and an empty signature (RFC 7519 §6.1 unsecured JWT).
pub fn unsigned_jwt() -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64.encode(json!({"exp": now() + 3600, "pub": ["*"]}).to_string());
    format!("{header}.{claims}.")
}
