//! Engine tests: RFC vectors, an in-memory client/server pair, and every failure's close code.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::close::{CloseCode, CloseFrame};
use crate::deflate::DeflateParams;
use crate::error::{ProtocolError, SendError};
use crate::frame::OpCode;
use crate::message::Message;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn config() -> Config {
    Config::default()
}

fn server() -> Connection {
    Connection::server(config(), None)
}

fn client() -> Connection {
    Connection::client(config(), None, || KEY)
}

pub(super) fn deflate_params() -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

/// Everything `conn` has queued, as one buffer.
pub(super) fn take_output(conn: &mut Connection) -> Vec<u8> {
    let mut slices = [IoSlice::new(&[]); 64];
    let n = conn.io_slices(&mut slices);
    let out: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
    assert_eq!(
        out.len(),
        conn.pending_transmit(),
        "io_slices shows every queued byte"
    );
    conn.advance_transmit(out.len());
    out
}

fn events(conn: &mut Connection) -> Vec<Result<Message, ProtocolError>> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

fn feed(conn: &mut Connection, bytes: &[u8]) -> Vec<Result<Message, ProtocolError>> {
    conn.receive(bytes);
    events(conn)
}

/// Feeds `bytes` to a server and expects it to fail with `err`, queueing a close with `code`.
fn assert_server_fails(bytes: &[u8], err: ProtocolError, code: u16) {
    let mut s = server();
    let evs = feed(&mut s, bytes);
    assert_eq!(evs.last(), Some(&Err(err)), "events: {evs:?}");
    assert_eq!(s.state(), State::Closed);
    let out = take_output(&mut s);
    assert_eq!(out[0], 0x88, "a close frame is queued");
    assert_eq!(u16::from_be_bytes([out[2], out[3]]), code);
    assert!(s.should_close_transport());
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut v = vec![first, 0x80 | payload.len() as u8];
    v.extend_from_slice(&KEY);
    let start = v.len();
    v.extend_from_slice(payload);
    crate::mask::apply_mask(&mut v[start..], KEY, 0);
    v
}

// ---- RFC 6455 §5.7 vectors through the engine ----

#[test]
fn rfc6455_5_7_client_receives_unmasked_hello() {
    let mut c = client();
    assert_eq!(
        feed(&mut c, &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
        vec![Ok(Message::text("Hello"))]
    );
}

#[test]
fn rfc6455_5_7_server_receives_masked_hello() {
    let mut s = server();
    let bytes = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(feed(&mut s, &bytes), vec![Ok(Message::text("Hello"))]);
}

#[test]
fn rfc6455_5_7_fragmented_hello() {
    let mut c = client();
    assert_eq!(feed(&mut c, &[0x01, 0x03, 0x48, 0x65, 0x6c]), vec![]);
    assert_eq!(
        feed(&mut c, &[0x80, 0x02, 0x6c, 0x6f]),
        vec![Ok(Message::text("Hello"))]
    );
}

#[test]
fn rfc6455_5_7_client_encodes_masked_hello() {
    let mut c = client();
    c.send(Message::text("Hello")).unwrap();
    assert_eq!(
        take_output(&mut c),
        [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
        ]
    );
}

#[test]
fn rfc6455_5_7_server_encodes_unmasked_hello_and_binary_256() {
    let mut s = server();
    s.send(Message::text("Hello")).unwrap();
    assert_eq!(
        take_output(&mut s),
        [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    );
    s.send(Message::binary(vec![0xaa; 256])).unwrap();
    let out = take_output(&mut s);
    assert_eq!(&out[..4], [0x82, 0x7e, 0x01, 0x00]);
    assert_eq!(out.len(), 260);
}

// RFC 6455 §5.5.2 / §5.7: an unmasked ping "Hello" is answered with a pong "Hello".
#[test]
fn rfc6455_5_5_2_ping_is_answered_with_identical_pong() {
    let mut c = client();
    let evs = feed(&mut c, &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(evs, vec![Ok(Message::Ping(Bytes::from_static(b"Hello")))]);
    assert_eq!(
        take_output(&mut c),
        [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
        ]
    );
}

#[test]
fn rfc6455_5_4_control_frames_interleave_with_fragments() {
    let mut s = server();
    let mut bytes = masked(0x01, b"Hel");
    bytes.extend(masked(0x89, b"p"));
    bytes.extend(masked(0x80, b"lo"));
    let evs = feed(&mut s, &bytes);
    assert_eq!(
        evs,
        vec![
            Ok(Message::Ping(Bytes::from_static(b"p"))),
            Ok(Message::text("Hello"))
        ]
    );
    assert_eq!(take_output(&mut s), [0x8a, 0x01, b'p']);
}

// ---- failures, each with its close code ----

#[test]
fn rfc6455_5_1_server_fails_on_unmasked_frame() {
    assert_server_fails(
        &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        ProtocolError::UnmaskedFrame,
        1002,
    );
}

#[test]
fn rfc6455_5_1_client_fails_on_masked_frame() {
    let mut c = client();
    let evs = feed(&mut c, &masked(0x81, b"hi"));
    assert_eq!(evs, vec![Err(ProtocolError::MaskedFrame)]);
}

#[test]
fn rfc6455_5_2_reserved_opcode_fails() {
    assert_server_fails(&masked(0x83, b""), ProtocolError::ReservedOpcode(3), 1002);
}

#[test]
fn rfc6455_5_2_reserved_bits_fail_without_extension() {
    assert_server_fails(
        &masked(0x81 | 0x40, b"x"),
        ProtocolError::ReservedBitsSet,
        1002,
    );
    assert_server_fails(
        &masked(0x81 | 0x20, b"x"),
        ProtocolError::ReservedBitsSet,
        1002,
    );
    assert_server_fails(
        &masked(0x81 | 0x10, b"x"),
        ProtocolError::ReservedBitsSet,
        1002,
    );
}

#[test]
fn rfc7692_6_1_rsv1_only_on_first_data_frame() {
    let mut s = Connection::server(config(), Some(deflate_params()));
    assert_eq!(
        feed(&mut s, &masked(0x89 | 0x40, b"")),
        vec![Err(ProtocolError::CompressedBitOnWrongFrame(OpCode::Ping))]
    );
}

#[test]
fn rfc6455_5_4_continuation_without_message_fails() {
    assert_server_fails(
        &masked(0x80, b"x"),
        ProtocolError::UnexpectedContinuation,
        1002,
    );
}

#[test]
fn rfc6455_5_4_new_message_inside_fragmented_fails() {
    let mut bytes = masked(0x01, b"a");
    bytes.extend(masked(0x81, b"b"));
    assert_server_fails(
        &bytes,
        ProtocolError::ExpectedContinuation(OpCode::Text),
        1002,
    );
}

#[test]
fn rfc6455_5_5_fragmented_and_long_control_frames_fail() {
    assert_server_fails(
        &masked(0x09, b""),
        ProtocolError::FragmentedControlFrame,
        1002,
    );
    let mut long = vec![0x89, 0xfe, 0, 126];
    long.extend_from_slice(&KEY);
    long.extend_from_slice(&[0; 126]);
    assert_server_fails(&long, ProtocolError::ControlFrameTooLong(126), 1002);
}

#[test]
fn rfc6455_8_1_invalid_utf8_fails_with_1007() {
    assert_server_fails(
        &masked(0x81, &[0xce, 0xba, 0xff]),
        ProtocolError::InvalidUtf8,
        1007,
    );
}

// Autobahn 6.4.x: fail as soon as the bytes can no longer be valid, inside a partial frame.
#[test]
fn rfc6455_8_1_invalid_utf8_fails_before_the_frame_ends() {
    let mut s = server();
    // A 20-byte text frame of which only 4 bytes arrive; the 4th is impossible after 0xf4.
    let mut bytes = vec![0x81, 0x80 | 20];
    bytes.extend_from_slice(&KEY);
    let mut payload = vec![b'a', b'b', 0xf4, 0x90];
    crate::mask::apply_mask(&mut payload, KEY, 0);
    bytes.extend_from_slice(&payload);
    assert_eq!(feed(&mut s, &bytes), vec![Err(ProtocolError::InvalidUtf8)]);
}

#[test]
fn rfc6455_8_1_invalid_utf8_fails_at_the_fragment_where_it_appears() {
    let mut s = server();
    assert_eq!(feed(&mut s, &masked(0x01, "κόσμε".as_bytes())), vec![]);
    assert_eq!(
        feed(&mut s, &masked(0x00, &[0xed, 0xa0, 0x80])),
        vec![Err(ProtocolError::InvalidUtf8)]
    );
}

#[test]
fn rfc6455_5_5_1_close_payload_rules() {
    assert_server_fails(
        &masked(0x88, &[0x03]),
        ProtocolError::InvalidClosePayload,
        1002,
    );
    assert_server_fails(
        &masked(0x88, &[0x03, 0xed]),
        ProtocolError::InvalidCloseCode(1005),
        1002,
    );
    assert_server_fails(
        &masked(0x88, &[0x03, 0xe7]),
        ProtocolError::InvalidCloseCode(999),
        1002,
    );
    assert_server_fails(
        &masked(0x88, &[0x03, 0xe8, 0xff]),
        ProtocolError::InvalidCloseReason,
        1007,
    );
}

#[test]
fn rfc6455_5_5_1_close_reason_must_be_utf8_and_says_so() {
    // A valid code, then a reason cut in the middle of a two-byte sequence.
    assert_server_fails(
        &masked(0x88, &[0x03, 0xe8, b'o', b'k', 0xc3]),
        ProtocolError::InvalidCloseReason,
        1007,
    );
    assert_eq!(
        ProtocolError::InvalidCloseReason.to_string(),
        "invalid UTF-8 in the close reason"
    );
    assert_eq!(
        ProtocolError::InvalidUtf8.to_string(),
        "invalid UTF-8 in text"
    );
}

#[test]
fn frame_over_limit_fails_with_1009_before_payload_arrives() {
    let mut cfg = config();
    cfg.max_frame_size = 1000;
    let mut s = Connection::server(cfg, None);
    let header = [0x82, 0xfe, 0x03, 0xe9, 1, 2, 3, 4];
    assert_eq!(
        feed(&mut s, &header),
        vec![Err(ProtocolError::FrameTooLarge {
            size: 1001,
            limit: 1000
        })]
    );
    assert_eq!(
        u16::from_be_bytes(take_output(&mut s)[2..4].try_into().unwrap()),
        1009
    );
}

#[test]
fn message_over_limit_across_fragments_fails_with_1009() {
    let mut cfg = config();
    cfg.max_message_size = 5;
    let mut s = Connection::server(cfg, None);
    let mut bytes = masked(0x02, b"abc");
    bytes.extend(masked(0x80, b"def"));
    assert_eq!(
        feed(&mut s, &bytes),
        vec![Err(ProtocolError::MessageTooLarge { limit: 5 })]
    );
}

#[test]
fn a_64_bit_length_with_top_bit_set_fails() {
    let bytes = [0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    assert_server_fails(&bytes, ProtocolError::PayloadLengthTooLong, 1002);
}

// Messages before a bad frame are delivered first; nothing after it is looked at.
#[test]
fn events_before_an_error_come_first_and_later_frames_are_ignored() {
    let mut s = server();
    let mut bytes = masked(0x81, b"ok");
    bytes.extend(masked(0x81 | 0x20, b"bad"));
    bytes.extend(masked(0x89, b"ignored"));
    let evs = feed(&mut s, &bytes);
    assert_eq!(
        evs,
        vec![Ok(Message::text("ok")), Err(ProtocolError::ReservedBitsSet)]
    );
    let out = take_output(&mut s);
    assert_eq!(out[0], 0x88, "only the close frame is queued, no pong");
}

// ---- close handshake ----

#[test]
fn rfc6455_7_close_handshake_started_by_client() {
    let (mut c, mut s) = (client(), server());
    c.close(Some(CloseFrame::new(1000, "done"))).unwrap();
    assert_eq!(c.state(), State::CloseSent);
    assert_eq!(c.send(Message::text("late")), Err(SendError::Closed));
    let evs = feed(&mut s, &take_output(&mut c));
    assert_eq!(
        evs,
        vec![Ok(Message::Close(Some(CloseFrame::new(1000, "done"))))]
    );
    assert_eq!(s.state(), State::Closed);
    // The server echoes the code, then closes the transport first (RFC 6455 §7.1.1).
    let reply = take_output(&mut s);
    assert_eq!(reply, [0x88, 0x02, 0x03, 0xe8]);
    assert!(s.should_close_transport());
    assert_eq!(
        feed(&mut c, &reply),
        vec![Ok(Message::Close(Some(CloseFrame::new(1000, ""))))]
    );
    assert_eq!(c.state(), State::Closed);
    // The client waits for the server's TCP close...
    assert!(!c.should_close_transport());
    assert!(c.receive_eof());
    assert!(c.should_close_transport());
}

#[test]
fn close_timeout_gives_up_waiting() {
    let mut c = client();
    let t0 = Instant::now();
    c.close(None).unwrap();
    take_output(&mut c);
    let deadline = c.poll_timeout(t0).unwrap();
    assert_eq!(deadline, t0 + Duration::from_secs(5));
    assert_eq!(
        c.poll_timeout(t0 + Duration::from_secs(1)),
        Some(deadline),
        "the deadline does not move"
    );
    c.handle_timeout(t0 + Duration::from_secs(4));
    assert_eq!(c.state(), State::CloseSent);
    c.handle_timeout(deadline);
    assert_eq!(c.state(), State::Closed);
    assert!(c.should_close_transport());
    assert!(!c.receive_eof(), "a timed-out close is not clean");
}

#[test]
fn eof_without_close_is_abnormal() {
    let mut s = server();
    assert!(!s.receive_eof());
    assert_eq!(s.state(), State::Closed);
}

#[test]
fn messages_after_close_received_are_ignored() {
    let mut s = server();
    let mut bytes = masked(0x88, &[0x03, 0xe8]);
    bytes.extend(masked(0x81, b"after"));
    let evs = feed(&mut s, &bytes);
    assert_eq!(
        evs,
        vec![Ok(Message::Close(Some(CloseFrame::new(1000, ""))))]
    );
}

#[test]
fn sending_invalid_close_codes_is_refused() {
    let mut s = server();
    assert_eq!(
        s.close(Some(CloseFrame::new(1005, ""))),
        Err(SendError::InvalidCloseCode(1005))
    );
    assert_eq!(
        s.close(Some(CloseFrame::new(1000, "x".repeat(124)))),
        Err(SendError::CloseReasonTooLong(124))
    );
    assert_eq!(
        s.send(Message::Ping(Bytes::from(vec![0; 126]))),
        Err(SendError::ControlFrameTooLong(126))
    );
}

// ---- the pair ----

fn pair(deflate: Option<DeflateParams>) -> (Connection, Connection) {
    let mut n = 0u32;
    let c = Connection::client(config(), deflate, move || {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12345);
        n.to_be_bytes()
    });
    (c, Connection::server(config(), deflate))
}

#[test]
fn pair_exchanges_fragmented_and_compressed_messages() {
    for deflate in [None, Some(deflate_params())] {
        let (mut c, mut s) = pair(deflate);
        let big = "tether ".repeat(5000);
        c.send(Message::text(big.clone())).unwrap();
        c.send_with(
            Message::binary(vec![7; 3000]),
            SendOptions::fragmented(1000),
        )
        .unwrap();
        c.send_with(Message::text("plain"), SendOptions::uncompressed())
            .unwrap();
        let evs = feed(&mut s, &take_output(&mut c));
        assert_eq!(
            evs,
            vec![
                Ok(Message::text(big.clone())),
                Ok(Message::binary(vec![7; 3000])),
                Ok(Message::text("plain"))
            ]
        );
        s.send(Message::text(big.clone())).unwrap();
        s.send_with(Message::text(big.clone()), SendOptions::fragmented(777))
            .unwrap();
        let evs = feed(&mut c, &take_output(&mut s));
        assert_eq!(
            evs,
            vec![Ok(Message::text(big.clone())), Ok(Message::text(big))]
        );
    }
}

#[test]
fn compressed_messages_set_rsv1_and_shrink() {
    let (mut c, mut s) = pair(Some(deflate_params()));
    s.send(Message::text("a".repeat(10_000))).unwrap();
    let out = take_output(&mut s);
    assert_eq!(out[0], 0xc1, "FIN + RSV1 + text");
    assert!(out.len() < 200);
    assert_eq!(
        feed(&mut c, &out),
        vec![Ok(Message::text("a".repeat(10_000)))]
    );
}

#[test]
fn prepared_messages_are_shared_bytes_for_servers_only() {
    let msg = Message::text("tick");
    let prepared = PreparedMessage::new(&msg).unwrap();
    let mut s = server();
    s.send_prepared(&prepared).unwrap();
    assert_eq!(take_output(&mut s), prepared.as_bytes());
    assert!(client().send_prepared(&prepared).is_err());
}

#[test]
fn full_outbound_queue_refuses_data_but_not_control() {
    let mut cfg = config();
    cfg.max_outbound_buffer = 10;
    let mut s = Connection::server(cfg, None);
    s.send(Message::binary(vec![0; 20])).unwrap();
    assert_eq!(s.send(Message::binary(vec![0; 1])), Err(SendError::Full));
    s.send(Message::Ping(Bytes::new())).unwrap();
    take_output(&mut s);
    s.send(Message::binary(vec![0; 1])).unwrap();
}

#[test]
fn idle_connection_holds_no_buffers() {
    let (mut c, mut s) = pair(None);
    c.send(Message::text("hello")).unwrap();
    feed(&mut s, &take_output(&mut c));
    assert_eq!(s.input.capacity(), 0);
    assert!(s.message.is_none() && s.frame.is_none());
}

proptest! {
    // A stream of messages split at arbitrary points decodes the same as in one piece.
    #[test]
    fn any_split_decodes_the_same(
        msgs in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300), 1usize..200), 1..8),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        compress in any::<bool>(),
    ) {
        let (mut c, mut s) = pair(compress.then(deflate_params));
        let mut expected = Vec::new();
        for (text, data, frag) in msgs {
            let msg = if text { Message::text(String::from_utf8_lossy(&data).into_owned()) } else { Message::binary(data) };
            c.send_with(msg.clone(), SendOptions::fragmented(frag)).unwrap();
            c.send(Message::Ping(Bytes::from_static(b"p"))).unwrap();
            expected.push(Ok(msg));
            expected.push(Ok(Message::Ping(Bytes::from_static(b"p"))));
        }
        let wire = take_output(&mut c);
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(0);
        points.push(wire.len());
        points.sort_unstable();
        let mut got = Vec::new();
        for w in points.windows(2) {
            got.extend(feed(&mut s, &wire[w[0]..w[1]]));
        }
        prop_assert_eq!(got, expected);
    }

    // Byte-at-a-time delivery of one message decodes the same.
    #[test]
    fn byte_at_a_time_decodes_the_same(data in proptest::collection::vec(any::<u8>(), 0..400), compress in any::<bool>()) {
        let (mut c, mut s) = pair(compress.then(deflate_params));
        c.send(Message::binary(data.clone())).unwrap();
        let wire = take_output(&mut c);
        let mut got = Vec::new();
        for b in &wire {
            got.extend(feed(&mut s, std::slice::from_ref(b)));
        }
        prop_assert_eq!(got, vec![Ok(Message::binary(data))]);
    }

    // Arbitrary bytes never panic, and after an error the engine stays closed.
    #[test]
    fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), compress in any::<bool>()) {
        let mut s = Connection::server(config(), compress.then(deflate_params));
        let evs = feed(&mut s, &data);
        if evs.iter().any(|e| e.is_err()) {
            prop_assert_eq!(s.state(), State::Closed);
        }
    }
}

#[test]
fn close_code_constants_round_trip() {
    assert_eq!(u16::from(CloseCode::MESSAGE_TOO_BIG), 1009);
}

#[test]
fn rfc7692_prepared_compressed_frame_is_shared_only_without_server_context_takeover() {
    let text = "shared fan-out payload ".repeat(50);
    let prepared = PreparedMessage::with_compression(&Message::text(text.clone()), 1, 64).unwrap();
    let compressed = prepared
        .compressed_bytes()
        .expect("large enough to compress")
        .to_vec();
    assert!(compressed.len() < prepared.as_bytes().len() / 4);
    let no_takeover = DeflateParams {
        server_no_context_takeover: true,
        ..deflate_params()
    };
    for (params, expect_compressed) in [
        (Some(no_takeover), true),
        (Some(deflate_params()), false),
        (None, false),
    ] {
        let mut s = Connection::server(config(), params);
        let mut c = Connection::client(config(), params, || KEY);
        // Twice: a shared frame must not depend on any earlier message's context.
        for _ in 0..2 {
            s.send_prepared(&prepared).unwrap();
            let wire = take_output(&mut s);
            assert_eq!(wire == compressed, expect_compressed);
            assert_eq!(feed(&mut c, &wire), vec![Ok(Message::text(text.clone()))]);
        }
    }
    let tiny = PreparedMessage::with_compression(&Message::text("hi"), 1, 64).unwrap();
    assert!(tiny.compressed_bytes().is_none());
}

// ---- Config::deferred_failure_close (intermediaries) ----

#[test]
fn rfc6455_7_1_7_deferred_failure_lets_the_application_send_first_then_close() {
    let mut s = Connection::server(
        Config {
            deferred_failure_close: true,
            ..config()
        },
        None,
    );
    // A message, then a reserved opcode, then a ping: the ping is never read.
    let mut bytes = masked(0x81, b"Hello");
    bytes.extend(masked(0x83, b""));
    bytes.extend(masked(0x89, b"p"));
    let evs = feed(&mut s, &bytes);
    assert_eq!(
        evs,
        vec![
            Ok(Message::text("Hello")),
            Err(ProtocolError::ReservedOpcode(3))
        ]
    );
    assert!(s.has_failed());
    assert_eq!(s.state(), State::Open);
    assert!(
        take_output(&mut s).is_empty(),
        "no close and no pong queued"
    );
    // Reading has stopped for good.
    assert!(feed(&mut s, &masked(0x81, b"more")).is_empty());
    // What the application still has to deliver goes out, then its close ends it all.
    s.send(Message::text("Hello")).unwrap();
    let close = CloseFrame::new(CloseCode::PROTOCOL_ERROR, "reserved opcode");
    s.close(Some(close)).unwrap();
    assert_eq!(s.state(), State::Closed);
    let out = take_output(&mut s);
    assert_eq!(&out[..7], b"\x81\x05Hello");
    assert_eq!(out[7], 0x88);
    assert_eq!(u16::from_be_bytes([out[9], out[10]]), 1002);
    assert!(
        s.should_close_transport(),
        "no closing handshake is awaited"
    );
    assert_eq!(s.poll_timeout(Instant::now()), None);
}

#[test]
fn deferred_failure_close_is_off_by_default() {
    assert!(!Config::default().deferred_failure_close);
    assert_server_fails(&masked(0x83, b""), ProtocolError::ReservedOpcode(3), 1002);
}

#[test]
fn a_binary_frame_split_over_reads_waits_whole_in_the_read_buffer() {
    let payload: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    let mut sender = client();
    sender.send(Message::binary(payload.clone())).unwrap();
    let wire = take_output(&mut sender);
    let mut srv = server();
    // The first read sizes the buffer for the frame (within twice what arrived), so the
    // later pieces land in it without growing it.
    assert!(feed(&mut srv, &wire[..40_000]).is_empty());
    assert!(
        srv.input.capacity() >= wire.len(),
        "{}",
        srv.input.capacity()
    );
    let capacity = srv.input.capacity();
    assert!(feed(&mut srv, &wire[40_000..65_000]).is_empty());
    assert_eq!(srv.input.capacity(), capacity);
    let got = feed(&mut srv, &wire[65_000..]);
    assert_eq!(got, vec![Ok(Message::binary(payload))]);
    assert!(srv.input.is_empty());
}

#[test]
fn a_declared_frame_length_alone_reserves_at_most_twice_what_arrived() {
    let mut srv = server();
    // A masked binary frame header declaring 16 MiB, then 10 bytes of it.
    let mut head = vec![0x82, 0xff];
    head.extend_from_slice(&(16u64 << 20).to_be_bytes());
    head.extend_from_slice(&KEY);
    head.extend_from_slice(&[0; 10]);
    assert!(feed(&mut srv, &head).is_empty());
    assert!(
        srv.input.capacity() <= 2 * head.len(),
        "{}",
        srv.input.capacity()
    );
}

/// An idle connection's state stays small: the configuration is shared, and what a message in
/// progress needs is boxed (docs/PERFORMANCE.md, memory per idle connection). 184 bytes: 8
/// more (a `u32` field) made the echo server's task cell, 128-aligned, grow from 384 bytes to
/// 512, and an idle connection ~85 bytes larger (docs/perf/idle-and-64k.md).
#[cfg(target_pointer_width = "64")]
#[test]
fn an_idle_connection_is_small() {
    assert!(
        std::mem::size_of::<Connection>() <= 184,
        "Connection is {} bytes",
        std::mem::size_of::<Connection>()
    );
}

#[test]
fn connections_share_one_config() {
    let config = std::sync::Arc::new(Config {
        max_message_size: 1234,
        ..Config::default()
    });
    let a = Connection::server(config.clone(), None);
    let b = Connection::client(config.clone(), None, || [1, 2, 3, 4]);
    assert_eq!(std::sync::Arc::strong_count(&config), 3);
    assert_eq!(a.config().max_message_size, 1234);
    assert_eq!(b.config().max_message_size, 1234);
}

/// Reads `wire` the way `tether`'s driver does: straight into the engine whenever it asks
/// (`direct_read_len`), otherwise through `receive`, in reads of at most `chunk` bytes, parsing
/// after each. Returns the events and how many reads went straight in.
fn feed_like_a_driver(
    conn: &mut Connection,
    wire: &[u8],
    chunk: usize,
) -> (Vec<Result<Message, ProtocolError>>, usize) {
    use bytes::BufMut;
    let mut evs = events(conn);
    let (mut pos, mut direct) = (0, 0);
    while pos < wire.len() {
        let n = match conn.direct_read_len() {
            Some(len) => {
                let n = len.min(chunk).min(wire.len() - pos);
                conn.receive_into(len, |buf| {
                    assert!(buf.remaining_mut() >= n, "room for {len} bytes");
                    buf.put_slice(&wire[pos..pos + n]);
                });
                direct += 1;
                n
            }
            None => {
                let n = chunk.min(wire.len() - pos);
                conn.receive(&wire[pos..pos + n]);
                n
            }
        };
        pos += n;
        evs.extend(events(conn));
    }
    (evs, direct)
}

/// A payload that is not all one byte, so a misplaced chunk shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

#[test]
fn large_frames_are_read_straight_into_the_engine() {
    let (mut c, mut s) = pair(None);
    let msgs = vec![
        Message::binary(pattern(100 << 10, 1)),
        Message::binary(pattern(40 << 10, 2)),
        Message::text("x".repeat(70 << 10)),
        Message::binary(pattern(300, 3)),
    ];
    for m in &msgs {
        c.send(m.clone()).unwrap();
    }
    let wire = take_output(&mut c);
    let (evs, direct) = feed_like_a_driver(&mut s, &wire, 16 << 10);
    assert_eq!(evs, msgs.into_iter().map(Ok).collect::<Vec<_>>());
    assert!(direct > 0, "no read went straight into the engine");
    // The last frame was small: the next read goes through a shared buffer again.
    assert_eq!(s.direct_read_len(), None);
}

#[test]
fn after_a_large_frame_the_next_read_is_sized_for_another() {
    let (mut c, mut s) = pair(None);
    c.send(Message::binary(pattern(64 << 10, 4))).unwrap();
    let wire = take_output(&mut c);
    assert_eq!(
        s.direct_read_len(),
        None,
        "an idle connection reads through a shared buffer"
    );
    assert_eq!(feed(&mut s, &wire).len(), 1);
    let len = s.direct_read_len().expect("a large frame came last");
    assert!(
        len > wire.len(),
        "room for a frame of the same size and more: {len}"
    );
    assert!(
        len < 2 * wire.len(),
        "no more than the frame and some slack: {len}"
    );
    // A read that brings nothing leaves the connection holding no buffer.
    s.receive_into(len, |_| ());
    assert_eq!(s.input.capacity(), 0);
    // The same frame again, read straight in, in one piece.
    c.send(Message::binary(pattern(64 << 10, 5))).unwrap();
    let wire = take_output(&mut c);
    let (evs, direct) = feed_like_a_driver(&mut s, &wire, usize::MAX);
    assert_eq!(evs, vec![Ok(Message::binary(pattern(64 << 10, 5)))]);
    assert_eq!(direct, 1);
    assert_eq!(s.input.capacity(), 0, "the message took the buffer with it");
}

#[test]
fn a_direct_read_asks_for_no_more_than_the_peer_sent() {
    let mut s = Connection::server(
        Config {
            max_frame_size: 64 << 20,
            max_message_size: 64 << 20,
            ..config()
        },
        None,
    );
    // A header declaring a 60 MiB binary frame, and 10 bytes of it.
    let mut head = vec![0x82, 0x80 | 127];
    head.extend_from_slice(&(60u64 << 20).to_be_bytes());
    head.extend_from_slice(&KEY);
    head.extend_from_slice(&[0; 10]);
    assert_eq!(feed(&mut s, &head), vec![]);
    let len = s.direct_read_len().expect("a large frame is arriving");
    assert!(
        len <= 2 * DIRECT_READ_MIN,
        "{len} bytes asked for on 24 received"
    );
    // However much has arrived, one read asks for at most DIRECT_READ_MAX and some slack.
    s.receive(&vec![0; 8 << 20]);
    assert_eq!(events(&mut s), vec![]);
    let len = s.direct_read_len().unwrap();
    assert!(
        (DIRECT_READ_MAX..2 * DIRECT_READ_MAX).contains(&len),
        "{len}"
    );
}

#[test]
fn small_and_control_frames_and_closed_connections_read_through_a_shared_buffer() {
    let mut s = server();
    assert_eq!(feed(&mut s, &masked(0x82, b"small")).len(), 1);
    assert_eq!(s.direct_read_len(), None);
    // Part of a ping.
    s.receive(&masked(0x89, b"ping")[..3]);
    assert_eq!(events(&mut s), vec![]);
    assert_eq!(s.direct_read_len(), None);

    let (mut c, mut s) = pair(None);
    c.send(Message::binary(pattern(50 << 10, 6))).unwrap();
    c.close(None).unwrap();
    let wire = take_output(&mut c);
    let evs = feed(&mut s, &wire);
    assert_eq!(evs.len(), 2);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.direct_read_len(), None, "nothing is read after the close");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    // Reading straight into the engine where it asks decodes the same as reading through
    // `receive`, for any mix of small, large, fragmented and compressed messages and any
    // read size.
    #[test]
    fn direct_reads_decode_the_same(
        msgs in proptest::collection::vec(
            (any::<bool>(), prop_oneof![0usize..300, (30usize << 10)..(90 << 10)], any::<u8>(), 1usize..(80 << 10)),
            1..5,
        ),
        chunk in prop_oneof![100usize..2000, 2000usize..(200 << 10)],
        compress in any::<bool>(),
    ) {
        let (mut c, mut s) = pair(compress.then(deflate_params));
        let mut expected = Vec::new();
        for (text, len, seed, frag) in msgs {
            let msg = if text {
                Message::text(String::from_utf8_lossy(&pattern(len, seed & 0x7f)).into_owned())
            } else {
                Message::binary(pattern(len, seed))
            };
            c.send_with(msg.clone(), SendOptions::fragmented(frag)).unwrap();
            expected.push(Ok(msg));
        }
        let wire = take_output(&mut c);
        let (got, _) = feed_like_a_driver(&mut s, &wire, chunk);
        prop_assert_eq!(got, expected);
    }
}
