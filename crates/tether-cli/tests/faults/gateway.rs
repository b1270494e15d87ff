//! `tether serve` as a child process for the fault tests, and what they read from it: HTTP
//! over raw sockets (`/healthz`, `/metrics`, publishes), and its CPU time, RSS and open file
//! descriptors from `/proc`. The soak test (`tests/soak.rs`) shares this file.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{PATIENCE, Process, scratch_file};

/// A running `tether serve` (killed on drop by [`Process`]).
pub struct Gateway {
    pub addr: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub process: Process,
}

impl Gateway {
    /// `tether serve --config FILE` with `config` written to `name` in the scratch directory,
    /// through `wrapper` (e.g. `prlimit --nofile=64:64 --`) when given.
    pub fn start(name: &str, config: &str, wrapper: &[&str]) -> Gateway {
        let file = scratch_file(name, config);
        Gateway::start_file(&file, wrapper)
    }

    /// `tether serve --config FILE` on an existing file.
    pub fn start_file(file: &Path, wrapper: &[&str]) -> Gateway {
        let binary = env!("CARGO_BIN_EXE_tether");
        let mut command = match wrapper.split_first() {
            None => Command::new(binary),
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
        };
        for var in ["TETHER_CONFIG", "TETHER_LISTEN", "TETHER_TOKEN"] {
            command.env_remove(var);
        }
        command
            .env("TETHER_LOG", "warn")
            .args(["serve", "--no-demo", "--config"])
            .arg(file)
            .stdin(Stdio::null());
        let mut process = Process::spawn(command);
        let addr = address(&process.stderr_line("listening on http://"), "http://");
        let tls = config_has_tls(file)
            .then(|| address(&process.stderr_line("listening on https://"), "https://"));
        Gateway { addr, tls, process }
    }

    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Sends `signal` (e.g. `-HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.process.child.try_wait().unwrap().is_none()
    }

    /// `GET path`: status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http(self.addr, "GET", path, "").await
    }

    /// The value of the metric line starting with `name` (labels included), from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let (status, text) = self.get("/metrics").await;
        assert_eq!(status, 200, "{text}");
        metric(&text, name).unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
    }
}

fn config_has_tls(file: &Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|t| t.lines().any(|l| l.trim() == "[tls]"))
}

fn address(line: &str, scheme: &str) -> SocketAddr {
    line.split(scheme)
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

/// The value of the first sample whose name and labels are exactly `name`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(n, _)| *n == name))
        .and_then(|(_, v)| v.parse().ok())
}

/// One HTTP/1.1 request on a new connection (`Connection: close`): status and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        tcp.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    };
    let raw = tokio::time::timeout(PATIENCE, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer in time"))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: not HTTP: {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

/// `POST /api/publish/{topic}`: the offset of the acknowledged publish, or `None` if refused.
pub async fn publish(addr: SocketAddr, topic: &str, data: &str) -> Option<u64> {
    let (status, body) = http(addr, "POST", &format!("/api/publish/{topic}"), data).await;
    if status != 200 {
        return None;
    }
    let ack: serde_json::Value = serde_json::from_str(&body).ok()?;
    ack["offset"].as_u64()
}

/// User plus system CPU time of `pid`, in clock ticks (`/proc/PID/stat` fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// The number of open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The resident set size of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
