//! Frame streaming tests: fragment order, UTF-8 across fragments, control frames between
//! fragments, limits, and compressed frames passed on untouched.

use std::io::IoSlice;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::close::CloseCode;
use crate::config::Config;
use crate::connection::SendOptions;
use crate::deflate::DeflateParams;
use crate::message::Utf8Bytes;

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

fn streaming_server(config: Config, deflate: Option<DeflateParams>) -> Connection {
    let mut s = Connection::server(config, deflate);
    assert!(s.stream_frames());
    s
}

fn streaming_client(deflate: Option<DeflateParams>) -> Connection {
    let mut c = Connection::client(Config::default(), deflate, || KEY);
    assert!(c.stream_frames());
    c
}

fn params() -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

fn take_output(conn: &mut Connection) -> Vec<u8> {
    let mut slices = [IoSlice::new(&[]); 64];
    let n = conn.io_slices(&mut slices);
    let out: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    conn.advance_transmit(out.len());
    out
}

fn frames(conn: &mut Connection) -> Vec<Result<Incoming, ProtocolError>> {
    std::iter::from_fn(|| conn.poll_frame()).collect()
}

/// A masked frame from a client, as raw bytes (first byte: FIN, RSV and opcode).
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut v = vec![first, 0x80 | payload.len() as u8];
    v.extend_from_slice(&KEY);
    let start = v.len();
    v.extend_from_slice(payload);
    crate::mask::apply_mask(&mut v[start..], KEY, 0);
    v
}

fn frame(kind: DataKind, first: bool, fin: bool, payload: &'static [u8]) -> DataFrame {
    DataFrame {
        kind,
        first,
        fin,
        compressed: false,
        payload: Bytes::from_static(payload),
    }
}

fn ok_frame(kind: DataKind, first: bool, fin: bool, payload: &'static [u8]) -> Incoming {
    Incoming::Frame(frame(kind, first, fin, payload))
}

#[test]
fn rfc6455_5_4_fragments_come_out_with_their_boundaries() {
    let mut s = streaming_server(Config::default(), None);
    let mut input = masked(0x01, b"He");
    input.extend(masked(0x00, b""));
    input.extend(masked(0x00, b"ll"));
    input.extend(masked(0x80, b"o"));
    s.receive(&input);
    assert_eq!(
        frames(&mut s),
        vec![
            Ok(ok_frame(DataKind::Text, true, false, b"He")),
            Ok(ok_frame(DataKind::Text, false, false, b"")),
            Ok(ok_frame(DataKind::Text, false, false, b"ll")),
            Ok(ok_frame(DataKind::Text, false, true, b"o")),
        ]
    );
}

#[test]
fn a_frame_split_over_reads_comes_out_once_whole() {
    let mut s = streaming_server(Config::default(), None);
    let input = masked(0x82, b"abcdef");
    s.receive(&input[..4]);
    assert_eq!(frames(&mut s), vec![]);
    s.receive(&input[4..9]);
    assert_eq!(frames(&mut s), vec![]);
    s.receive(&input[9..]);
    assert_eq!(
        frames(&mut s),
        vec![Ok(ok_frame(DataKind::Binary, true, true, b"abcdef"))]
    );
}

#[test]
fn rfc6455_5_4_continuation_without_a_message_fails() {
    let mut s = streaming_server(Config::default(), None);
    s.receive(&masked(0x80, b"x"));
    assert_eq!(
        frames(&mut s),
        vec![Err(ProtocolError::UnexpectedContinuation)]
    );
    let out = take_output(&mut s);
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), 1002);
}

#[test]
fn rfc6455_5_4_a_new_message_inside_a_fragmented_one_fails() {
    let mut s = streaming_server(Config::default(), None);
    let mut input = masked(0x01, b"a");
    input.extend(masked(0x82, b"b"));
    s.receive(&input);
    assert_eq!(
        frames(&mut s),
        vec![
            Ok(ok_frame(DataKind::Text, true, false, b"a")),
            Err(ProtocolError::ExpectedContinuation(OpCode::Binary)),
        ]
    );
}

#[test]
fn rfc6455_5_5_fragmented_control_frame_fails() {
    let mut s = streaming_server(Config::default(), None);
    s.receive(&masked(0x09, b""));
    assert_eq!(
        frames(&mut s),
        vec![Err(ProtocolError::FragmentedControlFrame)]
    );
}

#[test]
fn rfc6455_5_1_unmasked_client_frame_fails() {
    let mut s = streaming_server(Config::default(), None);
    s.receive(&[0x81, 0x01, b'a']);
    assert_eq!(frames(&mut s), vec![Err(ProtocolError::UnmaskedFrame)]);
}

#[test]
fn rfc6455_5_2_rsv1_without_deflate_fails() {
    let mut s = streaming_server(Config::default(), None);
    s.receive(&masked(0xc1, b"a"));
    assert_eq!(frames(&mut s), vec![Err(ProtocolError::ReservedBitsSet)]);
}

#[test]
fn rfc6455_8_1_code_point_split_across_fragments_is_valid() {
    let mut s = streaming_server(Config::default(), None);
    // "€" is E2 82 AC.
    let mut input = masked(0x01, &[b'a', 0xe2]);
    input.extend(masked(0x80, &[0x82, 0xac]));
    s.receive(&input);
    assert_eq!(
        frames(&mut s),
        vec![
            Ok(ok_frame(DataKind::Text, true, false, &[b'a', 0xe2])),
            Ok(ok_frame(DataKind::Text, false, true, &[0x82, 0xac])),
        ]
    );
}

#[test]
fn rfc6455_8_1_bad_utf8_fails_fast_inside_a_frame() {
    let mut s = streaming_server(Config::default(), None);
    let mut input = masked(0x01, b"ok");
    // 0xE2 0x28: not a continuation byte. The frame is not final: the error comes before FIN.
    let bad = masked(0x00, &[0xe2, 0x28, b'a', b'b', b'c', b'd']);
    input.extend(&bad[..bad.len() - 3]);
    s.receive(&input);
    assert_eq!(
        frames(&mut s),
        vec![
            Ok(ok_frame(DataKind::Text, true, false, b"ok")),
            Err(ProtocolError::InvalidUtf8),
        ]
    );
    let out = take_output(&mut s);
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), 1007);
}

#[test]
fn rfc6455_8_1_text_ending_inside_a_code_point_fails() {
    let mut s = streaming_server(Config::default(), None);
    let mut input = masked(0x01, b"a");
    input.extend(masked(0x80, &[0xe2, 0x82]));
    s.receive(&input);
    assert_eq!(
        frames(&mut s).last(),
        Some(&Err(ProtocolError::InvalidUtf8))
    );
}

#[test]
fn rfc6455_5_5_2_ping_between_fragments_is_answered_in_order() {
    let mut s = streaming_server(Config::default(), None);
    let mut input = masked(0x02, b"12");
    input.extend(masked(0x89, b"hi"));
    input.extend(masked(0x80, b"34"));
    s.receive(&input);
    assert_eq!(
        frames(&mut s),
        vec![
            Ok(ok_frame(DataKind::Binary, true, false, b"12")),
            Ok(Incoming::Message(Message::Ping(Bytes::from_static(b"hi")))),
            Ok(ok_frame(DataKind::Binary, false, true, b"34")),
        ]
    );
    assert_eq!(take_output(&mut s), [0x8a, 0x02, b'h', b'i']);
}

#[test]
fn cumulative_message_size_limit_fails_with_1009() {
    let config = Config {
        max_message_size: 5,
        ..Config::default()
    };
    let mut s = streaming_server(config, None);
    let mut input = masked(0x02, b"123");
    input.extend(masked(0x80, b"456"));
    s.receive(&input);
    assert_eq!(
        frames(&mut s),
        vec![
            Ok(ok_frame(DataKind::Binary, true, false, b"123")),
            Err(ProtocolError::MessageTooLarge { limit: 5 }),
        ]
    );
    let out = take_output(&mut s);
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), 1009);
}

#[test]
fn rfc6455_7_4_close_code_is_checked() {
    let mut s = streaming_server(Config::default(), None);
    s.receive(&masked(0x88, &1005u16.to_be_bytes()));
    assert_eq!(
        frames(&mut s),
        vec![Err(ProtocolError::InvalidCloseCode(1005))]
    );
}

#[test]
fn poll_event_drops_data_frames_and_keeps_control_frames() {
    let mut s = streaming_server(Config::default(), None);
    let mut input = masked(0x81, b"a");
    input.extend(masked(0x88, &1000u16.to_be_bytes()));
    s.receive(&input);
    let events: Vec<_> = std::iter::from_fn(|| s.poll_event()).collect();
    assert_eq!(
        events,
        vec![Ok(Message::Close(Some(crate::close::CloseFrame {
            code: CloseCode::NORMAL,
            reason: Utf8Bytes::new(),
        })))]
    );
}

#[test]
fn streaming_cannot_start_after_data() {
    let mut s = Connection::server(Config::default(), None);
    s.receive(&masked(0x81, b"a"));
    assert!(s.poll_event().is_some());
    assert!(!s.stream_frames());
    assert!(!s.is_streaming_frames());
}

#[test]
fn rfc6455_5_4_sent_frames_must_follow_each_other() {
    let mut c = streaming_client(None);
    assert_eq!(
        c.send_frame(frame(DataKind::Text, false, true, b"x")),
        Err(SendError::FrameOutOfSequence(
            "a continuation frame without a message to continue"
        ))
    );
    c.send_frame(frame(DataKind::Text, true, false, b"a"))
        .unwrap();
    assert!(matches!(
        c.send_frame(frame(DataKind::Text, true, true, b"b")),
        Err(SendError::FrameOutOfSequence(_))
    ));
    assert!(matches!(
        c.send_frame(frame(DataKind::Binary, false, true, b"b")),
        Err(SendError::FrameOutOfSequence(_))
    ));
    assert!(matches!(
        c.send(Message::text("whole")),
        Err(SendError::FrameOutOfSequence(_))
    ));
    // Control frames may go between fragments.
    c.send(Message::Ping(Bytes::new())).unwrap();
    c.send_frame(frame(DataKind::Text, false, true, b"b"))
        .unwrap();
    assert!(!c.is_sending_fragments());
    c.send(Message::text("whole")).unwrap();
}

#[test]
fn rfc7692_6_compressed_frame_needs_deflate() {
    let mut c = streaming_client(None);
    let mut f = frame(DataKind::Binary, true, true, b"x");
    f.compressed = true;
    assert_eq!(c.send_frame(f), Err(SendError::CompressionNotNegotiated));
}

#[test]
fn sent_frames_arrive_with_the_same_boundaries() {
    let mut c = streaming_client(None);
    let mut s = streaming_server(Config::default(), None);
    let sent = [
        frame(DataKind::Text, true, false, b"one "),
        frame(DataKind::Text, false, false, b"two "),
        frame(DataKind::Text, false, true, b"three"),
    ];
    for f in &sent {
        c.send_frame(f.clone()).unwrap();
    }
    s.receive(&take_output(&mut c));
    let got: Vec<_> = frames(&mut s).into_iter().map(Result::unwrap).collect();
    let want: Vec<_> = sent.into_iter().map(Incoming::Frame).collect();
    assert_eq!(got, want);
}

/// client (deflate) -> proxy server leg (streaming) -> proxy client leg (streaming) ->
/// upstream server (deflate): compressed frames cross untouched, and the upstream inflates
/// the client's message.
#[test]
fn rfc7692_compressed_frames_cross_untouched() {
    let mut client = Connection::client(Config::default(), Some(params()), || KEY);
    let mut proxy_in = streaming_server(Config::default(), Some(params()));
    let mut proxy_out = streaming_client(Some(params()));
    let mut upstream = Connection::server(Config::default(), Some(params()));
    let text = "compress me, compress me, compress me, compress me, compress me!".repeat(4);
    for _ in 0..2 {
        // Twice: the second message uses the context the first one left (context takeover).
        client
            .send_with(Message::text(text.clone()), SendOptions::fragmented(4))
            .unwrap();
        let wire = take_output(&mut client);
        assert_eq!(wire[0] & 0x40, 0x40, "RSV1 set by the client");
        proxy_in.receive(&wire);
        let got: Vec<_> = frames(&mut proxy_in)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(got.len() > 1, "the compressed message was fragmented");
        for incoming in got {
            let Incoming::Frame(f) = incoming else {
                panic!("a data frame: {incoming:?}")
            };
            assert!(f.compressed);
            proxy_out.send_frame(f).unwrap();
        }
        let relayed = take_output(&mut proxy_out);
        assert_eq!(relayed[0] & 0x40, 0x40, "RSV1 kept");
        upstream.receive(&relayed);
        let events: Vec<_> = std::iter::from_fn(|| upstream.poll_event()).collect();
        assert_eq!(events, vec![Ok(Message::text(text.clone()))]);
    }
}

#[test]
fn whole_messages_go_uncompressed_while_streaming() {
    let mut s = streaming_server(Config::default(), Some(params()));
    s.send(Message::text("x".repeat(200))).unwrap();
    let out = take_output(&mut s);
    assert_eq!(out[0], 0x81, "FIN, text, RSV1 clear");
}

proptest! {
    /// Any split of any text into fragments crosses a sender and a receiver in frame mode
    /// with the same boundaries and bytes.
    #[test]
    fn any_fragmentation_keeps_its_boundaries(
        text in "\\PC{0,64}",
        cuts in proptest::collection::vec(0usize..64, 0..6),
        read_size in 1usize..16,
    ) {
        let bytes = text.as_bytes();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([bytes.len()]) {
            pieces.push(Bytes::copy_from_slice(&bytes[start..cut]));
            start = cut;
        }
        let mut c = streaming_client(None);
        let mut s = streaming_server(Config::default(), None);
        let last = pieces.len() - 1;
        let sent: Vec<DataFrame> = pieces
            .into_iter()
            .enumerate()
            .map(|(i, payload)| DataFrame {
                kind: DataKind::Text,
                first: i == 0,
                fin: i == last,
                compressed: false,
                payload,
            })
            .collect();
        for f in &sent {
            c.send_frame(f.clone()).unwrap();
        }
        let wire = take_output(&mut c);
        let mut got = Vec::new();
        for chunk in wire.chunks(read_size) {
            s.receive(chunk);
            got.extend(frames(&mut s));
        }
        let want: Vec<_> = sent.into_iter().map(|f| Ok(Incoming::Frame(f))).collect();
        prop_assert_eq!(got, want);
    }
}
