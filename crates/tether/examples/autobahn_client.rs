//! The client testee for the Autobahn TestSuite's fuzzing server.
//!
//! `cargo run --release -p tether --example autobahn_client -- ws://127.0.0.1:9001`
//!
//! Reads the case count from `/getCaseCount`, runs every case by echoing each message on
//! `/runCase?case=N&agent=tether`, then asks for the reports with `/updateReports`.

use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, Config, Message};

const AGENT: &str = "tether";

fn config() -> Config {
    let mut config = Config::default();
    config.max_frame_size = 64 << 20;
    config.max_message_size = 64 << 20;
    config.max_outbound_buffer = 64 << 20;
    // Compress every message when permessage-deflate is negotiated: kosoku 0.1.0 mishandles an
    // uncompressed message on a compressed connection (conformance/NOTES.md).
    if let Some(deflate) = config.deflate.as_mut() {
        deflate.min_compress_size = 0;
    }
    // kosoku, as the fuzzing server, answers the no-context-takeover and window-size cases
    // (13.2-13.6) only when the offer names both parameters.
    if let Some(deflate) = config.deflate.as_mut() {
        deflate.client_no_context_takeover = true;
    }
    config
}

async fn case_count(base: &str) -> Result<u32, tether::Error> {
    let (mut ws, _) = ClientBuilder::new(format!("{base}/getCaseCount"))
        .config(config())
        .connect()
        .await?;
    let mut count = None;
    while let Some(msg) = ws.next().await {
        if let Message::Text(text) = msg? {
            count = text.as_str().trim().parse().ok();
        }
    }
    count.ok_or_else(|| tether::Error::Url("getCaseCount sent no number".into()))
}

async fn run_case(base: &str, case: u32) -> Result<(), tether::Error> {
    let url = format!("{base}/runCase?case={case}&agent={AGENT}");
    let (mut ws, _) = ClientBuilder::new(url).config(config()).connect().await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_data() {
            ws.feed(msg).await?;
        }
    }
    Ok(())
}

async fn update_reports(base: &str) -> Result<(), tether::Error> {
    let (mut ws, _) = ClientBuilder::new(format!("{base}/updateReports?agent={AGENT}"))
        .config(config())
        .connect()
        .await?;
    while let Some(msg) = ws.next().await {
        match msg {
            // The fuzzing server writes its reports and exits without a closing handshake.
            Err(tether::Error::AbnormalClosure) => break,
            other => drop(other?),
        }
    }
    Ok(())
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_string());
    let base = base.trim_end_matches('/').to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let count = match case_count(&base).await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("cannot read the case count: {e}");
                std::process::exit(1);
            }
        };
        eprintln!("running {count} cases against {base}");
        for case in 1..=count {
            // A case that fails the connection on purpose ends in an error here; the suite
            // judges the behaviour, so go on to the next case.
            if let Err(e) = run_case(&base, case).await {
                eprintln!("case {case}: {e}");
            }
        }
        if let Err(e) = update_reports(&base).await {
            eprintln!("updateReports: {e}");
            std::process::exit(1);
        }
    });
}
