//! `tether connect` as a process, against `tether serve` and against Python's `websockets`
//! (tests/peers/record_server.py, which records the requests it gets): pipe round trips of
//! text and binary, the headers and subprotocol the server saw, `-v` output, and the exit
//! status for a normal close, another close code, a refused handshake and connect errors.
//! (DNS failures are covered by a unit test in `src/exit.rs`: tests send traffic to
//! 127.0.0.1 only, and a lookup of an unknown name would ask the system's resolver.)
#![cfg(unix)]

mod support;

use std::process::{Command, Stdio};

use serde_json::Value;
use support::{Process, Serve, free_port, python, run, tether};

/// The recording Python server.
struct Recorder {
    process: Process,
    port: u16,
}

impl Recorder {
    fn start() -> Recorder {
        let mut command = Command::new(python());
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/peers/record_server.py"
            ))
            .stdin(Stdio::null());
        let mut process = Process::spawn(command);
        let line = process.stdout_line();
        let port = line
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("expected PORT, got {line:?}"))
            .parse()
            .unwrap();
        Recorder { process, port }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// The next recorded event of kind `event`.
    fn next(&mut self, event: &str) -> Value {
        loop {
            let line = self.process.stdout_line();
            let value: Value = serde_json::from_str(&line).unwrap();
            if value["event"] == event {
                return value;
            }
        }
    }
}

/// The value of the header `name` in a recorded request.
fn header<'a>(request: &'a Value, name: &str) -> Option<&'a str> {
    request["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|pair| pair[1].as_str().unwrap())
}

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
fn python_websockets_sees_the_headers_origin_and_subprotocol_and_echoes_both_kinds() {
    let mut server = Recorder::start();
    let out = run(
        &[
            "connect",
            "-H",
            "X-Trace: abc 123",
            "-H",
            "Cookie: session=s1",
            "--token",
            "t0ken",
            "--origin",
            "https://app.example",
            "--subprotocol",
            "nope.v0",
            "--subprotocol",
            "chat.v1",
            "-n",
            "2",
            &server.url("/room?x=1"),
        ],
        b"one\ntwo\n",
    );
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "one\ntwo"),
        "{out:?}"
    );
    let request = server.next("request");
    assert_eq!(request["path"], "/room?x=1");
    assert_eq!(header(&request, "X-Trace"), Some("abc 123"));
    assert_eq!(header(&request, "Cookie"), Some("session=s1"));
    assert_eq!(header(&request, "Authorization"), Some("Bearer t0ken"));
    assert_eq!(header(&request, "Origin"), Some("https://app.example"));
    assert_eq!(
        header(&request, "Sec-WebSocket-Protocol"),
        Some("nope.v0, chat.v1")
    );
    assert!(
        header(&request, "Sec-WebSocket-Extensions")
            .unwrap()
            .contains("permessage-deflate")
    );
    let open = server.next("open");
    assert_eq!(open["subprotocol"], "chat.v1");
    let closed = server.next("closed");
    assert_eq!(closed["code"], 1000);

    let out = run(
        &[
            "connect",
            "-b",
            "-n",
            "1",
            "--no-compression",
            &server.url("/bin"),
        ],
        &[0xde, 0xad, 0xbe, 0xef],
    );
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "deadbeef"),
        "{out:?}"
    );
    let request = server.next("request");
    assert_eq!(header(&request, "Sec-WebSocket-Extensions"), None);
    assert_eq!(server.next("open")["subprotocol"], Value::Null);
}

#[test]
fn python_websockets_verbose_close_codes_and_refusal() {
    let mut server = Recorder::start();
    let out = run(
        &[
            "connect",
            "-v",
            "--close",
            "4001:done",
            "-n",
            "1",
            &server.url("/v"),
        ],
        b"ping me\n",
    );
    assert_eq!((out.code(), out.stdout.as_str()), (0, "ping me"), "{out:?}");
    assert!(out.stderr.contains("> GET /v HTTP/1.1"), "{}", out.stderr);
    assert!(
        out.stderr.contains("< HTTP/1.1 101 Switching Protocols"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("> frame close fin=1 rsv1=0 masked=1 len=6"),
        "{}",
        out.stderr
    );
    let closed = server.next("closed");
    assert_eq!(
        (closed["code"].as_u64(), closed["reason"].as_str()),
        (Some(4001), Some("done"))
    );

    // The server closes with 4000 while stdin is still open: exit 3, with the code.
    let mut command = tether();
    command
        .args(["connect", &server.url("/close4000")])
        .stdin(Stdio::piped());
    let mut process = Process::spawn(command);
    let stdin = process.child.stdin.take().unwrap();
    let out = process.wait();
    drop(stdin);
    assert_eq!(out.code(), 3, "{out:?}");
    assert!(
        out.stderr
            .contains("the server closed the connection with 4000: custom goodbye"),
        "{}",
        out.stderr
    );

    let out = run(&["connect", &server.url("/refuse")], b"");
    assert_eq!(out.code(), 5, "{out:?}");
    assert!(out.stderr.contains("403 Forbidden"), "{}", out.stderr);
    assert!(
        out.stderr.contains("server said: origin not allowed here"),
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
fn ctrl_c_closes_with_1001_and_exits_0() {
    let mut server = Recorder::start();
    let mut command = tether();
    command
        .args(["connect", "-v", &server.url("/interrupted")])
        .stdin(Stdio::piped());
    let mut process = Process::spawn(command);
    process.stderr_line("* connected");
    let status = Command::new("kill")
        .args(["-INT", &process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    process.stderr_line("> frame close fin=1 rsv1=0 masked=1 len=13");
    let stdin = process.child.stdin.take();
    let out = process.wait();
    drop(stdin);
    assert_eq!(out.code(), 0, "{out:?}");
    let closed = server.next("closed");
    assert_eq!(
        (closed["code"].as_u64(), closed["reason"].as_str()),
        (Some(1001), Some("interrupted"))
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

#[test]
fn a_closed_stdout_closes_with_1001_and_exits_0() {
    use std::io::{BufRead, BufReader, Write};

    /// Kills the child (by PID) if the test ends early.
    struct Guard(Option<std::process::Child>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(child) = &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    let mut server = Recorder::start();
    let mut guard = Guard(Some(
        tether()
            .args(["connect", &server.url("/head")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let child = guard.0.as_mut().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdin.write_all(b"first\n").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");
    // Like `| head -1`: the reader goes away, then another message arrives.
    drop(stdout);
    stdin.write_all(b"second\n").unwrap();
    let closed = server.next("closed");
    assert_eq!(
        (closed["code"].as_u64(), closed["reason"].as_str()),
        (Some(1001), Some("stdout closed"))
    );
    let out = guard.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
