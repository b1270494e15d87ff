//! `kind = "proxy"` relays frames, not messages: fragments keep their boundaries both ways, and
//! with permessage-deflate negotiated end to end the compressed bytes cross untouched (RSV1
//! kept, nothing inflated or deflated on the way).
//!
//! The upstream is a tether server in frame-streaming mode: its engine reports every data
//! frame as it arrives, with its boundaries, FIN and RSV1, so the test sees what crossed the
//! wire from the gateway.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{PATIENCE, config_from, start};
use futures_util::{SinkExt, StreamExt};
use tether::{ClientBuilder, Config, DataFrame, DataKind, Incoming, Message, SendOptions};
use tether_proto::Role;
use tether_proto::deflate::PerMessageDeflate;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An upstream that streams frames: it reports each data frame it receives on the channel and
/// sends it straight back, unchanged, as its own frame.
async fn frame_echo_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<DataFrame>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, frames) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let Ok(mut ws) = tether::accept(tcp).await else {
            return;
        };
        assert!(ws.stream_frames());
        let (mut rx, mut tx) = ws.split();
        while let Some(Ok(incoming)) = rx.next_frame().await {
            match incoming {
                Incoming::Frame(frame) => {
                    let _ = seen.send(frame.clone());
                    if tx.send_frame(frame).await.is_err() {
                        break;
                    }
                }
                Incoming::Message(Message::Close(frame)) => {
                    let _ = tx.send(Message::Close(frame)).await;
                }
                Incoming::Message(_) => {}
            }
        }
    });
    (addr, frames)
}

async fn gateway(upstream: SocketAddr) -> common::Running {
    start(config_from(&format!(
        "[[routes]]\npath = \"/app\"\nkind = \"proxy\"\nupstream = \"ws://{upstream}/\"\n"
    )))
    .await
}

async fn next_seen(frames: &mut mpsc::UnboundedReceiver<DataFrame>) -> DataFrame {
    tokio::time::timeout(PATIENCE, frames.recv())
        .await
        .expect("no frame at the upstream in time")
        .expect("the upstream ended")
}

fn text_frame(first: bool, fin: bool, payload: &'static str) -> DataFrame {
    DataFrame {
        kind: DataKind::Text,
        first,
        fin,
        compressed: false,
        payload: Bytes::from_static(payload.as_bytes()),
    }
}

#[tokio::test]
async fn rfc6455_5_4_fragments_cross_the_proxy_with_their_boundaries_both_ways() {
    let (upstream, mut seen) = frame_echo_upstream().await;
    let gw = gateway(upstream).await;
    let mut config = Config::default();
    config.deflate = None;
    let (mut ws, _) = ClientBuilder::new(format!("ws://{}/app", gw.addr))
        .config(config)
        .connect()
        .await
        .unwrap();
    assert!(ws.stream_frames());
    let (mut rx, mut tx) = ws.split();
    // "€" (E2 82 AC) is cut between the second and third fragments: each leg validates UTF-8
    // across fragments without reassembling them.
    let sent = [
        text_frame(true, false, "one, "),
        text_frame(false, false, "two, \u{20ac}"),
        text_frame(false, true, " three"),
    ];
    let mut cut = sent.clone();
    let euro = cut[1].payload.len() - 1;
    cut[2].payload = Bytes::from([&cut[1].payload[euro..], &cut[2].payload[..]].concat());
    cut[1].payload = cut[1].payload.slice(..euro);
    for frame in &cut {
        tx.send_frame(frame.clone()).await.unwrap();
    }
    // Client to upstream: three frames, the same boundaries.
    for frame in &cut {
        assert_eq!(&next_seen(&mut seen).await, frame);
    }
    // Upstream to client: the upstream's three frames arrive as three frames.
    for frame in &cut {
        let got = tokio::time::timeout(PATIENCE, rx.next_frame())
            .await
            .expect("no frame at the client in time")
            .unwrap()
            .unwrap();
        assert_eq!(&got, &Incoming::Frame(frame.clone()));
    }
    let _ = tx.close().await;
    gw.stop().await;
}

#[tokio::test]
async fn rfc7692_compressed_frames_cross_the_proxy_untouched() {
    let (upstream, mut seen) = frame_echo_upstream().await;
    let gw = gateway(upstream).await;
    // The client reassembles and inflates as any endpoint does; it offers permessage-deflate
    // (the default), the gateway forwards the offer, the upstream accepts it.
    let (mut ws, response) = ClientBuilder::new(format!("ws://{}/app", gw.addr))
        .connect()
        .await
        .unwrap();
    let params = response
        .deflate
        .expect("permessage-deflate negotiated end to end");
    assert!(ws.negotiated().compression);
    let text = "frames, not messages; frames, not messages; frames, not messages!".repeat(3);
    ws.queue_with(Message::text(text.clone()), SendOptions::fragmented(16))
        .unwrap();
    ws.flush().await.unwrap();

    // What the client's compressor put on the wire: the same codec, fresh, same level.
    let mut compressor = PerMessageDeflate::new(Role::Client, params, 1);
    let mut compressed = Vec::new();
    compressor.compress(text.as_bytes(), &mut compressed);
    let expected: Vec<&[u8]> = compressed.chunks(16).collect();
    assert!(expected.len() > 1, "the message is fragmented");

    for (i, chunk) in expected.iter().enumerate() {
        let frame = next_seen(&mut seen).await;
        assert_eq!(frame.first, i == 0);
        assert_eq!(frame.fin, i == expected.len() - 1);
        assert!(frame.compressed, "RSV1 kept");
        assert_eq!(&frame.payload[..], *chunk, "fragment {i} crossed untouched");
    }
    // The upstream echoed the compressed frames as they were; the client inflates them.
    let echoed = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("no echo in time")
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text(text));
    let _ = ws.close(None).await;
    gw.stop().await;
}
