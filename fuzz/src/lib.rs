//! Helpers shared by the fuzz targets: input splitting, parameter decoding, and the
//! connection-engine harness used by `connection_server` and `connection_client`.
//!
//! Every target reads a few leading bytes as settings and treats the rest as the stream
//! under test, so the seeds in `corpus/` stay readable: settings first, then wire bytes.

use std::collections::VecDeque;

use tether_proto::close::CloseCode;
use tether_proto::deflate::{DeflateConfig, DeflateParams};
use tether_proto::{
    Config, Connection, Message, ProtocolError, Role, SendError, SendOptions, State,
};

/// Splits `data` into chunks whose lengths come from a small PRNG, as reads from a socket
/// would: the engine's output must not depend on where the transport cut the stream.
#[derive(Clone, Debug)]
pub struct Chunks<'a> {
    rest: &'a [u8],
    rng: u32,
    max: usize,
}

impl<'a> Chunks<'a> {
    /// Chunks of 1 to `2^(shift % 13)` bytes (1 B to 4 KiB), lengths drawn from `seed`.
    pub fn new(data: &'a [u8], shift: u8, seed: u8) -> Self {
        Chunks {
            rest: data,
            // Never zero: xorshift would stay at zero.
            rng: (u32::from(seed) << 8 | 0xa5).wrapping_mul(0x9e37_79b9) | 1,
            max: 1 << (shift % 13),
        }
    }

    fn next_len(&mut self) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        1 + x as usize % self.max
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let n = self.next_len().min(self.rest.len());
        let (chunk, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(chunk)
    }
}

/// Negotiated permessage-deflate parameters from two settings bytes.
///
/// `flags` bit 0: server_no_context_takeover, bit 1: client_no_context_takeover.
/// `windows` low 3 bits: server_max_window_bits - 8; bits 4-6: client_max_window_bits - 8
/// (so `0x77` is 15/15, the default).
pub fn deflate_params(flags: u8, windows: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: flags & 1 != 0,
        client_no_context_takeover: flags & 2 != 0,
        server_max_window_bits: 8 + (windows & 7),
        client_max_window_bits: 8 + (windows >> 4 & 7),
    }
}

/// Compression level from the settings byte: bit 3 set means 9, bit 7 set means 0, else 1.
pub fn compression_level(windows: u8) -> u32 {
    match (windows & 0x08 != 0, windows & 0x80 != 0) {
        (_, true) => 0,
        (true, false) => 9,
        (false, false) => 1,
    }
}

/// Largest message the engine under test accepts: keeps memory bounded under fuzzing.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Largest frame the engine under test accepts.
pub const MAX_FRAME: usize = 1 << 20;
/// Outbound queue limit of the engine under test.
pub const MAX_OUTBOUND: usize = 64 << 10;

/// A source of distinct masking keys for a client.
pub fn mask_keys() -> impl FnMut() -> [u8; 4] + Send + 'static {
    let mut n: u32 = 0x1234_5678;
    move || {
        n = n.wrapping_mul(0x9e37_79b9).wrapping_add(1);
        n.to_be_bytes()
    }
}

fn connection(role: Role, config: Config, deflate: Option<DeflateParams>) -> Connection {
    match role {
        Role::Server => Connection::server(config, deflate),
        Role::Client => Connection::client(config, deflate, mask_keys()),
    }
}

/// What the peer must see next, in order, from the engine under test's output.
#[derive(Debug)]
enum Expect {
    /// A message that was echoed, or the pong that answered a ping.
    Message(Message),
    /// The close frame the engine queued: the echoed code of the peer's close, or the
    /// code of the error it failed with (`None`: a close without a status code).
    Close(Option<CloseCode>),
}

/// How the harness echoes messages: bits 0-6 are `n`, the fragment size is `n³` bytes (1 B to
/// 2 MB; 0: one frame); bit 7 set sends uncompressed (RSV1 clear) even when deflate is
/// negotiated.
pub fn send_options(b: u8) -> SendOptions {
    let mut options = match usize::from(b & 0x7f) {
        0 => SendOptions::default(),
        n => SendOptions::fragmented(n * n * n),
    };
    options.compress = b & 0x80 == 0;
    options
}

/// Settings of one `connection_*` run, from the first input byte.
///
/// Bit 0: permessage-deflate negotiated; bits 1-2: no_context_takeover (see
/// [`deflate_params`]); bit 3: auto_pong off; bit 4: echo every message back; bit 5: end with
/// transport EOF; bit 6: compress messages of any size (min_compress_size 0, else 64);
/// bit 7: `dangerous_accept_wrong_masking`.
#[derive(Clone, Copy, Debug)]
struct Settings {
    deflate: bool,
    auto_pong: bool,
    echo: bool,
    eof: bool,
    compress_all: bool,
    wrong_masking: bool,
}

impl Settings {
    fn from_byte(b: u8) -> Self {
        Settings {
            deflate: b & 0x01 != 0,
            auto_pong: b & 0x08 == 0,
            echo: b & 0x10 != 0,
            eof: b & 0x20 != 0,
            compress_all: b & 0x40 != 0,
            wrong_masking: b & 0x80 != 0,
        }
    }
}

/// Runs one connection engine in `role` over fuzz input.
///
/// Input layout: `[settings, windows, chunk_shift, chunk_seed, send, wire bytes...]`, where
/// `settings` is described on `Settings` (bit 0 chooses deflate), `windows` by
/// [`deflate_params`] and [`compression_level`], the chunk bytes by [`Chunks::new`], and
/// `send` by [`send_options`] (how echoed messages are sent).
///
/// Invariants checked:
/// - after an `Err` (or a close frame) the state is `Closed`, the failure flag matches, and no
///   event ever comes again, nor any new output;
/// - text messages are valid UTF-8 and messages respect `max_message_size`; control payloads
///   are at most 125 bytes;
/// - the events do not depend on how the input was split into reads: the same input in one
///   read gives the same messages, and an error with the same close code;
/// - the queued output stays bounded after every read;
/// - everything the engine writes is well formed for a peer engine of the other role with
///   the same negotiated parameters, and carries exactly the expected frames: echoed messages
///   byte for byte, a pong per ping, and a final close with the right code.
pub fn run_connection(role: Role, data: &[u8]) {
    let [settings, windows, shift, seed, send, wire @ ..] = data else {
        return;
    };
    let s = Settings::from_byte(*settings);
    let send_options = send_options(*send);
    let params = s.deflate.then(|| deflate_params(settings >> 1, *windows));

    let mut deflate = DeflateConfig::default();
    deflate.compression_level = compression_level(*windows);
    deflate.min_compress_size = if s.compress_all { 0 } else { 64 };
    let mut config = Config::default();
    config.max_message_size = MAX_MESSAGE;
    config.max_frame_size = MAX_FRAME;
    config.max_outbound_buffer = MAX_OUTBOUND;
    config.auto_pong = s.auto_pong;
    config.dangerous_accept_wrong_masking = s.wrong_masking;
    config.deflate = Some(deflate);
    assert_eq!(config.validate(), Ok(()));

    // The peer accepts frames a little larger than a message: a compressed echo of an
    // incompressible 1 MiB message grows by a few bytes.
    let mut peer_config = config.clone();
    peer_config.max_frame_size = 2 * MAX_FRAME;
    peer_config.dangerous_accept_wrong_masking = false;

    // What the same engine makes of the whole input in one read, for comparison.
    let reference = events_in_one_read(connection(role, config.clone(), params), wire);
    // Lent events (`for_each_ref`, copied out or broken on and taken) are the same events.
    for batch in [false, true] {
        let lent = lent_events_in_one_read(connection(role, config.clone(), params), wire, batch);
        assert!(
            lent == reference,
            "lent events differ (batch: {batch}):\n  lent: {lent:?}\n  owned: {reference:?}"
        );
    }
    let mut seen = Vec::new();
    let mut conn = connection(role, config, params);
    let mut peer = connection(role.peer(), peer_config, params);
    let mut expected = VecDeque::new();
    let mut done = false;

    for chunk in Chunks::new(wire, *shift, *seed) {
        if done {
            assert_eq!(conn.state(), State::Closed);
            conn.receive(chunk);
            assert!(!conn.has_buffered_input(), "input kept after close");
            assert!(conn.poll_event().is_none(), "event after close");
            assert_eq!(conn.pending_transmit(), 0, "output after close");
            continue;
        }
        conn.receive(chunk);
        while let Some(event) = conn.poll_event() {
            assert!(!done, "event after the connection closed: {event:?}");
            seen.push(summary(&event));
            match event {
                Ok(msg @ (Message::Text(_) | Message::Binary(_))) => {
                    if let Message::Text(t) = &msg {
                        assert!(std::str::from_utf8(t.as_bytes()).is_ok(), "bad UTF-8");
                    }
                    assert!(msg.payload().len() <= MAX_MESSAGE, "message over the limit");
                    assert_eq!(conn.state(), State::Open);
                    if s.echo {
                        match conn.send_with(msg.clone(), send_options) {
                            Ok(()) => expected.push_back(Expect::Message(msg)),
                            Err(SendError::Full) => {
                                assert!(conn.pending_transmit() >= MAX_OUTBOUND);
                            }
                            Err(e) => panic!("echo refused on an open connection: {e}"),
                        }
                    }
                }
                Ok(Message::Ping(p)) => {
                    assert!(p.len() <= 125);
                    if s.auto_pong {
                        expected.push_back(Expect::Message(Message::Pong(p)));
                    }
                }
                Ok(Message::Pong(p)) => assert!(p.len() <= 125),
                Ok(Message::Close(frame)) => {
                    assert_eq!(conn.state(), State::Closed, "close received but not closed");
                    assert!(!conn.has_failed());
                    if let Some(f) = &frame {
                        assert!(f.code.is_allowed_on_wire());
                        assert!(f.reason.len() <= 123);
                    }
                    expected.push_back(Expect::Close(frame.map(|f| f.code)));
                    done = true;
                }
                Err(e) => {
                    check_error(&conn, &e);
                    expected.push_back(Expect::Close(Some(e.close_code())));
                    done = true;
                }
            }
        }
        // Pongs are at most three times the pings that caused them (a 2-byte unmasked ping
        // gets a 6-byte masked pong); one echo may overshoot the outbound limit, by its
        // (compressed) payload plus up to 14 header bytes per fragment.
        let frag = send_options.fragment_size.unwrap_or(usize::MAX);
        let echo = MAX_MESSAGE + MAX_MESSAGE / 8 + 1024;
        let bound = MAX_OUTBOUND + echo + (echo / frag + 1) * 14 + 3 * chunk.len() + 1024;
        assert!(
            conn.pending_transmit() <= bound,
            "{} bytes queued after a {}-byte read",
            conn.pending_transmit(),
            chunk.len()
        );
        transfer(&mut conn, &mut peer, &mut expected);
    }

    assert!(
        seen == reference,
        "events depend on how the input was split:\n  in chunks: {seen:?}\n  in one read: {reference:?}"
    );
    if s.eof {
        let was_closed = conn.state() == State::Closed;
        let failed = conn.has_failed();
        let clean = conn.receive_eof();
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(clean, was_closed && !failed);
        assert!(conn.poll_event().is_none());
    }
    transfer(&mut conn, &mut peer, &mut expected);
    assert!(
        expected.is_empty(),
        "the peer never saw {expected:?} (state {:?})",
        conn.state()
    );
    if conn.state() == State::Closed && (role == Role::Server || conn.has_failed()) {
        assert!(conn.should_close_transport());
    }
}

/// An event as compared between runs: a message exactly, an error by its close code (the
/// text of an inflate error may name the point where the split input was noticed bad).
fn summary(event: &Result<Message, ProtocolError>) -> Result<Message, CloseCode> {
    match event {
        Ok(msg) => Ok(msg.clone()),
        Err(e) => Err(e.close_code()),
    }
}

/// The events `conn` produces from `wire` given in one read, without sending anything.
fn events_in_one_read(mut conn: Connection, wire: &[u8]) -> Vec<Result<Message, CloseCode>> {
    conn.receive(wire);
    std::iter::from_fn(|| conn.poll_event())
        .map(|event| summary(&event))
        .collect()
}

/// As [`events_in_one_read`], with every event lent: copied out (`batch`), or broken on and
/// taken.
fn lent_events_in_one_read(
    mut conn: Connection,
    wire: &[u8],
    batch: bool,
) -> Vec<Result<Message, CloseCode>> {
    conn.receive(wire);
    let mut out = Vec::new();
    if batch {
        let result = conn.for_each_ref(|message, _| {
            out.push(summary(&Ok(message.to_message())));
            std::ops::ControlFlow::Continue(())
        });
        if let Err(e) = result {
            out.push(summary(&Err(e)));
        }
    } else {
        // Break at every event and take it.
        loop {
            match conn.for_each_ref(|_, _| std::ops::ControlFlow::Break(())) {
                Ok(std::ops::ControlFlow::Break(())) => {
                    let taken = conn.take_lent().expect("the event broken on is lent");
                    out.push(summary(&Ok(taken)));
                }
                Ok(std::ops::ControlFlow::Continue(())) => break,
                Err(e) => {
                    out.push(summary(&Err(e)));
                    break;
                }
            }
        }
    }
    out
}

fn check_error(conn: &Connection, e: &ProtocolError) {
    assert_eq!(conn.state(), State::Closed, "error {e} but not closed");
    assert!(conn.has_failed(), "error {e} but not failed");
    let code = e.close_code();
    assert!(
        code.is_allowed_on_wire(),
        "error {e} maps to close code {code:?}"
    );
}

/// Moves everything `conn` queued into `peer` and checks each event the peer gets against
/// `expected`.
fn transfer(conn: &mut Connection, peer: &mut Connection, expected: &mut VecDeque<Expect>) {
    while conn.pending_transmit() > 0 {
        let chunk = conn.transmit_chunk().to_vec();
        assert!(!chunk.is_empty(), "bytes pending but no chunk to write");
        conn.advance_transmit(chunk.len());
        peer.receive(&chunk);
        while let Some(event) = peer.poll_event() {
            let event = match event {
                Ok(event) => event,
                Err(e) => panic!("the peer rejected our output: {e}"),
            };
            let want = expected
                .pop_front()
                .unwrap_or_else(|| panic!("the peer got an unexpected {event:?}"));
            match (&want, &event) {
                (Expect::Message(m), got) => assert_eq!(m, got, "the peer got another message"),
                (Expect::Close(code), Message::Close(got)) => {
                    assert_eq!(*code, got.as_ref().map(|f| f.code), "close code");
                }
                (want, got) => panic!("the peer got {got:?} instead of {want:?}"),
            }
        }
        // The peer's own replies (its close reply) are dropped.
        let n = peer.pending_transmit();
        peer.advance_transmit(n);
    }
}
