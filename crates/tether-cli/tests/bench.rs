//! `tether bench` against real servers over loopback: `tether serve` as a child process,
//! and a server of this test that corrupts an echo. Each run is short (well under 2 s).

mod support;

use std::net::SocketAddr;
use std::sync::mpsc;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::{Output, Process, Serve, run, tether};
use tether::Message;

/// `tether bench ARGS --json`: the exit code and the JSON object printed.
fn bench_json(args: &[&str]) -> (Output, Value) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = run(&all, b"");
    let json = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {out:?}"));
    (out, json)
}

/// `tether bench echo` on one connection with 4 in flight for 400 ms, plus `extra`.
fn echo_one_connection(url: &str, extra: &[&str]) -> (Output, Value) {
    let mut args = vec![
        "echo",
        "--url",
        url,
        "-c",
        "1",
        "--in-flight",
        "4",
        "--duration",
        "400ms",
        "--warmup",
        "0s",
    ];
    args.extend_from_slice(extra);
    bench_json(&args)
}

fn assert_common_fields(json: &Value, mode: &str) {
    assert_eq!(json["mode"], mode, "{json}");
    for field in [
        "url",
        "duration_s",
        "messages",
        "messages_per_s",
        "mb_per_s",
        "errors",
        "drops",
        "load_cpu_percent",
        "load_bound",
    ] {
        assert!(json.get(field).is_some(), "{field} missing: {json}");
    }
    for quantile in ["p50", "p99", "p999", "max"] {
        assert!(
            json["latency_us"][quantile].is_u64(),
            "latency {quantile}: {json}"
        );
    }
    assert!(json["load_bound"].is_boolean(), "{json}");
}

#[test]
fn echo_against_tether_serve_checks_every_echo() {
    let serve = Serve::start(None);
    let url = serve.url("/echo");
    let pid = serve.process.child.id().to_string();
    let (out, json) = bench_json(&[
        "echo",
        "--url",
        &url,
        "-c",
        "4",
        "--size",
        "16",
        "--in-flight",
        "8",
        "--duration",
        "800ms",
        "--warmup",
        "100ms",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_common_fields(&json, "echo");
    assert_eq!(json["connections"], 4);
    assert_eq!(json["size"], 16);
    assert_eq!(json["in_flight"], 8);
    assert_eq!(json["verify"], "sequence");
    assert_eq!(json["duration_s"], 0.8);
    assert!(json["messages"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    assert_eq!(json["drops"], 0, "{json}");
    let p50 = json["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50 <= json["latency_us"]["max"].as_u64().unwrap());
    // The server's CPU over the 800 ms window: it echoed, so it used some, and one
    // process's CPU time on this machine's cores cannot exceed two cores' worth.
    let used = json["server_cpu_s"].as_f64().unwrap();
    assert!(used > 0.0 && used <= 0.8 * 2.0 + 0.02, "{json}");
    let percent = json["server_cpu_percent"].as_f64().unwrap();
    assert!((percent - used / 0.8 * 100.0).abs() <= 0.1, "{json}");
    let per_message = json["server_cpu_us_per_message"].as_f64().unwrap();
    let messages = json["messages"].as_f64().unwrap();
    assert!(
        (per_message - used * 1e6 / messages).abs() <= 0.01,
        "{json}"
    );
    // --json with stderr not a terminal: no progress line.
    assert!(!out.stderr.contains("[echo]"), "{}", out.stderr);
}

#[test]
fn echo_of_large_text_messages_and_request_response() {
    let serve = Serve::start(None);
    let url = serve.url("/echo");
    let (out, json) = bench_json(&[
        "echo",
        "--url",
        &url,
        "-c",
        "2",
        "--size",
        "70000",
        "--request-response",
        "--text",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(json["in_flight"], 1);
    assert_eq!(json["text"], true);
    let messages = json["messages"].as_u64().unwrap();
    assert!(messages > 0, "{json}");
    let mb = json["mb_per_s"].as_f64().unwrap();
    let expected = messages as f64 * 70_000.0 / 0.5 / 1e6;
    assert!((mb - expected).abs() < 0.01, "{mb} vs {expected}");
}

/// How the test's echo server misbehaves.
#[derive(Clone, Copy, Default)]
struct Misbehaviour {
    /// Change one byte of this echo (counting from 1)...
    corrupt_at: Option<usize>,
    /// ...this one (counting from 0).
    corrupt_byte: usize,
    /// Do not echo this message (counting from 1).
    drop_at: Option<usize>,
    /// Send a ping before every this-many-th echo.
    ping_every: Option<usize>,
}

/// Binds a loopback port and serves it with `serve` on a thread of its own, on a
/// current-thread runtime (the test servers below); returns the address.
fn serve_on_a_thread<F, Fut>(serve: F) -> SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            serve(tokio::net::TcpListener::from_std(listener).unwrap()).await;
        });
    });
    addr
}

/// An echo server for one connection; when the connection ends its thread reports the
/// pings it sent, and the pongs it received that did and did not match one of them.
fn echo_server(misbehaviour: Misbehaviour) -> (SocketAddr, mpsc::Receiver<(usize, usize, usize)>) {
    let (done, report) = mpsc::channel();
    let addr = serve_on_a_thread(move |listener| async move {
        // One connection is enough: the tests run the tool with -c 1.
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tether::accept(stream).await.unwrap();
        let (mut count, mut pings, mut pongs, mut unmatched) = (0, Vec::new(), 0, 0);
        while let Some(Ok(message)) = ws.next().await {
            let reply = match message {
                Message::Binary(data) => {
                    count += 1;
                    let mut data = data.to_vec();
                    if misbehaviour.corrupt_at == Some(count) {
                        data[misbehaviour.corrupt_byte] ^= 0x01;
                    }
                    if misbehaviour.drop_at == Some(count) {
                        continue;
                    }
                    if misbehaviour.ping_every.is_some_and(|n| count % n == 0) {
                        let payload = format!("p{count}");
                        pings.push(payload.clone());
                        if ws.send(Message::Ping(payload.into())).await.is_err() {
                            break;
                        }
                    }
                    Message::binary(data)
                }
                Message::Pong(payload) => {
                    if pings.iter().any(|p| p.as_bytes() == &payload[..]) {
                        pongs += 1;
                    } else {
                        unmatched += 1;
                    }
                    continue;
                }
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
        let _ = done.send((pings.len(), pongs, unmatched));
    });
    (addr, report)
}

#[test]
fn echo_detects_a_changed_byte() {
    // Byte 3 is in the sequence number: seen without --verify full.
    let (addr, _) = echo_server(Misbehaviour {
        corrupt_at: Some(5),
        corrupt_byte: 3,
        ..Misbehaviour::default()
    });
    let url = format!("ws://{addr}/");
    let (out, json) = bench_json(&[
        "echo",
        "--url",
        &url,
        "-c",
        "1",
        "--in-flight",
        "4",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(json["errors"], 1, "{json}");
    assert_eq!(json["first_error"], "the echo differs at byte 3", "{json}");
    assert!(json["messages"].as_u64().unwrap() > 5, "goes on: {json}");
    assert_eq!(out.code(), 1, "errors give exit 1: {out:?}");
}

#[test]
fn echo_verify_full_detects_a_changed_byte_past_the_sequence_number() {
    let args = |url: &str, verify: &'static str| {
        let mut args = vec![
            "echo".to_string(),
            "--url".into(),
            url.to_string(),
            "-c".into(),
            "1".into(),
            "--in-flight".into(),
            "4".into(),
            "--duration".into(),
            "300ms".into(),
            "--warmup".into(),
            "0s".into(),
        ];
        args.extend(["--verify".to_string(), verify.to_string()]);
        args
    };
    let misbehaviour = Misbehaviour {
        corrupt_at: Some(5),
        corrupt_byte: 12,
        ..Misbehaviour::default()
    };
    let (addr, _) = echo_server(misbehaviour);
    let url = format!("ws://{addr}/");
    let full = args(&url, "full");
    let (out, json) = bench_json(&full.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(json["verify"], "full", "{json}");
    assert_eq!(json["errors"], 1, "{json}");
    assert_eq!(json["first_error"], "the echo differs at byte 12", "{json}");
    assert_eq!(out.code(), 1, "{out:?}");
    // The sequence check alone does not look at byte 12.
    let (addr, _) = echo_server(misbehaviour);
    let url = format!("ws://{addr}/");
    let cheap = args(&url, "sequence");
    let (out, json) = bench_json(&cheap.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(json["errors"], 0, "{json}");
    assert_eq!(out.code(), 0, "{out:?}");
}

#[test]
fn echo_counts_a_lost_echo_as_a_drop_and_goes_on() {
    let (addr, _) = echo_server(Misbehaviour {
        drop_at: Some(7),
        ..Misbehaviour::default()
    });
    let url = format!("ws://{addr}/");
    let (out, json) = echo_one_connection(&url, &[]);
    assert_eq!(json["drops"], 1, "{json}");
    assert_eq!(json["errors"], 1, "{json}");
    assert_eq!(
        json["first_error"], "1 message(s) before message 7 never came back",
        "{json}"
    );
    assert!(json["messages"].as_u64().unwrap() > 20, "goes on: {json}");
    assert_eq!(out.code(), 1, "{out:?}");
}

#[test]
fn echo_against_the_null_echo_server() {
    let mut command = tether();
    command.args(["bench", "null-echo", "--listen", "127.0.0.1:0"]);
    let mut server = Process::spawn(command);
    let line = server.stderr_line("null echo server listening on ");
    let url = format!("{}/", line.rsplit(' ').next().unwrap());
    for extra in [
        &["--size", "16", "--in-flight", "16"][..],
        &["--size", "70000", "--text", "--verify", "full"][..],
        &["--size", "3", "--in-flight", "100", "--verify", "full"][..],
    ] {
        let mut args = vec![
            "echo",
            "--url",
            &url,
            "-c",
            "3",
            "--duration",
            "300ms",
            "--warmup",
            "0s",
        ];
        args.extend_from_slice(extra);
        let (out, json) = bench_json(&args);
        assert_eq!(out.code(), 0, "{extra:?}: {out:?}");
        assert_eq!(json["errors"], 0, "{extra:?}: {json}");
        assert_eq!(json["drops"], 0, "{extra:?}: {json}");
        assert!(json["messages"].as_u64().unwrap() > 0, "{extra:?}: {json}");
    }
    // Every closing handshake was answered: the server is still there for more.
    let out = run(
        &[
            "bench",
            "connect",
            "--url",
            &url,
            "-c",
            "2",
            "--duration",
            "200ms",
            "--json",
        ],
        b"",
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server stays up"
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

#[test]
fn echo_answers_pings_between_frames() {
    let (addr, report) = echo_server(Misbehaviour {
        ping_every: Some(3),
        ..Misbehaviour::default()
    });
    let url = format!("ws://{addr}/");
    let (out, json) = bench_json(&[
        "echo",
        "--url",
        &url,
        "-c",
        "1",
        "--size",
        "1000",
        "--in-flight",
        "8",
        "--duration",
        "400ms",
        "--warmup",
        "0s",
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(json["errors"], 0, "{json}");
    let (pings, pongs, unmatched) = report.recv_timeout(support::PATIENCE).unwrap();
    assert!(pings > 0, "no ping sent");
    // RFC 6455 §5.5.3: pings read together may get one pong, for the most recent.
    assert!(
        pongs > 0 && pongs <= pings,
        "{pongs} pongs for {pings} pings"
    );
    assert_eq!(unmatched, 0, "pongs with a payload no ping had");
}

/// Echoes of 64 KiB are read only up to their sequence number and the rest is discarded
/// unread: a changed sequence number, a lost echo and pings between echoes are still seen, and
/// every echo that counts came back whole (the tool stays in step with the frames).
#[test]
fn large_echoes_discarded_past_their_sequence_number_are_still_checked() {
    let large = |url: &str| echo_one_connection(url, &["--size", "65536"]);
    let (addr, _) = echo_server(Misbehaviour {
        corrupt_at: Some(5),
        corrupt_byte: 3,
        ..Misbehaviour::default()
    });
    let (out, json) = large(&format!("ws://{addr}/"));
    assert_eq!(json["first_error"], "the echo differs at byte 3", "{json}");
    assert_eq!(json["errors"], 1, "{json}");
    assert!(json["messages"].as_u64().unwrap() > 5, "goes on: {json}");
    assert_eq!(out.code(), 1, "{out:?}");

    let (addr, _) = echo_server(Misbehaviour {
        drop_at: Some(7),
        ..Misbehaviour::default()
    });
    let (_, json) = large(&format!("ws://{addr}/"));
    assert_eq!(json["drops"], 1, "{json}");
    assert_eq!(
        json["first_error"], "1 message(s) before message 7 never came back",
        "{json}"
    );

    let (addr, report) = echo_server(Misbehaviour {
        ping_every: Some(3),
        ..Misbehaviour::default()
    });
    let (out, json) = large(&format!("ws://{addr}/"));
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(json["errors"], 0, "{json}");
    let messages = json["messages"].as_u64().unwrap();
    assert!(messages > 8, "{json}");
    let (pings, pongs, unmatched) = report.recv_timeout(support::PATIENCE).unwrap();
    assert!(
        pings > 0 && pongs > 0 && unmatched == 0,
        "{pings} {pongs} {unmatched}"
    );
}

#[test]
fn bad_arguments_are_refused() {
    let out = run(&["bench", "echo", "--url", "wss://127.0.0.1:1/"], b"");
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("plain TCP"), "{}", out.stderr);
    let out = run(
        &[
            "bench",
            "echo",
            "--url",
            "ws://127.0.0.1:1/",
            "--in-flight",
            "0",
        ],
        b"",
    );
    assert_eq!(out.code(), 2, "{out:?}");
}

#[test]
fn the_null_echo_server_refuses_a_tiny_buffer() {
    let out = run(
        &[
            "bench",
            "null-echo",
            "--listen",
            "127.0.0.1:0",
            "--buffer",
            "10",
        ],
        b"",
    );
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr.contains("--buffer must be between"),
        "{}",
        out.stderr
    );
}

#[test]
fn connect_counts_opening_and_closing_handshakes() {
    let serve = Serve::start(None);
    let url = serve.url("/echo");
    let (out, json) = bench_json(&["connect", "--url", &url, "-c", "4", "--duration", "600ms"]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_common_fields(&json, "connect");
    assert_eq!(json["connections"], 4);
    assert!(json["messages"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    assert!(json["latency_us"]["p50"].as_u64().unwrap() > 0, "{json}");
}

#[test]
fn connect_to_nothing_fails_clearly() {
    let url = format!("ws://127.0.0.1:{}/", support::free_port());
    let out = run(
        &["bench", "connect", "--url", &url, "--duration", "200ms"],
        b"",
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
}

#[test]
fn idle_reports_the_servers_memory_per_connection() {
    let serve = Serve::start(None);
    let url = serve.url("/echo");
    let pid = serve.process.child.id().to_string();
    let (out, json) = bench_json(&[
        "idle",
        "--url",
        &url,
        "-n",
        "300",
        "--sources",
        "127.0.0.1-127.0.0.3",
        "--hold",
        "300ms",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_common_fields(&json, "idle");
    assert_eq!(json["connections_open"], 300, "{json}");
    assert_eq!(json["messages"], 300, "one handshake each: {json}");
    assert_eq!(json["sources"], 3);
    let before = json["server_rss_before_kib"].as_u64().unwrap();
    let after = json["server_rss_after_kib"].as_u64().unwrap();
    assert!(before > 0 && after > 0, "{json}");
    let per_connection = json["bytes_per_connection"].as_f64().unwrap();
    let expected = (after as f64 - before as f64) * 1024.0 / 300.0;
    assert!((per_connection - expected).abs() <= 1.0, "{json}");
}

#[test]
fn idle_counts_connections_the_server_ended_while_held() {
    let config = "[limits]\nidle_timeout = \"200ms\"\nkeepalive_interval = \"100ms\"\n";
    let serve = Serve::start(Some(config));
    let url = serve.url("/echo");
    let (out, json) = bench_json(&["idle", "--url", &url, "-n", "20", "--hold", "900ms"]);
    assert_eq!(out.code(), 1, "{out:?}");
    assert_eq!(json["connections_open"], 0, "{json}");
    assert_eq!(json["errors"], 20, "{json}");
    assert!(
        json.get("bytes_per_connection").is_none(),
        "no --server-pid"
    );
}

#[test]
fn idle_refuses_more_connections_than_open_files_allow() {
    let out = run(
        &[
            "bench",
            "idle",
            "--url",
            "ws://127.0.0.1:1/",
            "-n",
            "100000000",
        ],
        b"",
    );
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("RLIMIT_NOFILE"), "{}", out.stderr);
}

fn fanout_args<'a>(url: &'a str, topic: &'a str) -> Vec<&'a str> {
    vec![
        "fanout",
        "--url",
        url,
        "-n",
        "50",
        "--topic",
        topic,
        "--rate",
        "40",
        "--duration",
        "500ms",
        "--size",
        "100",
    ]
}

fn assert_every_subscriber_got_every_message(json: &Value) {
    assert_common_fields(json, "fanout");
    assert_eq!(json["subscribers"], 50);
    let published = json["published"].as_u64().unwrap();
    // 40/s for 0.5 s, however busy the machine.
    assert_eq!(published, 20, "{json}");
    assert_eq!(
        json["deliveries"].as_u64().unwrap(),
        published * 50,
        "{json}"
    );
    assert_eq!(json["messages"], json["deliveries"]);
    assert_eq!(json["drops"], 0, "{json}");
    assert_eq!(json["duplicates"], 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    let p50 = json["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50 > 0 && p50 < 5_000_000, "{json}");
}

#[test]
fn fanout_over_a_websocket_publisher_delivers_everything_once() {
    let serve = Serve::start(None);
    let url = serve.url("/ws");
    let pid = serve.process.child.id().to_string();
    let mut args = fanout_args(&url, "bench.ws");
    // Every subscriber knows by the publisher's mark when it has the last record, so the
    // run ends once all are in, long before a settle deadline.
    args.extend(["--server-pid", &pid, "--settle", "60s"]);
    let started = std::time::Instant::now();
    let (out, json) = bench_json(&args);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{json}"
    );
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(json["publisher"], "websocket");
    assert_every_subscriber_got_every_message(&json);
    // The server's CPU from the first publish on, shared out over the deliveries.
    let used = json["server_cpu_s"].as_f64().unwrap();
    let per_delivery = json["server_cpu_us_per_delivery"].as_f64().unwrap();
    let deliveries = json["deliveries"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&used), "{json}");
    assert!(
        (per_delivery - used * 1e6 / deliveries).abs() <= 0.01,
        "{json}"
    );
}

#[test]
fn fanout_over_the_http_publish_api_delivers_everything_once() {
    let serve = Serve::start(None);
    let url = serve.url("/ws");
    let publish = format!("http://{}/api/publish", serve.addr);
    let mut args = fanout_args(&url, "bench.http");
    args.extend(["--publish-url", &publish]);
    let (out, json) = bench_json(&args);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(json["publisher"], "http");
    assert_every_subscriber_got_every_message(&json);
}

#[test]
fn fanout_counts_a_refused_subscribe_as_an_error() {
    let serve = Serve::start(None);
    let url = serve.url("/ws");
    let mut args = fanout_args(&url, "bad*topic");
    args[4] = "3";
    let (out, json) = bench_json(&args);
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(json["errors"].as_u64().unwrap() >= 3, "{json}");
    let first = json["first_error"].as_str().unwrap();
    assert!(first.contains("invalid_topic"), "{json}");
}

#[test]
fn echo_with_deflate_runs_on_the_tether_client() {
    let serve = Serve::start(None);
    let url = serve.url("/echo");
    let pid = serve.process.child.id().to_string();
    let (out, json) = bench_json(&[
        "echo",
        "--url",
        &url,
        "-c",
        "2",
        "--size",
        "2000",
        "--in-flight",
        "4",
        "--deflate",
        "--threads",
        "2",
        "--duration",
        "500ms",
        "--warmup",
        "0s",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_common_fields(&json, "echo");
    assert_eq!(json["deflate"], true);
    assert!(json["messages"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    assert!(json["server_cpu_s"].as_f64().unwrap() > 0.0, "{json}");
    assert!(
        json["server_cpu_us_per_message"].as_f64().unwrap() > 0.0,
        "{json}"
    );
}

/// A pub/sub server of this test that drops offset 3 and delivers offset 5 twice, to every
/// subscriber; it speaks just enough of tether.pubsub.v1 for the fan-out workload.
fn lossy_pubsub_server() -> SocketAddr {
    serve_on_a_thread(move |listener| async move {
        let (deliveries, _) = tokio::sync::broadcast::channel::<String>(1024);
        let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (deliveries, published) = (deliveries.clone(), published.clone());
            tokio::spawn(async move {
                let Ok(mut ws) = tether::accept(stream).await else {
                    return;
                };
                let mut feed = deliveries.subscribe();
                loop {
                    tokio::select! {
                        request = ws.next() => {
                            let Some(Ok(Message::Text(text))) = request else { return };
                            let request: Value = serde_json::from_str(text.as_str()).unwrap();
                            let reply = if request["type"] == "subscribe" {
                                r#"{"type":"ack","id":1,"topics":{"t":{"epoch":"e","offset":0}}}"#.to_string()
                            } else {
                                let offset = published.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                                let message = format!(
                                    r#"{{"type":"message","topic":"t","epoch":"e","offset":{offset},"ts":0,"data":{}}}"#,
                                    request["data"]
                                );
                                let times = match offset { 3 => 0, 5 => 2, _ => 1 };
                                for _ in 0..times {
                                    let _ = deliveries.send(message.clone());
                                }
                                format!(r#"{{"type":"ack","id":{},"topic":"t","epoch":"e","offset":{offset}}}"#, request["id"])
                            };
                            if ws.send(Message::text(reply)).await.is_err() { return }
                        }
                        delivery = feed.recv() => {
                            let Ok(delivery) = delivery else { return };
                            if ws.send(Message::text(delivery)).await.is_err() { return }
                        }
                    }
                }
            });
        }
    })
}

#[test]
fn fanout_counts_drops_and_duplicates() {
    let addr = lossy_pubsub_server();
    let url = format!("ws://{addr}/");
    let mut args = fanout_args(&url, "t");
    args[4] = "5";
    let (out, json) = bench_json(&args);
    assert_eq!(out.code(), 0, "drops are measured, not errors: {out:?}");
    let published = json["published"].as_u64().unwrap();
    assert_eq!(published, 20, "{json}");
    assert_eq!(json["drops"], 5, "offset 3 for each subscriber: {json}");
    assert_eq!(json["duplicates"], 5, "offset 5 twice: {json}");
    assert_eq!(
        json["deliveries"].as_u64().unwrap(),
        (published - 1) * 5,
        "{json}"
    );
    assert_eq!(json["errors"], 0, "{json}");
}

/// A pub/sub server of this test that delivers each publish to its subscribers one at a
/// time, 30 ms apart, and counts the subscribers that had hung up when each delivery was
/// handed on (the most seen comes back on the channel, after every delivery).
fn slow_fanout_server() -> (SocketAddr, mpsc::Receiver<usize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::mpsc as channel;

    let (seen_tx, seen_rx) = mpsc::channel();
    let addr = serve_on_a_thread(move |listener| async move {
        let subscribers = Arc::new(std::sync::Mutex::new(Vec::<channel::Sender<String>>::new()));
        let hung_up = Arc::new(AtomicUsize::new(0));
        // The fan-out: one publish after the other, one subscriber after the other.
        let (publish_tx, mut publish_rx) = channel::unbounded_channel::<String>();
        let (fanout_subscribers, fanout_hung_up) = (subscribers.clone(), hung_up.clone());
        tokio::spawn(async move {
            let mut most = 0;
            while let Some(message) = publish_rx.recv().await {
                let subscribers = fanout_subscribers.lock().unwrap().clone();
                for subscriber in subscribers {
                    most = most.max(fanout_hung_up.load(Ordering::SeqCst));
                    let _ = subscriber.send(message.clone()).await;
                    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                }
                let _ = seen_tx.send(most);
            }
        });
        let published = Arc::new(AtomicUsize::new(0));
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (subscribers, hung_up, published, publish_tx) = (
                subscribers.clone(),
                hung_up.clone(),
                published.clone(),
                publish_tx.clone(),
            );
            tokio::spawn(async move {
                let Ok(mut ws) = tether::accept(stream).await else {
                    return;
                };
                let (feed_tx, mut feed) = channel::channel::<String>(64);
                let mut subscribed = false;
                loop {
                    tokio::select! {
                        request = ws.next() => {
                            let Some(Ok(Message::Text(text))) = request else {
                                if subscribed {
                                    hung_up.fetch_add(1, Ordering::SeqCst);
                                }
                                return;
                            };
                            let request: Value = serde_json::from_str(text.as_str()).unwrap();
                            let reply = if request["type"] == "subscribe" {
                                subscribed = true;
                                subscribers.lock().unwrap().push(feed_tx.clone());
                                r#"{"type":"ack","id":1,"topics":{"t":{"epoch":"e","offset":0}}}"#.to_string()
                            } else {
                                let offset = published.fetch_add(1, Ordering::SeqCst) + 1;
                                let _ = publish_tx.send(format!(
                                    r#"{{"type":"message","topic":"t","epoch":"e","offset":{offset},"ts":0,"data":{}}}"#,
                                    request["data"]
                                ));
                                format!(r#"{{"type":"ack","id":{},"topic":"t","epoch":"e","offset":{offset}}}"#, request["id"])
                            };
                            if ws.send(Message::text(reply)).await.is_err() { return }
                        }
                        delivery = feed.recv() => {
                            let Some(delivery) = delivery else { return };
                            if ws.send(Message::text(delivery)).await.is_err() { return }
                        }
                    }
                }
            });
        }
    });
    (addr, seen_rx)
}

/// A subscriber that has the last record keeps its connection until every subscriber has
/// it: hanging up at once would have the server tear connections down while it still
/// delivers the record, and count that in the latency and the server's CPU.
#[test]
fn fanout_subscribers_hang_up_only_after_every_delivery() {
    let (addr, seen) = slow_fanout_server();
    let url = format!("ws://{addr}/");
    let (out, json) = bench_json(&[
        "fanout",
        "--url",
        &url,
        "-n",
        "5",
        "--topic",
        "t",
        "--rate",
        "10",
        "--duration",
        "250ms",
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    let published = json["published"].as_u64().unwrap();
    assert_eq!(published, 3, "10/s for 0.25 s, rounded: {json}");
    assert_eq!(
        json["deliveries"].as_u64().unwrap(),
        published * 5,
        "{json}"
    );
    assert_eq!(json["drops"], 0, "{json}");
    let most_hung_up = seen.iter().take(published as usize).last();
    assert_eq!(
        most_hung_up,
        Some(0),
        "subscribers hung up during a fan-out: {json}"
    );
}
