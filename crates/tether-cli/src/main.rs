//! `tether`: the Tether command line.
//!
//! `tether serve` runs the gateway: with no arguments on `127.0.0.1:8080`, with the built-in
//! page, pub/sub at `/ws`, echo at `/echo` and the demo feeds. `--config tether.toml` reads a
//! config file (see `tether.example.toml`); flags and `TETHER_*` variables override it.
//!
//! `tether connect`, `tether pub` and `tether sub` are clients: a WebSocket client for
//! terminals and pipes (and a TCP-over-WebSocket tunnel with `--listen-tcp`), and the two
//! ends of the gateway's pub/sub protocol. `tether bench` is a load tool for WebSocket
//! servers.
#![forbid(unsafe_code)]

mod bench;
mod client_args;
mod connect;
mod exit;
mod hangup;
mod help;
mod listen_tcp;
mod publish;
mod session;
mod sub;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tether_gateway::config::RouteKind;
use tether_gateway::{Gateway, GatewayConfig, Overrides};

/// Tether: a WebSocket gateway with pages, pub/sub, echo, TLS and an HTTP API on one port,
/// and the clients to talk to it (or to any WebSocket server).
#[derive(Debug, Parser)]
#[command(name = "tether", version, after_long_help = help::MAIN_EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway until Ctrl-C or SIGTERM, then close every connection gracefully.
    Serve(ServeArgs),
    /// Talk to a WebSocket server: stdin lines out as messages, messages in to stdout.
    #[command(after_long_help = help::CONNECT_HELP)]
    Connect(connect::ConnectArgs),
    /// Publish messages to a topic of the gateway (tether.pubsub.v1).
    #[command(name = "pub", after_long_help = help::PUB_HELP)]
    Pub(publish::PubArgs),
    /// Print the messages of topics, resuming after reconnects without gap or duplicate.
    #[command(after_long_help = help::SUB_HELP)]
    Sub(sub::SubArgs),
    /// Load a WebSocket server: echo, connect, idle or fanout; figures as text or JSON.
    #[command(after_long_help = help::BENCH_HELP)]
    Bench(bench::BenchArgs),
}

#[derive(Clone, Debug, Args)]
struct ServeArgs {
    /// Config file (TOML; every key is documented in tether.example.toml).
    #[arg(short, long, env = "TETHER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Plain HTTP/WebSocket listen address [default: 127.0.0.1:8080].
    #[arg(short, long, env = "TETHER_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// HTTPS/WSS listen address; needs --cert and --key.
    #[arg(long, env = "TETHER_TLS_LISTEN", value_name = "ADDR")]
    tls_listen: Option<String>,
    /// Certificate chain for TLS (PEM, leaf first).
    #[arg(long, env = "TETHER_TLS_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// Private key for TLS (PEM).
    #[arg(long, env = "TETHER_TLS_KEY", value_name = "FILE")]
    key: Option<PathBuf>,
    /// Serve TLS only, without the plain listener.
    #[arg(long, env = "TETHER_TLS_ONLY")]
    tls_only: bool,
    /// Serve files from this directory instead of the built-in page.
    #[arg(long, env = "TETHER_STATIC_ROOT", value_name = "DIR")]
    static_root: Option<PathBuf>,
    /// Do not run the demo feeds (stocks.*, scores.*).
    #[arg(long, env = "TETHER_NO_DEMO")]
    no_demo: bool,
    /// Log filter, e.g. "info", "debug", "tether_gateway=debug".
    #[arg(
        long,
        env = "TETHER_LOG",
        value_name = "FILTER",
        default_value = "info"
    )]
    log: String,
}

/// jemalloc, for what an idle connection costs: tokio allocates each task and each socket's
/// I/O registration 128-byte aligned, and glibc's aligned allocations leave ~200 bytes of
/// slack each, where jemalloc's size classes are aligned already (docs/perf/idle-and-64k.md).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Connect(args) => match args.listen_tcp.clone() {
            Some(listen) => client(listen_tcp::run(args, &listen)),
            None => client(connect::run(args)),
        },
        Command::Pub(args) => client(publish::run(args)),
        Command::Sub(args) => client(sub::run(args)),
        Command::Bench(args) => bench::run(args),
    }
}

/// Runs a client command to its end and turns its outcome into the exit status.
fn client(command: impl std::future::Future<Output = Result<(), exit::Failure>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(command);
    // Threads still blocked reading stdin must not hold the exit.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match load(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("tether: {message}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tether: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let routes = config.routes.clone();
        let gateway = match Gateway::bind(config).await {
            Ok(gateway) => gateway,
            Err(e) => {
                // A file named by the config (certificate, key, static root) is its problem.
                match (&args.config, &e) {
                    (Some(path), tether_gateway::Error::Config(_)) => {
                        eprintln!("tether: {}: {e}", path.display());
                    }
                    _ => eprintln!("tether: {e}"),
                }
                return ExitCode::FAILURE;
            }
        };
        let hangup = hangup::Hangup::catch();
        // Caught before saying it listens, like SIGHUP: a signal sent right after the
        // "listening" line must stop it gracefully, not meet the default action.
        let stop = StopSignals::catch();
        for (scheme, ws, addr) in [
            ("http", "ws", gateway.local_addr()),
            ("https", "wss", gateway.tls_local_addr()),
        ] {
            let Some(addr) = addr else { continue };
            eprintln!("tether: listening on {scheme}://{addr}/");
            for route in &routes {
                let what = match route.kind {
                    RouteKind::Pubsub => "pub/sub",
                    RouteKind::Echo => "echo",
                    _ => "websocket",
                };
                eprintln!("tether:   {what:<8} {ws}://{addr}{}", route.path);
            }
        }
        let reload_args = args.clone();
        let reloading =
            tokio::spawn(hangup.reload_on_each(gateway.reloader(), move || load(&reload_args)));
        gateway.run(stop.wait()).await;
        reloading.abort();
        eprintln!("tether: stopped");
        ExitCode::SUCCESS
    })
}

/// The config file (or the defaults) with the flags and environment applied.
fn load(args: &ServeArgs) -> Result<GatewayConfig, String> {
    let mut config = match &args.config {
        Some(path) => GatewayConfig::load(path).map_err(|e| format!("{}: {e}", path.display()))?,
        None => GatewayConfig::default(),
    };
    let overrides = Overrides {
        listen: args.listen.clone(),
        tls_listen: args.tls_listen.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        tls_only: args.tls_only,
        static_root: args.static_root.clone(),
        no_demo: args.no_demo,
    };
    overrides.apply(&mut config).map_err(|e| e.to_string())?;
    Ok(config)
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from [`StopSignals::catch`] on.
struct StopSignals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    /// Starts catching both signals; must run inside the runtime.
    fn catch() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let catch = |kind: SignalKind, name: &str| {
                signal(kind)
                    .map_err(|e| eprintln!("tether: cannot catch {name}: {e}"))
                    .ok()
            };
            StopSignals {
                interrupt: catch(SignalKind::interrupt(), "SIGINT"),
                terminate: catch(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Completes on the first of them.
    async fn wait(self) {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(self.interrupt) => {}
                _ = next(self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        eprintln!("tether: shutting down");
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_takes_no_required_arguments() {
        let cli = Cli::try_parse_from(["tether", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve: {:?}", cli.command)
        };
        assert!(args.config.is_none() && !args.no_demo);
    }
}
