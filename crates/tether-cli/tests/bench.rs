//! `tether bench` against real servers over loopback: `tether serve` as a child process,
//! and a server of this test that corrupts an echo. Each run is short (well under 2 s).

mod support;

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::{Output, Serve, run};
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
    ]);
    assert_eq!(out.code(), 0, "{out:?}");
    assert_common_fields(&json, "echo");
    assert_eq!(json["connections"], 4);
    assert_eq!(json["size"], 16);
    assert_eq!(json["in_flight"], 8);
    assert_eq!(json["duration_s"], 0.8);
    assert!(json["messages"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(json["errors"], 0, "{json}");
    assert_eq!(json["drops"], 0, "{json}");
    let p50 = json["latency_us"]["p50"].as_u64().unwrap();
    assert!(p50 <= json["latency_us"]["max"].as_u64().unwrap());
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

/// An echo server that changes one byte of its `corrupt_at`-th echo (counting from 1).
fn corrupting_echo_server(corrupt_at: usize) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            // One connection is enough: the test runs the tool with -c 1.
            let (stream, _) = listener.accept().await.unwrap();
            let mut ws = tether::accept(stream).await.unwrap();
            let mut count = 0;
            while let Some(Ok(message)) = ws.next().await {
                let reply = match message {
                    Message::Binary(data) => {
                        count += 1;
                        let mut data = data.to_vec();
                        if count == corrupt_at {
                            data[3] ^= 0x01;
                        }
                        Message::binary(data)
                    }
                    Message::Close(_) => break,
                    _ => continue,
                };
                if ws.send(reply).await.is_err() {
                    break;
                }
            }
        });
    });
    addr
}

#[test]
fn echo_detects_a_changed_byte() {
    let addr = corrupting_echo_server(5);
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
