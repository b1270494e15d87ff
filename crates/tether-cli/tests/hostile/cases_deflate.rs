//! permessage-deflate bombs (RFC 7692): small compressed frames that inflate past
//! `limits.max_message_size`. The engine must stop inflating at the limit and close 1009.

use std::net::SocketAddr;

use flate2::{Compress, Compression, FlushCompress};

use crate::cases_frames::ending_text;
use crate::server::{MAX_MESSAGE, good_jwt};
use crate::table::Outcome;
use crate::wire::{frame, open};

/// Raw deflate of `mib` MiB of zeros, ending like a permessage-deflate message (the sync
/// flush's `00 00 ff ff` dropped, RFC 7692 §7.2.1). One MiB is compressed once with a full
/// flush, which leaves the output byte-aligned and the dictionary empty, so the same bytes
/// repeated are the deflate stream of many MiB (and 1 GiB never sits in memory).
fn zeros_deflated(mib: usize) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let zeros = vec![0u8; 1024 * 1024];
    let mut block = Vec::with_capacity(64 * 1024);
    compress
        .compress_vec(&zeros, &mut block, FlushCompress::Full)
        .unwrap();
    assert_eq!(compress.total_in(), zeros.len() as u64);
    assert!(
        block.ends_with(&[0, 0, 0xff, 0xff]),
        "a full flush ends with an empty stored block"
    );
    let mut out = block.repeat(mib);
    out.truncate(out.len() - 4);
    out
}

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

pub async fn run(addr: SocketAddr) -> Vec<Outcome> {
    let target = format!("/echo?token={}", good_jwt());
    let mut out = Vec::new();

    // One frame of a few KiB inflating to 8 MiB, eight times the limit.
    let small = zeros_deflated(8 * MAX_MESSAGE / (1024 * 1024));
    let mut ws = open(addr, &target, OFFER).await;
    ws.send(&frame(0xc2, &small, true)).await;
    let (actual, reason) = ending_text(&ws.ending().await.0);
    out.push(Outcome::new(
        "deflate",
        format!("bomb: one {} B frame inflating to 8 MiB", small.len()),
        "close 1009: message exceeds the limit of 1048576 bytes",
        actual,
        reason,
    ));

    // 1 GiB of zeros (about 1 MiB compressed) as 16 KiB fragments: the server must fail the
    // message once it inflates past the limit, long before the end.
    let big = zeros_deflated(1024);
    let fragments: Vec<&[u8]> = big.chunks(16 * 1024).collect();
    let mut ws = open(addr, &target, OFFER).await;
    let mut sent = 0;
    for (i, piece) in fragments.iter().enumerate() {
        let first = match (i, i + 1 == fragments.len()) {
            (0, _) => 0x42,
            (_, true) => 0x80,
            _ => 0x00,
        };
        if closed_or_write(&mut ws.tcp, &frame(first, piece, true)).await {
            break;
        }
        sent += piece.len();
    }
    let (actual, reason) = ending_text(&ws.ending().await.0);
    out.push(Outcome::new(
        "deflate",
        format!(
            "bomb: {} B inflating to 1 GiB in 16 KiB fragments",
            big.len()
        ),
        "close 1009: message exceeds the limit of 1048576 bytes",
        actual,
        format!("{reason}; {sent} compressed bytes written before the server stopped reading"),
    ));
    out
}

/// Writes `bytes` unless the server has already answered (its close) or hung up; `true` when
/// it has, or when the write fails.
async fn closed_or_write(tcp: &mut tokio::net::TcpStream, bytes: &[u8]) -> bool {
    use futures_util::FutureExt;
    use tokio::io::AsyncWriteExt;
    let mut peek = [0u8; 1];
    if tcp.peek(&mut peek).now_or_never().is_some() {
        return true;
    }
    tcp.write_all(bytes).await.is_err()
}
