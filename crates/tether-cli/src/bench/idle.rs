//! `tether bench idle`: open N connections and hold them, for the server's memory per idle
//! connection (its RSS before the first and after the last, once settled).

use std::io::ErrorKind;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tether_proto::frame::OpCode;
use tokio::net::TcpStream;

use super::args::IdleArgs;
use super::frame::{close_frame, complete_frame};
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
    // A connection the server ended while held is not idle any more.
    let mut probe = [0u8; 256];
    let ended = streams
        .iter()
        .filter(|opened| ended_by_server(&opened.stream, &mut probe))
        .count();
    for _ in 0..ended {
        totals.error(|| "the server ended a held connection".into());
    }

    let mut report = Report::new(
        "idle",
        &target.url,
        &totals,
        opening,
        &cpu,
        args.common.threads,
    );
    let held = streams.len() - ended;
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

/// Whether the server ended `stream` or started to: its end of stream, an error, or a
/// close frame (e.g. 1008 after its idle timeout) is waiting. Pings do not count.
fn ended_by_server(stream: &TcpStream, probe: &mut [u8]) -> bool {
    match stream.try_read(probe) {
        Ok(0) => true,
        Ok(n) => {
            let mut rest = &probe[..n];
            while let Ok(Some((header, range))) = complete_frame(rest) {
                if header.opcode == OpCode::Close {
                    return true;
                }
                rest = &rest[range.end..];
            }
            false
        }
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

/// Far enough past the opening phase that it never ends the window.
const LONG_RUN: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
