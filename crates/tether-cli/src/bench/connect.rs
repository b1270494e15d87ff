//! `tether bench connect`: handshakes per second. Each connector opens a TCP connection,
//! completes the opening handshake (timed), then the closing handshake, and starts again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use super::args::ConnectArgs;
use super::frame::ReadBuffer;
use super::handshake::{HandshakeSpec, close, open};
use super::progress::Progress;
use super::recorder::{Recorder, Totals};
use super::report::Report;
use super::system::CpuMeter;

/// The longest one opening or closing handshake may take before it counts as an error.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the connect workload.
pub async fn run(args: &ConnectArgs) -> Result<Report, String> {
    let target = &args.common.url;
    let spec = Arc::new(HandshakeSpec::new(target, target.resolve().await?, None));
    // One handshake first, so that a server that is not there fails the run at once.
    let mut buf = Vec::with_capacity(1024);
    let mut first = open(&spec, None, &mut buf).await?;
    let _ = timeout_at(
        (Instant::now() + HANDSHAKE_TIMEOUT).into(),
        close(&mut first, &[], &mut ReadBuffer::new(4096)),
    )
    .await;

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let totals = Arc::new(Totals::new(measure_from, measure_from + args.duration));
    let cpu = CpuMeter::start();
    let progress = Progress::start("connect", totals.clone(), args.common.json);
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        let (spec, totals) = (spec.clone(), totals.clone());
        tasks.spawn(async move { connector(&spec, &totals).await });
    }
    while tasks.join_next().await.is_some() {}
    progress.finish();

    let mut report = Report::new(
        "connect",
        &target.url,
        &totals,
        args.duration,
        &cpu,
        args.common.threads,
    );
    report.parameters = vec![("connections", json!(args.connections))];
    Ok(report)
}

/// One connector: open, close, repeat until the end of the measured window.
async fn connector(spec: &HandshakeSpec, totals: &Totals) {
    let mut recorder = Recorder::new(totals);
    let mut buf = Vec::with_capacity(1024);
    let mut read = ReadBuffer::new(4096);
    while Instant::now() < totals.measure_until {
        let started = Instant::now();
        let deadline = (started + HANDSHAKE_TIMEOUT).into();
        let mut stream = match timeout_at(deadline, open(spec, None, &mut buf)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                totals.error(|| e);
                continue;
            }
            Err(_) => {
                totals.error(|| "no handshake answer within 5 s".into());
                continue;
            }
        };
        let opened = Instant::now();
        read.reset(&buf);
        let deadline = (opened + HANDSHAKE_TIMEOUT).into();
        match timeout_at(deadline, close(&mut stream, &[], &mut read)).await {
            Ok(Ok(true)) => recorder.record(opened, opened - started, 0),
            Ok(Ok(false)) => {
                totals.error(|| "the server ended the connection without a close frame".into())
            }
            Ok(Err(e)) => totals.error(|| format!("closing handshake: {e}")),
            Err(_) => totals.error(|| "no closing handshake within 5 s".into()),
        }
    }
}
