//! Attacks on the connection budget: a handshake dribbled one byte per second (slowloris),
//! thousands of half-open handshakes at once from many addresses, and one address holding
//! more unfinished connections than `limits.max_pending_per_ip`. The first two must be
//! dropped at `limits.handshake_timeout`, the third refused at once, and new clients must be
//! served meanwhile.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::{HANDSHAKE_TIMEOUT, PENDING_PER_IP, Server, good_jwt};
use crate::table::Outcome;
use crate::wire::{PATIENCE, exchange};

/// Sockets the half-open flood holds at once (the process limit is 20,000 files).
pub const HALF_OPEN: usize = 3000;
/// Source addresses the flood comes from (127.0.0.10 on), each under `PENDING_PER_IP`.
const FLOOD_SOURCES: usize = 12;
const _: () = assert!(HALF_OPEN.div_ceil(FLOOD_SOURCES) <= PENDING_PER_IP);
/// How late after the timeout a drop still counts as "at the timeout".
const SLACK: Duration = Duration::from_millis(1500);

/// One byte of a handshake per second until the server hangs up.
pub async fn slowloris(addr: SocketAddr) -> Outcome {
    let request = format!(
        "GET /echo?token={} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n",
        good_jwt()
    );
    let started = Instant::now();
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut bytes = request.bytes();
    let mut sent = 0;
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = started + HANDSHAKE_TIMEOUT + PATIENCE;
    loop {
        tokio::select! {
            read = tcp.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick() => {
                let Some(byte) = bytes.next() else { break };
                if tcp.write_all(&[byte]).await.is_err() {
                    break;
                }
                sent += 1;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the dribbling client was never dropped"
        );
    }
    let elapsed = started.elapsed();
    let on_time = elapsed >= HANDSHAKE_TIMEOUT && elapsed <= HANDSHAKE_TIMEOUT + SLACK;
    let answered = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let actual = match (on_time, answered.is_empty()) {
        (true, true) => "dropped at handshake_timeout, no response".to_string(),
        (true, false) => format!("dropped at handshake_timeout after {answered:?}"),
        (false, _) => format!("dropped after {:.2}s", elapsed.as_secs_f64()),
    };
    Outcome::new(
        "flood",
        "slowloris: 1 byte/s of a handshake",
        "dropped at handshake_timeout, no response",
        actual,
        format!(
            "{sent} bytes sent, closed after {:.2}s (timeout {:?})",
            elapsed.as_secs_f64(),
            HANDSHAKE_TIMEOUT
        ),
    )
}

/// `HALF_OPEN` connections each send part of a request head and then nothing.
pub async fn half_open(server: &Server) -> (Outcome, Outcome) {
    let addr = server.addr;
    let fds_before = server.open_fds();
    let started = Instant::now();
    let connecting: Vec<_> = (0..HALF_OPEN)
        .map(|i| {
            tokio::spawn(async move {
                let mut tcp = connect_from(10 + (i % FLOOD_SOURCES) as u8, addr).await;
                tcp.write_all(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websock")
                    .await
                    .unwrap();
                tcp
            })
        })
        .collect();
    let mut held = Vec::with_capacity(HALF_OPEN);
    for task in connecting {
        held.push(task.await.unwrap());
    }
    let opened = started.elapsed();

    // While they are all held: a plain request and a new WebSocket are served.
    let served_started = Instant::now();
    let health = exchange(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await
    .map(|r| r.status);
    let echoed = echo_once(addr).await;
    let served_in = served_started.elapsed();
    // The server holds them all at once (one descriptor each): watch its descriptors until
    // every connection is accepted, at most until the first could time out.
    // When it holds them all, it has accepted the last one: each is timed from its accept,
    // which under load comes well after the client's connect completed (the backlog).
    let mut server_holds = 0;
    let mut all_accepted = opened;
    while server_holds < HALF_OPEN && started.elapsed() < HANDSHAKE_TIMEOUT {
        server_holds = server_holds.max(server.open_fds().saturating_sub(fds_before));
        all_accepted = started.elapsed();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let served = Outcome::new(
        "flood",
        format!("new clients during {HALF_OPEN} half-open handshakes"),
        "GET /healthz 200, echo round trip ok",
        format!(
            "GET /healthz {}, echo round trip {}",
            health.map_or("none".into(), |s| s.to_string()),
            if echoed { "ok" } else { "failed" }
        ),
        format!(
            "{} sockets opened in {:.2}s, the server held {server_holds} at once; served in {:.0} ms",
            held.len(),
            opened.as_secs_f64(),
            served_in.as_secs_f64() * 1e3
        ),
    );

    // Every one of them is dropped by the server at its timeout.
    let mut dropped = 0;
    let mut latest = Duration::ZERO;
    let deadline = started + opened + HANDSHAKE_TIMEOUT + PATIENCE;
    for mut tcp in held {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut buf = [0u8; 256];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(left, tcp.read(&mut buf)).await {
            dropped += 1;
        }
        latest = latest.max(started.elapsed());
    }
    let limit = all_accepted.max(opened) + HANDSHAKE_TIMEOUT + SLACK;
    let actual = if server_holds < HALF_OPEN {
        format!("only {server_holds} held at once")
    } else if latest <= limit {
        format!("{dropped} held at once, {dropped} dropped at handshake_timeout")
    } else {
        format!(
            "{dropped} dropped, the last after {:.2}s",
            latest.as_secs_f64()
        )
    };
    let timeouts = Outcome::new(
        "flood",
        format!("{HALF_OPEN} half-open handshakes at once"),
        format!("{HALF_OPEN} held at once, {HALF_OPEN} dropped at handshake_timeout"),
        actual,
        format!(
            "all closed {:.2}s after the first connect (opening took {:.2}s, the server had \
             accepted them all by {:.2}s)",
            latest.as_secs_f64(),
            opened.as_secs_f64(),
            all_accepted.as_secs_f64()
        ),
    );
    (served, timeouts)
}

async fn echo_once(addr: SocketAddr) -> bool {
    let Ok(Ok((mut ws, _))) = tokio::time::timeout(
        PATIENCE,
        ClientBuilder::new(format!("ws://{addr}/echo?token={}", good_jwt())).connect(),
    )
    .await
    else {
        return false;
    };
    if ws.send(Message::text("during the flood")).await.is_err() {
        return false;
    }
    let ok = matches!(
        tokio::time::timeout(PATIENCE, ws.next()).await,
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "during the flood"
    );
    let _ = ws.close(None).await;
    ok
}

/// A TCP connection to `addr` from the source address 127.0.0.`source`.
async fn connect_from(source: u8, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from(([127, 0, 0, source], 0)))
        .unwrap();
    socket.connect(addr).await.unwrap()
}

/// One address holds `PENDING_PER_IP` unfinished requests; its next connection gets 503 at
/// once, and another address is still served.
pub async fn pending_per_ip(server: &Server) -> Outcome {
    const SOURCE: u8 = 200;
    let addr = server.addr;
    let started = Instant::now();
    // All at once, so that none nears `handshake_timeout` while the others still connect.
    let connecting: Vec<_> = (0..PENDING_PER_IP)
        .map(|_| {
            tokio::spawn(async move {
                let mut tcp = connect_from(SOURCE, addr).await;
                tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    .await
                    .unwrap();
                tcp
            })
        })
        .collect();
    let mut held = Vec::with_capacity(PENDING_PER_IP);
    for task in connecting {
        held.push(task.await.unwrap());
    }
    // Well before the server drops the first of them at `handshake_timeout`.
    let deadline = started + HANDSHAKE_TIMEOUT * 3 / 4;
    // A connection takes its slot as the server starts serving it, which it counts in
    // `tether_http_connections_open` in the same step: wait until all of them are counted
    // (with the connection that asks).
    while http_connections_open(addr).await <= PENDING_PER_IP && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    // An accepted socket takes its slot when its task first runs: until all have, one more
    // may still be served. The answer that counts is the first 503, and how fast it came.
    let (refused, refused_in) = loop {
        let started = Instant::now();
        let mut tcp = connect_from(SOURCE, addr).await;
        tcp.write_all(request).await.unwrap();
        let status = crate::wire::read_reply(&mut tcp)
            .await
            .map(|(r, _)| r.status);
        if status == Some(503) || Instant::now() > deadline {
            break (status, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut other = connect_from(SOURCE + 1, addr).await;
    other.write_all(request).await.unwrap();
    let other_status = crate::wire::read_reply(&mut other)
        .await
        .map(|(r, _)| r.status);
    drop(held);
    let show = |s: Option<u16>| s.map_or("no answer".to_string(), |s| s.to_string());
    Outcome::new(
        "flood",
        format!("{PENDING_PER_IP} unfinished requests from one address, then one more"),
        "503 at once; another address 200",
        format!(
            "{}{}; another address {}",
            show(refused),
            if refused_in < Duration::from_secs(1) {
                " at once"
            } else {
                " late"
            },
            show(other_status)
        ),
        format!(
            "answered in {:.1} ms (limits.max_pending_per_ip = {PENDING_PER_IP})",
            refused_in.as_secs_f64() * 1e3
        ),
    )
}

/// The server's `tether_http_connections_open` gauge (asked from an address of its own).
async fn http_connections_open(addr: SocketAddr) -> usize {
    let mut tcp = connect_from(250, addr).await;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let Some((reply, _)) = crate::wire::read_reply(&mut tcp).await else {
        return 0;
    };
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|l| l.strip_prefix("tether_http_connections_open "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
