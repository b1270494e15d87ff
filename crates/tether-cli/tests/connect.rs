//! `tether connect` as a process against `tether serve`: pipe round trips of text and
//! binary, `-v` output, keepalive pings, limits, and the exit status for a normal close, a
//! refused handshake, connect and TLS errors and timeouts. (tests/connect_python.rs does the
//! same against Python's `websockets`.)
//! (DNS failures are covered by a unit test in `src/exit.rs`: tests send traffic to
//! 127.0.0.1 only, and a lookup of an unknown name would ask the system's resolver.)
#![cfg(unix)]

mod support;

use std::process::Stdio;

use support::{Process, Serve, free_port, run, tether};

#[test]
fn text_and_binary_round_trip_through_the_gateways_echo_and_exit_0() {
    let serve = Serve::start(None);
    let out = run(
        &["connect", &serve.url("/echo")],
        "hello\nsecond line\n".as_bytes(),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "hello\nsecond line");

    let bytes = [0x00, 0x01, 0x7f, 0xfe, 0xff];
    let out = run(&["connect", "--binary", &serve.url("/echo")], &bytes);
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "00017ffeff"),
        "{out:?}"
    );
    let out = run(
        &[
            "connect",
            "-b",
            "--show-binary",
            "base64",
            &serve.url("/echo"),
        ],
        &bytes,
    );
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "AAF//v8="),
        "{out:?}"
    );
}

#[test]
fn verbose_shows_the_handshake_and_every_frame_on_the_wire() {
    let serve = Serve::start(None);
    let out = run(
        &["connect", "-v", "--no-compression", &serve.url("/echo")],
        b"hello\n",
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, "hello");
    let err = &out.stderr;
    for expected in [
        "> GET /echo HTTP/1.1",
        &format!("> Host: {}", serve.addr),
        "> Sec-WebSocket-Version: 13",
        "< HTTP/1.1 101 Switching Protocols",
        "< sec-websocket-accept: ",
        "* connected: subprotocol (none), compression off",
        "> frame text fin=1 rsv1=0 masked=1 len=5",
        "< frame text fin=1 rsv1=0 masked=0 len=5",
        "> frame close fin=1 rsv1=0 masked=1 len=2",
        "< frame close fin=1 rsv1=0 masked=0 len=2",
    ] {
        assert!(err.contains(expected), "no {expected:?} in:\n{err}");
    }
    // --no-compression offers no extension.
    assert!(!err.contains("> Sec-WebSocket-Extensions"), "{err}");

    // With compression, a compressible message shows as a frame with RSV1 set and fewer
    // bytes than the message: -v reports frames as they are on the wire.
    let line = "tether ".repeat(200);
    let out = run(
        &["connect", "-v", &serve.url("/echo")],
        format!("{line}\n").as_bytes(),
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(out.stdout, line);
    let compressed: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("< frame text fin=1 rsv1=1"))
        .collect();
    assert_eq!(compressed.len(), 1, "{}", out.stderr);
    let len: usize = compressed[0]
        .rsplit("len=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(len < line.len(), "{len} >= {}", line.len());
}

#[test]
fn refused_handshakes_exit_5_with_the_status_and_the_servers_body() {
    let serve = Serve::start(Some("allowed_origins = [\"https://app.example\"]\n"));
    let out = run(&["connect", &serve.url("/no-such-route")], b"");
    assert_eq!(out.code(), 5, "{out:?}");
    assert!(out.stderr.contains("404 Not Found"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("server said: no WebSocket route at this path"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("try: check the path"), "{}", out.stderr);

    let out = run(
        &[
            "connect",
            "--origin",
            "https://evil.example",
            &serve.url("/echo"),
        ],
        b"",
    );
    assert_eq!(out.code(), 5, "{out:?}");
    assert!(out.stderr.contains("403 Forbidden"), "{}", out.stderr);
    assert!(out.stderr.contains("server said: "), "{}", out.stderr);
    assert!(out.stderr.contains("--origin"), "{}", out.stderr);
    // The allowed origin passes.
    let out = run(
        &[
            "connect",
            "--origin",
            "https://app.example",
            &serve.url("/echo"),
        ],
        b"ok\n",
    );
    assert_eq!((out.code(), out.stdout.as_str()), (0, "ok"), "{out:?}");
}

#[test]
fn connect_and_tls_errors_have_their_own_statuses_and_name_the_address() {
    let port = free_port();
    let out = run(&["connect", &format!("ws://127.0.0.1:{port}/")], b"");
    assert_eq!(out.code(), 6, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        out.stderr
    );
    // wss to a plain server: TLS fails, and says what it saw.
    let serve = Serve::start(None);
    let out = run(&["connect", &format!("wss://{}/echo", serve.addr)], b"");
    assert_eq!(out.code(), 7, "{out:?}");
    assert!(
        out.stderr.contains("did not answer with TLS"),
        "{}",
        out.stderr
    );
}

#[test]
fn ping_interval_pings_an_idle_connection_and_the_pong_comes_back() {
    let serve = Serve::start(None);
    let mut command = tether();
    command
        .args([
            "connect",
            "-v",
            "--ping-interval",
            "0.2",
            &serve.url("/echo"),
        ])
        .stdin(Stdio::piped());
    let mut process = Process::spawn(command);
    // Nothing is sent: after 0.2 s of silence a ping goes out ("tether keepalive").
    process.stderr_line("> frame ping fin=1 rsv1=0 masked=1 len=16");
    process.stderr_line("< frame pong fin=1 rsv1=0 masked=0 len=16");
    drop(process.child.stdin.take());
    let out = process.wait();
    assert_eq!(out.code(), 0, "{out:?}");
}

#[test]
fn lines_longer_than_max_message_size_are_refused_not_buffered() {
    let serve = Serve::start(None);
    let long = format!("ok\n{}\n", "x".repeat(100));
    let out = run(
        &["connect", "--max-message-size", "64", &serve.url("/echo")],
        long.as_bytes(),
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert_eq!(out.stdout, "ok");
    assert!(
        out.stderr
            .contains("line 2 is longer than --max-message-size (64 bytes)"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_server_that_never_answers_the_handshake_times_out_with_exit_6() {
    // Accepts TCP and reads, never answers: the handshake waits until --connect-timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut tcp, &mut sink);
    });
    let out = run(
        &[
            "connect",
            "--connect-timeout",
            "0.3",
            &format!("ws://{addr}/"),
        ],
        b"",
    );
    assert_eq!(out.code(), 6, "{out:?}");
    assert!(
        out.stderr
            .contains("the connection was not open after 0.3 s"),
        "{}",
        out.stderr
    );
    // Our side closed: the silent server's read ends.
    silent.join().unwrap();
}
