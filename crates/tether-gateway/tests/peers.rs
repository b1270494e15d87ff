//! Independent peers: Python's `websockets` and Node's `ws` subscribe through `/ws` with
//! `tether.pubsub.v1`, negotiate permessage-deflate, and receive a message published over HTTP.
//!
//! The peers are `tests/peers/subscriber.py` and `tests/peers/subscriber.mjs`. Python's
//! `websockets` comes from `.venv-conformance` (`bash scripts/setup-conformance.sh`), Node's
//! `ws` from `tests/peers/node_modules` (`npm ci` there); `.ci/run` installs both. A test is
//! skipped, saying so, only when python3 or node itself is missing, and never in CI (`CI`
//! set), where that is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::{PATIENCE, config, http, start};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn peers_dir() -> PathBuf {
    manifest_dir().join("tests/peers")
}

/// Says that a test is skipped, past the test harness's output capture so it always shows.
/// In CI a missing peer is a failure: `.ci/run` installs them all.
fn skipped(why: &str) {
    use std::io::Write;
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}: .ci/run must install it"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// Whether `program --version` runs.
fn runs(program: &Path) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python with `websockets`, `None` (after saying why) if there is no Python at all.
fn python() -> Option<PathBuf> {
    let venv = manifest_dir().join("../../.venv-conformance/bin/python");
    if runs(&venv) {
        return Some(venv);
    }
    let system = PathBuf::from("python3");
    if !runs(&system) {
        skipped("python3 is not installed, so the Python websockets peer cannot run");
        return None;
    }
    let has_websockets = std::process::Command::new(&system)
        .args(["-c", "import websockets.asyncio.client"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_websockets,
        "python3 has no `websockets` (>= 13): run `bash scripts/setup-conformance.sh`"
    );
    Some(system)
}

/// Node, `None` (after saying why) if it is not installed.
fn node() -> Option<PathBuf> {
    let node = PathBuf::from("node");
    if !runs(&node) {
        skipped("node is not installed, so the Node ws peer cannot run");
        return None;
    }
    assert!(
        peers_dir().join("node_modules/ws/package.json").exists(),
        "the `ws` package is missing: run `npm ci` in {}",
        peers_dir().display()
    );
    Some(node)
}

/// Runs `program script URL TOPIC`, publishes to TOPIC over HTTP once the peer is subscribed,
/// and checks what the peer saw.
async fn subscriber_receives_a_publish(program: PathBuf, script: &str) {
    let gw = start(config()).await;
    let topic = "peers.news";
    let mut child = Command::new(&program)
        .arg(peers_dir().join(script))
        .arg(format!("ws://{}/ws", gw.addr))
        .arg(topic)
        .current_dir(peers_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut published = false;
    // A payload large enough to be compressed.
    let payload = serde_json::json!({
        "headline": "peers receive what HTTP publishes",
        "body": "tether ".repeat(100),
    });
    loop {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{script}: no output in time; so far: {seen:#?}"))
            .unwrap();
        let Some(line) = line else { break };
        if line == "ready" && !published {
            let answer = http(
                gw.addr,
                "POST",
                &format!("/api/publish/{topic}"),
                &[],
                &payload.to_string(),
            )
            .await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            published = true;
        }
        seen.push(line);
    }
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the peer did not exit")
        .unwrap();
    assert!(status.success(), "{script} failed: {status:?}\n{seen:#?}");
    let field = |prefix: &str| {
        seen.iter()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{script}: no {prefix:?} line in {seen:#?}"))
            .to_string()
    };
    assert_eq!(field("subprotocol: "), "tether.pubsub.v1");
    assert!(
        field("extensions: ").starts_with("permessage-deflate"),
        "{script}: compression not negotiated: {seen:#?}"
    );
    let message: serde_json::Value = serde_json::from_str(&field("message: ")).unwrap();
    assert_eq!(message["type"], "message");
    assert_eq!(message["topic"], topic);
    assert_eq!(message["offset"], 1);
    assert_eq!(message["data"], payload);
    gw.stop().await;
}

#[tokio::test]
async fn python_websockets_subscribes_and_receives_a_publish() {
    if let Some(python) = python() {
        subscriber_receives_a_publish(python, "subscriber.py").await;
    }
}

#[tokio::test]
async fn node_ws_subscribes_and_receives_a_publish() {
    if let Some(node) = node() {
        subscriber_receives_a_publish(node, "subscriber.mjs").await;
    }
}
