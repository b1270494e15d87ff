//! `tether connect --listen-tcp`: native TCP clients reach a backend through the gateway's
//! bridge route. `redis-cli` talks to a real `redis-server` through
//! `tether connect --listen-tcp` → `tether serve` (kind = "bridge") → redis, all processes
//! started here on free ports and killed by PID. The Debian packages `redis-server` and
//! `redis-tools` come from `.ci/run`; in CI a missing one fails the test.
#![cfg(unix)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{Process, Serve, free_port, required_program, tether};

/// A redis-server on a free port, persistence off.
fn start_redis(program: &std::path::Path) -> (Process, u16) {
    let port = free_port();
    let mut command = Command::new(program);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null());
    let mut redis = Process::spawn(command);
    while !redis.stdout_line().contains("Ready to accept connections") {}
    (redis, port)
}

/// Runs redis-cli against `port` with `args`, `input` on stdin; returns stdout.
fn redis_cli(program: &std::path::Path, port: u16, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn redis_cli_reaches_redis_server_through_listen_tcp_and_the_gateways_bridge() {
    let (Some(server), Some(cli)) = (
        required_program("redis-server", "redis-server"),
        required_program("redis-cli", "redis-tools"),
    ) else {
        return;
    };
    let (_redis, redis_port) = start_redis(&server);
    let serve = Serve::start(Some(&format!(
        "[[routes]]\npath = \"/redis\"\nkind = \"bridge\"\ntarget = \"127.0.0.1:{redis_port}\"\n\
         allow = [\"127.0.0.0/8:{redis_port}\"]\n"
    )));
    let mut command = tether();
    command
        .args([
            "connect",
            "--listen-tcp",
            "127.0.0.1:0",
            &serve.url("/redis"),
        ])
        .stdin(Stdio::null());
    let mut tunnel = Process::spawn(command);
    let line = tunnel.stderr_line("listening on tcp://");
    let port: u16 = line
        .split("tcp://")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    assert_eq!(redis_cli(&cli, port, &["PING"], b""), "PONG");
    // Each redis-cli run is its own TCP connection, so its own WebSocket.
    assert_eq!(
        redis_cli(&cli, port, &["SET", "greeting", "hello"], b""),
        "OK"
    );
    assert_eq!(redis_cli(&cli, port, &["GET", "greeting"], b""), "hello");
    // 4 MiB up (-x reads the value from stdin) and back down: many messages each way,
    // moved under flow control.
    let big: Vec<u8> = (0..4 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(redis_cli(&cli, port, &["-x", "SET", "big"], &big), "OK");
    assert_eq!(
        redis_cli(&cli, port, &["STRLEN", "big"], b""),
        (4 << 20).to_string()
    );
    let back = redis_cli(&cli, port, &["GETRANGE", "big", "4194300", "-1"], b"");
    assert_eq!(back.as_bytes(), &big[4194300..]);

    // Every connection ended with a closing handshake: the client's EOF sent 1000 and the
    // gateway answered once the backend side was done.
    for n in 1..=6 {
        let line = tunnel.stderr_line(&format!("[{n}] 127.0.0.1:"));
        assert!(line.contains("closed by the server with 1000"), "{line}");
    }
    // The gateway saw the bytes go through its bridge route.
    let metrics = http_get(serve.addr, "/metrics");
    assert!(
        metrics.contains("tether_bridge_sessions_total{route=\"/redis\"} 6"),
        "{metrics}"
    );
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::Read;
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    tcp.read_to_string(&mut text).unwrap();
    text
}
