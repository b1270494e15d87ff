//! `tether connect --listen-tcp`: native TCP clients reach a backend through the gateway's
//! bridge route. `redis-cli` talks to a real `redis-server` through
//! `tether connect --listen-tcp` → `tether serve` (kind = "bridge") → redis, all processes
//! started here on free ports and killed by PID. The Debian packages `redis-server` and
//! `redis-tools` come from `.ci/run`; in CI a missing one fails the test.
#![cfg(unix)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::redis::Redis;
use support::{Process, Serve, required_program, tether};

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
    let (Some(redis), Some(cli)) = (Redis::start(), required_program("redis-cli", "redis-tools"))
    else {
        return;
    };
    let redis_port = redis.port;
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

/// `tether connect --listen-tcp` to `url`; returns the process and the local port.
fn tunnel(url: &str) -> (Process, u16) {
    let mut command = tether();
    command
        .args(["connect", "--listen-tcp", "127.0.0.1:0", url])
        .stdin(Stdio::null());
    let mut tunnel = Process::spawn(command);
    let line = tunnel.stderr_line("listening on tcp://");
    let port = line
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
    (tunnel, port)
}

/// A TCP backend that serves each connection with `serve` on a thread of its own.
fn backend(serve: fn(std::net::TcpStream)) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(tcp));
        }
    });
    port
}

fn bridge_config(port: u16) -> String {
    format!(
        "[[routes]]\npath = \"/tcp\"\nkind = \"bridge\"\ntarget = \"127.0.0.1:{port}\"\n\
         allow = [\"127.0.0.0/8:{port}\"]\n"
    )
}

#[test]
fn listen_tcp_moves_8_mib_each_way_at_once_and_maps_eof_and_reset() {
    use std::io::Read;
    use std::net::TcpStream;

    // An echo backend: 8 MiB sent while 8 MiB come back, so both directions are full at
    // once and only flow control keeps memory bounded.
    let echo = backend(|tcp| {
        let mut reader = tcp.try_clone().unwrap();
        let mut writer = tcp;
        let _ = std::io::copy(&mut reader, &mut writer);
    });
    let serve = Serve::start(Some(&bridge_config(echo)));
    let (_tunnel, port) = tunnel(&serve.url("/tcp"));
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let sender = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    // All of it comes back before the client ends its side: WebSocket has no half-close, so
    // the client's EOF ends the session (as the gateway's bridge does with a client's close).
    let mut back = vec![0; data.len()];
    client.read_exact(&mut back).unwrap();
    sender.join().unwrap();
    assert!(
        back == data,
        "{} bytes back, {} sent",
        back.len(),
        data.len()
    );

    // A backend that answers and closes cleanly: the gateway closes with 1000, the client
    // reads the answer, then EOF.
    let polite = backend(|mut tcp| {
        let mut request = [0u8; 5];
        tcp.read_exact(&mut request).unwrap();
        tcp.write_all(b"bye\n").unwrap();
    });
    let serve = Serve::start(Some(&bridge_config(polite)));
    let (_tunnel, port) = tunnel(&serve.url("/tcp"));
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"hello").unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"bye\n");

    // A backend that resets: the gateway closes with 1014, and the client's connection is
    // reset too, not ended as if all went well.
    let rude = backend(|mut tcp| {
        let mut request = [0u8; 5];
        tcp.read_exact(&mut request).unwrap();
        // Zero linger (through tokio: std's is unstable): closing sends RST.
        tcp.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let tcp = tokio::net::TcpStream::from_std(tcp).unwrap();
            tcp.set_zero_linger().unwrap();
        });
    });
    let serve = Serve::start(Some(&bridge_config(rude)));
    let (mut tunnel, port) = tunnel(&serve.url("/tcp"));
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(b"hello").unwrap();
    let mut rest = Vec::new();
    let err = client.read_to_end(&mut rest).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    let line = tunnel.stderr_line("[1] 127.0.0.1:");
    assert!(line.contains("closed by the server with 1014"), "{line}");
    assert!(line.contains("TCP connection reset"), "{line}");
}
