//! `tether bench idle`: open N connections and hold them, for the server's memory per idle
//! connection (its RSS before the first and after the last, once settled).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use super::args::IdleArgs;
use super::frame::close_frame;
use super::handshake::{HandshakeSpec, open_many};
use super::progress::Progress;
use super::recorder::Totals;
use super::report::Report;
use super::system::{CpuMeter, rss_kib};

/// Runs the idle workload.
pub async fn run(args: &IdleArgs) -> Result<Report, String> {
    let target = &args.common.url;
    let spec = Arc::new(HandshakeSpec::new(target, target.resolve().await?, None));
    let sources: Arc<[IpAddr]> = args
        .sources
        .iter()
        .flat_map(|sources| &sources.0)
        .map(|ip| IpAddr::V4(*ip))
        .collect();
    let rss_before = args.server_pid.map(rss_kib).transpose()?;

    let start = Instant::now();
    // The window is the opening phase; its length is only known at its end.
    let totals = Arc::new(Totals::new(start, start + LONG_RUN));
    let cpu = CpuMeter::start();
    let progress = Progress::start("idle", totals.clone(), args.common.json);
    let opened = open_many(
        spec,
        args.connections,
        sources,
        args.concurrency,
        Some(totals.clone()),
    )
    .await;
    let opening = start.elapsed();
    let streams: Vec<_> = opened.into_iter().filter_map(Result::ok).collect();
    // Settle: the server finishes its handshakes' work and frees what they needed.
    tokio::time::sleep(args.hold).await;
    let rss_after = args.server_pid.map(rss_kib).transpose()?;
    progress.finish();

    let mut report = Report::new(
        "idle",
        &target.url,
        &totals,
        opening,
        &cpu,
        args.common.threads,
    );
    let held = streams.len();
    report.parameters = vec![
        ("connections", json!(args.connections)),
        (
            "sources",
            json!(args.sources.as_ref().map_or(0, |s| s.0.len())),
        ),
        ("hold_s", json!(args.hold.as_secs_f64())),
    ];
    report.results = vec![("connections_open", json!(held))];
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        let per_connection = if held > 0 {
            (after as f64 - before as f64) * 1024.0 / held as f64
        } else {
            0.0
        };
        report.results.extend([
            ("server_rss_before_kib", json!(before)),
            ("server_rss_after_kib", json!(after)),
            ("bytes_per_connection", json!(per_connection.round())),
        ]);
    }
    // Close them all: a close frame each (the server answers and ends each connection).
    let close = close_frame();
    for opened in &streams {
        let _ = opened.stream.try_write(&close);
    }
    drop(streams);
    Ok(report)
}

/// Far enough past the opening phase that it never ends the window.
const LONG_RUN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
