//! `tether bench echo --deflate`: the echo workload with permessage-deflate (RFC 7692),
//! which needs a real compressor, so it runs on the `tether` client (`ClientBuilder`)
//! rather than on prebuilt frames. Heavier per message than the raw client: the client's
//! own compression and allocation count against it, so read `load_bound`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, Config, DeflateConfig, Message};
use tether_proto::frame::OpCode;
use tokio::task::JoinSet;
use tokio::time::timeout_at;

use super::args::EchoArgs;
use super::echo::payload;
use super::progress::Progress;
use super::recorder::{Recorder, Totals};
use super::report::Report;
use super::system::CpuMeter;

/// Runs the echo workload over permessage-deflate.
pub async fn run(args: &EchoArgs) -> Result<Report, String> {
    let target = &args.common.url;
    let mut config = Config::default();
    config.deflate = Some(DeflateConfig::default());
    config.max_message_size = config.max_message_size.max(args.size);
    config.max_frame_size = config.max_frame_size.max(args.size);
    let mut sockets = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let (socket, response) = ClientBuilder::new(target.url.clone())
            .config(config.clone())
            .connect()
            .await
            .map_err(|e| format!("connection {i}: {e}"))?;
        if response.deflate.is_none() {
            return Err("the server did not accept permessage-deflate".into());
        }
        sockets.push(socket);
    }

    let start = Instant::now();
    let measure_from = start + args.warmup;
    let totals = Arc::new(Totals::new(measure_from, measure_from + args.duration));
    let cpu = CpuMeter::start();
    let server_cpu = super::echo::ServerCpu::start(args, &totals);
    let progress = Progress::start("echo", totals.clone(), args.common.json);
    let mut tasks = JoinSet::new();
    for (index, mut socket) in sockets.into_iter().enumerate() {
        let opcode = if args.text {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        let message = match (opcode, payload(opcode, args.size, index)) {
            (OpCode::Text, bytes) => Message::text(String::from_utf8(bytes).expect("ASCII")),
            (_, bytes) => Message::binary(bytes),
        };
        let (totals, window) = (totals.clone(), args.window());
        tasks.spawn(async move {
            let mut recorder = Recorder::new(&totals);
            let mut sent_at = VecDeque::with_capacity(window);
            let expected = Bytes::copy_from_slice(message.payload());
            let outcome: Result<(), String> = async {
                for _ in 0..window {
                    sent_at.push_back(Instant::now());
                    socket
                        .feed(message.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                socket.flush().await.map_err(|e| e.to_string())?;
                loop {
                    let deadline = totals.measure_until.into();
                    let Ok(next) = timeout_at(deadline, socket.next()).await else {
                        return Ok(());
                    };
                    let reply = match next {
                        Some(Ok(reply)) => reply,
                        Some(Err(e)) => return Err(e.to_string()),
                        None => return Err("the server closed the connection".into()),
                    };
                    if !reply.is_data() {
                        continue;
                    }
                    let now = Instant::now();
                    let Some(sent) = sent_at.pop_front() else {
                        return Err("an echo of a message never sent".into());
                    };
                    if reply.payload() == expected
                        && matches!(reply, Message::Text(_)) == matches!(message, Message::Text(_))
                    {
                        recorder.record(now, now - sent, expected.len());
                    } else {
                        totals.error(|| "an echo differs from the message sent".into());
                    }
                    sent_at.push_back(Instant::now());
                    socket
                        .send(message.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            .await;
            recorder.flush(Instant::now());
            match outcome {
                Ok(()) => {
                    let _ = timeout_at(
                        (Instant::now() + std::time::Duration::from_secs(2)).into(),
                        socket.close(None),
                    )
                    .await;
                }
                Err(e) => totals.error(|| e),
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    progress.finish();

    let server_cpu = server_cpu.finish().await;
    Ok(super::echo::report(args, &totals, &cpu, server_cpu, true))
}
