//! Frames that break RFC 6455 §5 and §7 on an open echo WebSocket, and messages at and over
//! `limits.max_message_size`.

use std::net::SocketAddr;

use crate::server::{MAX_MESSAGE, good_jwt};
use crate::table::Outcome;
use crate::wire::{Ending, close_payload, frame, header_with_length, open};

/// How the connection ended, as the table shows it.
pub fn ending_text(ending: &Ending) -> (String, String) {
    match ending {
        Ending::Close(Some(code), reason) if reason.is_empty() => {
            (format!("close {code}"), String::new())
        }
        Ending::Close(Some(code), reason) => (format!("close {code}: {reason}"), reason.clone()),
        Ending::Close(None, _) => ("close (no code)".into(), String::new()),
        Ending::Eof => ("EOF without close".into(), String::new()),
    }
}

/// Opens `/echo`, sends `bytes`, and reports how the server ended the connection.
async fn case(addr: SocketAddr, name: &str, expected: &str, bytes: Vec<u8>) -> Outcome {
    let mut ws = open(addr, &format!("/echo?token={}", good_jwt()), "").await;
    ws.send(&bytes).await;
    let (ending, _) = ws.ending().await;
    let (actual, detail) = ending_text(&ending);
    Outcome::new("frames", name, expected, actual, detail)
}

pub async fn run(addr: SocketAddr) -> Vec<Outcome> {
    let mut out = Vec::new();
    out.push(
        case(
            addr,
            "unmasked client text frame",
            "close 1002: client frame is not masked",
            frame(0x81, b"hi", false),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "reserved data opcode 0x3",
            "close 1002: reserved opcode 0x3",
            frame(0x83, b"hi", true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "reserved control opcode 0xB",
            "close 1002: reserved opcode 0xb",
            frame(0x8b, b"hi", true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "RSV1 without an extension",
            "close 1002: reserved bits set without a negotiated extension",
            frame(0xc1, b"hi", true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "RSV2 set",
            "close 1002: reserved bits set without a negotiated extension",
            frame(0xa1, b"hi", true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "RSV3 set",
            "close 1002: reserved bits set without a negotiated extension",
            frame(0x91, b"hi", true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "64-bit length 2^63 (MSB set)",
            "close 1002: payload length has its most significant bit set",
            header_with_length(0x82, 1 << 63),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "64-bit length 2^63-1",
            "close 1009: frame of 9223372036854775807 bytes exceeds the limit of 1048576",
            header_with_length(0x82, (1 << 63) - 1),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "ping of 126 bytes",
            "close 1002: control frame payload of 126 bytes (limit 125)",
            frame(0x89, &[7; 126], true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "close of 126 bytes",
            "close 1002: control frame payload of 126 bytes (limit 125)",
            frame(0x88, &close_payload(1000, &[b'a'; 124]), true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "fragmented ping (FIN=0)",
            "close 1002: fragmented control frame",
            frame(0x09, b"ping", true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "continuation without a start",
            "close 1002: continuation frame without a message to continue",
            frame(0x80, b"x", true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "new text inside a fragmented one",
            "close 1002: text frame inside a fragmented message",
            [frame(0x01, b"a", true), frame(0x81, b"b", true)].concat(),
        )
        .await,
    );
    for code in [1005u16, 1006, 999, 5000, 1015, 1004] {
        out.push(
            case(
                addr,
                &format!("close code {code}"),
                &format!("close 1002: close code {code} is not allowed on the wire"),
                frame(0x88, &close_payload(code, b""), true),
            )
            .await,
        );
    }
    out.push(
        case(
            addr,
            "close payload of 1 byte",
            "close 1002: close frame with a 1-byte payload",
            frame(0x88, &[3], true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "close reason not UTF-8",
            "close 1007: invalid UTF-8 in the close reason",
            frame(0x88, &close_payload(1000, b"\xff\xfe"), true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "text not UTF-8",
            "close 1007: invalid UTF-8 in text",
            frame(0x81, b"ok \xc3\x28", true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "text fragment ending in a bad sequence",
            "close 1007: invalid UTF-8 in text",
            frame(0x01, b"\xed\xa0\x80", true),
        )
        .await,
    );
    out.push(
        case(
            addr,
            "message of max+1 bytes in one frame",
            "close 1009: frame of 1048577 bytes exceeds the limit of 1048576",
            frame(0x82, &vec![1; MAX_MESSAGE + 1], true),
        )
        .await,
    );
    let half = vec![2u8; MAX_MESSAGE / 2 + 1];
    out.push(
        case(
            addr,
            "message of max+2 bytes in two fragments",
            "close 1009: message exceeds the limit of 1048576 bytes",
            [frame(0x02, &half, true), frame(0x80, &half, true)].concat(),
        )
        .await,
    );
    out.push(at_the_limit(addr).await);
    out
}

/// A message of exactly `max_message_size` comes back whole, then the close is normal.
async fn at_the_limit(addr: SocketAddr) -> Outcome {
    let mut ws = open(addr, &format!("/echo?token={}", good_jwt()), "").await;
    ws.send(&frame(0x82, &vec![3; MAX_MESSAGE], true)).await;
    let echoed = ws.next_frame().await;
    ws.send(&frame(0x88, &close_payload(1000, b""), true)).await;
    let (ending, _) = ws.ending().await;
    let (close, _) = ending_text(&ending);
    let actual = match echoed {
        Some((0x2, payload)) if payload.iter().all(|&b| b == 3) => {
            format!("echoed {} B, {close}", payload.len())
        }
        other => format!("{:?}", other.map(|(op, p)| (op, p.len()))),
    };
    Outcome::new(
        "frames",
        "message of exactly max_message_size",
        format!("echoed {MAX_MESSAGE} B, close 1000"),
        actual,
        "",
    )
}
