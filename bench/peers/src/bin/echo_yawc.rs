//! Echo server on yawc, as its hyper server example writes it (`upgrade_with_options`, the
//! `WebSocket` as a stream and sink of frames, `send` per frame), with permessage-deflate on
//! (yawc's balanced preset), UTF-8 checking on and the size limits raised.

use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use yawc::{OpCode, Options, WebSocket};

fn options() -> Options {
    Options::default()
        .with_limits(tether_bench_peers::MAX_MESSAGE, tether_bench_peers::MAX_MESSAGE)
        .with_balanced_compression()
        .with_utf8()
        .with_no_delay()
}

async fn upgrade(mut req: Request<Incoming>) -> yawc::Result<Response<Empty<Bytes>>> {
    let (response, fut) = WebSocket::upgrade_with_options(&mut req, options())?;
    tokio::spawn(async move {
        let Ok(mut ws) = fut.await else { return };
        while let Some(frame) = ws.next().await {
            if matches!(frame.opcode(), OpCode::Text | OpCode::Binary)
                && ws.send(frame).await.is_err()
            {
                break;
            }
        }
    });
    Ok(response)
}

fn main() -> std::io::Result<()> {
    let addr = tether_bench_peers::addr();
    tether_bench_peers::runtime().block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("yawc echo on ws://{}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = http1::Builder::new()
                    .serve_connection(io, service_fn(upgrade))
                    .with_upgrades()
                    .await;
            });
        }
    })
}
