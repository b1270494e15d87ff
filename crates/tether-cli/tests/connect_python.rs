//! `tether connect` against Python's `websockets` (tests/peers/record_server.py, which
//! records the requests it gets): the headers, origin, token and subprotocol the server saw,
//! text and binary round trips, `-v` output, close codes both ways, a refused handshake, and
//! polite closes on Ctrl-C and on a closed stdout.
#![cfg(unix)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{PATIENCE, Process, python, run, tether};

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

    /// The next recorded event of kind `event` if the server records one within `wait`.
    fn next_within(&mut self, event: &str, wait: Duration) -> Option<Value> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.process.stdout_line_within(left)?;
            let value: Value = serde_json::from_str(&line).unwrap();
            if value["event"] == event {
                return Some(value);
            }
        }
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
    // Like `yes | tether connect URL | head -1`: the reader goes away and more messages arrive;
    // the first echo that cannot be written ends the session. One line may not be enough: a
    // process that another test spawns at that moment holds a copy of the pipe's read end
    // until it execs, and a write that lands then succeeds. So a line a second, until the
    // server records the close.
    drop(stdout);
    let mut closed = None;
    for attempt in 0..PATIENCE.as_secs() {
        // Once the command has exited, its stdin is gone too: the write error is expected.
        let _ = stdin.write_all(format!("more {attempt}\n").as_bytes());
        closed = server.next_within("closed", Duration::from_secs(1));
        if closed.is_some() {
            break;
        }
    }
    let closed = closed.expect("the server saw no close after stdout was closed");
    assert_eq!(
        (closed["code"].as_u64(), closed["reason"].as_str()),
        (Some(1001), Some("stdout closed"))
    );
    let out = guard.0.take().unwrap().wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
