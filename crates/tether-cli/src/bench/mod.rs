//! `tether bench`: a load tool for WebSocket servers.
//!
//! Four workloads (`echo`, `connect`, `idle`, `fanout`), each reporting messages/s, MB/s,
//! latency percentiles from an HDR histogram, errors and drops, as text or one JSON object.
//! The tool is written to measure the server, not itself: raw TCP with frames built and
//! masked once per connection ([`frame`]), replies parsed in place from reused buffers, no
//! allocation per message. It measures its own CPU time and says when it was the
//! bottleneck ([`system`]); against `null-echo` ([`null_echo`]), a server that does nothing
//! but echo, it measures its own ceiling.

mod args;
mod connect;
mod echo;
mod echo_check;
mod echo_deflate;
mod fanout;
mod fanout_publish;
mod fanout_wire;
mod frame;
mod handshake;
mod idle;
mod null_echo;
mod progress;
mod recorder;
mod report;
mod sequence;
mod system;
mod target;

pub use args::BenchArgs;

use std::process::ExitCode;

use args::Mode;
use report::Report;

/// Runs `tether bench`: the runtime, the workload, the report. Exit 0 when the run saw no
/// error, 1 when it did (the report is printed either way), 2 for a bad command line.
pub fn run(args: BenchArgs) -> ExitCode {
    if let Err(message) = args.validate() {
        eprintln!("tether bench: {message}");
        return ExitCode::from(2);
    }
    if let Err(message) = system::raise_open_files_limit(args.mode.connections_needed()) {
        eprintln!("tether bench: {message}");
        return ExitCode::from(2);
    }
    let threads = args.mode.common().map_or(1, |common| common.threads);
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tether bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Mode::NullEcho(null) = &args.mode {
        // Serves until the process is stopped: it returns only when it cannot go on.
        let Err(message) = runtime.block_on(null_echo::run(null));
        eprintln!("tether bench null-echo: {message}");
        return ExitCode::FAILURE;
    }
    let outcome: Result<Report, String> = runtime.block_on(async {
        match &args.mode {
            Mode::Echo(echo) if echo.deflate => echo_deflate::run(echo).await,
            Mode::Echo(echo) => echo::run(echo).await,
            Mode::Connect(connect) => connect::run(connect).await,
            Mode::Idle(idle) => idle::run(idle).await,
            Mode::Fanout(fanout) => fanout::run(fanout).await,
            Mode::NullEcho(_) => Err("the null echo server is no workload".into()),
        }
    });
    runtime.shutdown_background();
    match outcome {
        Ok(report) => {
            report.print(args.mode.common().is_some_and(|common| common.json));
            if report.errors > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(message) => {
            eprintln!("tether bench: {message}");
            ExitCode::FAILURE
        }
    }
}
