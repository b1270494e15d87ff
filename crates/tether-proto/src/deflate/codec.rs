//! The permessage-deflate payload transformation (RFC 7692 §7.2): one raw-DEFLATE compressor for
//! the messages we send and one inflater for the messages we receive.

use core::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use miniz_oxide::deflate::core::{
    CompressorOxide, TDEFLFlush, TDEFLStatus, compress_to_output, deflate_flags,
};

use super::DeflateParams;
use crate::Role;

/// The last four octets of a sync flush: LEN and NLEN of an empty stored block. The sender strips
/// them from every compressed message (RFC 7692 §7.2.1) and the receiver appends them again before
/// inflating (RFC 7692 §7.2.2).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The least spare capacity handed to zlib's deflate. zlib's manual asks for more than six bytes
/// while a sync flush is in progress, so that it never has to emit the flush marker twice.
const MIN_DEFLATE_SPARE: usize = 64;

/// The least the output buffer grows by while inflating.
const MIN_INFLATE_GROW: usize = 256;

/// Why a compressed message could not be inflated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeflateError {
    /// The inflated message would be longer than `limit` bytes (the message size limit). Send a
    /// close frame with status 1009 (RFC 6455 §7.4.1).
    TooLarge {
        /// The limit that was exceeded: the `max_output` argument.
        limit: usize,
    },
    /// The payload is not valid DEFLATE data; the inflater's explanation is attached. Fail the
    /// connection (RFC 6455 §7.1.7), e.g. with status 1007.
    Corrupt(String),
}

impl fmt::Display for DeflateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeflateError::TooLarge { limit } => {
                write!(
                    f,
                    "inflated message is longer than the limit of {limit} bytes"
                )
            }
            DeflateError::Corrupt(msg) => write!(f, "invalid DEFLATE data: {msg}"),
        }
    }
}

impl std::error::Error for DeflateError {}

/// Our compressor, chosen by the window size we may use.
enum Compressor {
    /// zlib-rs (through flate2) with the negotiated window of 9 to 15 bits.
    Zlib(Compress),
    /// A negotiated window of 8 bits (256 bytes), for which zlib refuses raw deflate. miniz_oxide
    /// restricted to run-length matches: every back-reference has distance 1, so the output never
    /// refers back more than 256 bytes (RFC 7692 §7.1.2.1, §7.1.2.2). Boxed: the state is large.
    RunLength(Box<CompressorOxide>),
}

/// Per-connection permessage-deflate state: one compressor for what we send, one decompressor for
/// what we receive.
///
/// Outgoing message: `compress(payload, &mut buf)` once per message, then send `buf` as the
/// message payload with RSV1 set on its first frame. Incoming message whose first frame has RSV1
/// set: `decompress(frame_payload, &mut msg, limit)` for each frame's payload as it arrives (any
/// split works), then `finish_message(&mut msg, limit)` after the frame with FIN. Uncompressed
/// messages (RSV1 clear) and control frames never touch this state.
pub struct PerMessageDeflate {
    /// Compresses the messages we send.
    compressor: Compressor,
    /// The window (base-2 log) our compressor obeys.
    compress_window_bits: u8,
    /// Reset the compressor after each message: our side's `*_no_context_takeover`.
    compress_reset: bool,
    /// Inflates the messages we receive, always with a 15-bit window.
    inflater: Decompress,
    /// Reset the inflater after each message: the peer's `*_no_context_takeover`.
    inflate_reset: bool,
    /// The peer's DEFLATE stream ended with a block that had BFINAL set (RFC 7692 §7.2.3.4) and no
    /// input has been inflated since: the next input starts a new stream.
    stream_ended: bool,
}

impl fmt::Debug for PerMessageDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerMessageDeflate")
            .field("compress_window_bits", &self.compress_window_bits)
            .field("compress_no_context_takeover", &self.compress_reset)
            .field("inflate_no_context_takeover", &self.inflate_reset)
            .finish_non_exhaustive()
    }
}

impl PerMessageDeflate {
    /// `role` is THIS endpoint's role. As Server, our compressor obeys server_max_window_bits /
    /// server_no_context_takeover and the peer's (client_*) params describe what we inflate; as
    /// Client the other way round.
    ///
    /// `compression_level` is zlib's 0 (store only) to 9 (best); larger values mean 9. Window
    /// sizes are expected in 8..=15; smaller ones are treated as 8 and larger ones as 15.
    pub fn new(role: Role, params: DeflateParams, compression_level: u32) -> Self {
        // RFC 7692 §7.1.1 and §7.1.2: the server_* parameters constrain what the server compresses
        // (and so what the client inflates); the client_* parameters the other way round.
        let (own_bits, own_no_takeover, peer_no_takeover) = match role {
            Role::Server => (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_no_context_takeover,
            ),
            Role::Client => (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_no_context_takeover,
            ),
        };
        let level = compression_level.min(9);
        let bits = own_bits.clamp(8, 15);
        let compressor = if bits == 8 {
            Compressor::RunLength(Box::new(CompressorOxide::new(run_length_flags(level))))
        } else {
            // RFC 7692 §7.1.2: our LZ77 window must not exceed the negotiated one.
            Compressor::Zlib(Compress::new_with_window_bits(
                Compression::new(level),
                false,
                bits,
            ))
        };
        PerMessageDeflate {
            compressor,
            compress_window_bits: bits,
            compress_reset: own_no_takeover,
            // The peer's window is at most 15 bits, and a 15-bit window decodes anything produced
            // with a smaller one. The default window size also keeps `reset` allocation-free.
            inflater: Decompress::new(false),
            inflate_reset: peer_no_takeover,
            stream_ended: false,
        }
    }

    /// Compresses one whole message payload (RFC 7692 §7.2.1): appends the DEFLATE bytes, ending in
    /// a sync flush with the trailing 0x00 0x00 0xff 0xff removed, to `out`. Resets the
    /// compression context afterwards when our side's no_context_takeover was negotiated.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if payload.is_empty() {
            // RFC 7692 §7.2.3.6: a lone 0x00 (the header bits of an empty stored block and their
            // padding) inflates to nothing once the tail is appended. zlib itself emits nothing for
            // a second sync flush with no new input. After a sync flush our compressor is at a
            // byte boundary, so this extra empty block does not disturb the shared context, and
            // since the context did not change there is nothing to reset either.
            out.push(0x00);
            return;
        }
        let start = out.len();
        match &mut self.compressor {
            Compressor::Zlib(compress) => deflate_zlib(compress, payload, out),
            Compressor::RunLength(compress) => deflate_run_length(compress, payload, out),
        }
        // RFC 7692 §7.2.1: the data ends with an empty stored block; drop its last four octets.
        debug_assert!(
            out[start..].ends_with(&SYNC_TAIL),
            "sync flush marker missing"
        );
        out.truncate(out.len() - SYNC_TAIL.len());
        // RFC 7692 §7.1.1.1 / §7.1.1.2: with no_context_takeover the next message must not refer
        // to this one. Resetting keeps the allocations.
        if self.compress_reset {
            match &mut self.compressor {
                Compressor::Zlib(compress) => compress.reset(),
                Compressor::RunLength(compress) => compress.reset(),
            }
        }
    }

    /// Inflates the next chunk of a compressed message's payload (streaming: any split of the
    /// payload into chunks gives the same output), appending to `out`. `max_output` bounds
    /// out.len() (the message size limit); going over returns Err(DeflateError::TooLarge{limit})
    /// and memory stays bounded: never grow `out` to more than max_output + a small constant (a 1
    /// KiB payload inflating to 1 GiB must fail fast with little memory).
    ///
    /// `out` grows to at most `max_output + 1` bytes of capacity (more only if it already had
    /// it). After an error the inflater is reset; the connection is expected to be failed.
    pub fn decompress(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_output: usize,
    ) -> Result<(), DeflateError> {
        self.inflate(input, out, max_output, false)
    }

    /// Ends a message: inflates the implicit 0x00 0x00 0xff 0xff tail (RFC 7692 §7.2.2) and resets
    /// the decompression context when the peer's no_context_takeover was negotiated.
    pub fn finish_message(
        &mut self,
        out: &mut Vec<u8>,
        max_output: usize,
    ) -> Result<(), DeflateError> {
        let result = if self.stream_ended {
            // The message ended right after a block with BFINAL set (RFC 7692 §7.2.3.4): the tail
            // would only start a new DEFLATE stream, so it is not needed.
            Ok(())
        } else {
            // RFC 7692 §7.2.2: append 0x00 0x00 0xff 0xff to the payload and inflate.
            self.inflate(&SYNC_TAIL, out, max_output, true)
        };
        // RFC 7692 §7.1.1.1 / §7.1.1.2: the peer starts its next message from an empty context.
        // After a BFINAL block the next message is a new DEFLATE stream as well.
        if self.inflate_reset || self.stream_ended {
            self.reset_inflater();
        }
        result
    }

    /// Inflates `input` into `out`. `tail`: `input` is the implicit tail, so anything after the end
    /// of a DEFLATE stream is ignored rather than starting a new stream.
    fn inflate(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        max_output: usize,
        tail: bool,
    ) -> Result<(), DeflateError> {
        if out.len() > max_output {
            return Err(self.fail(DeflateError::TooLarge { limit: max_output }));
        }
        // Give the inflater room for one byte past the limit: writing it is how we learn that the
        // message is too long, without ever inflating much more than the limit.
        let hard_cap = max_output.saturating_add(1);
        // The last call filled `out`: the inflater may hold more output even without more input.
        let mut output_full = false;
        loop {
            if input.is_empty() && !output_full {
                return Ok(());
            }
            if self.stream_ended {
                // RFC 7692 §7.2.3.4: a block with BFINAL set ended the DEFLATE stream; the blocks
                // that follow form a new one.
                self.reset_inflater();
            }
            reserve_inflate_space(out, input.len(), hard_cap);
            let in_before = self.inflater.total_in();
            let out_before = out.len();
            let result = self
                .inflater
                .decompress_vec(input, out, FlushDecompress::None);
            let consumed = (self.inflater.total_in() - in_before) as usize;
            input = &input[consumed..];
            let status = match result {
                Ok(status) => status,
                Err(err) => {
                    let msg = err.message().unwrap_or("invalid DEFLATE data").to_owned();
                    return Err(self.fail(DeflateError::Corrupt(msg)));
                }
            };
            if out.len() > max_output {
                return Err(self.fail(DeflateError::TooLarge { limit: max_output }));
            }
            output_full = out.len() == out.capacity();
            match status {
                Status::StreamEnd => {
                    self.stream_ended = true;
                    if tail {
                        return Ok(());
                    }
                    // A finished stream holds no pending output.
                    output_full = false;
                }
                Status::Ok | Status::BufError => {
                    // Without input and with room left the inflater had no pending output: done
                    // (checked at the top of the loop). With input and room for output it always
                    // progresses or fails; never spin on a state where it does neither.
                    if !input.is_empty() && consumed == 0 && out.len() == out_before && !output_full
                    {
                        return Err(self.fail(DeflateError::Corrupt(
                            "inflater made no progress".to_owned(),
                        )));
                    }
                }
            }
        }
    }

    /// Resets the inflater to the start of a new stream with an empty window.
    fn reset_inflater(&mut self) {
        self.inflater.reset(false);
        self.stream_ended = false;
    }

    /// Leaves the inflater in a clean state after an error and returns `err`.
    fn fail(&mut self, err: DeflateError) -> DeflateError {
        self.reset_inflater();
        err
    }
}

/// miniz_oxide flags for the 8-bit window: raw DEFLATE (no zlib header), run-length matches only,
/// greedy parsing, and no hash probes so that the fast path (which ignores the run-length flag) is
/// never taken. Level 0 stores the data uncompressed, which has no back-references either.
fn run_length_flags(level: u32) -> u32 {
    if level == 0 {
        deflate_flags::TDEFL_FORCE_ALL_RAW_BLOCKS
    } else {
        deflate_flags::TDEFL_RLE_MATCHES | deflate_flags::TDEFL_GREEDY_PARSING_FLAG
    }
}

/// An upper bound on the raw DEFLATE output for `len` input bytes plus the sync flush marker
/// (zlib's conservative `deflateBound`), with [`MIN_DEFLATE_SPARE`] to spare so that one
/// reservation is enough.
fn deflate_bound(len: usize) -> usize {
    len.saturating_add((len >> 3) + (len >> 6) + MIN_DEFLATE_SPARE)
}

/// Compresses `payload` with zlib and a sync flush, straight into `out`'s spare capacity.
fn deflate_zlib(compress: &mut Compress, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(deflate_bound(payload.len()));
    let start_in = compress.total_in();
    let mut consumed = 0;
    loop {
        if out.capacity() - out.len() < MIN_DEFLATE_SPARE {
            out.reserve(MIN_DEFLATE_SPARE.max(payload.len() - consumed));
        }
        let out_before = out.len();
        compress
            .compress_vec(&payload[consumed..], out, FlushCompress::Sync)
            .expect("zlib deflate cannot fail on a consistent stream");
        let consumed_now = (compress.total_in() - start_in) as usize;
        // zlib manual: the flush is complete once all input is consumed and deflate returns with
        // output space left over.
        if consumed_now == payload.len() && out.len() < out.capacity() {
            return;
        }
        assert!(
            consumed_now > consumed || out.len() > out_before,
            "zlib deflate made no progress"
        );
        consumed = consumed_now;
    }
}

/// Compresses `payload` with the run-length-only compressor and a sync flush.
fn deflate_run_length(compress: &mut CompressorOxide, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(deflate_bound(payload.len()));
    let (status, consumed) = compress_to_output(compress, payload, TDEFLFlush::Sync, |chunk| {
        out.extend_from_slice(chunk);
        true
    });
    assert!(
        status == TDEFLStatus::Okay && consumed == payload.len(),
        "miniz_oxide deflate failed: {status:?}"
    );
}

/// Makes sure `out` has spare capacity for the inflater: about twice the remaining input on the
/// first call, then doubling, but never past `hard_cap` bytes in total.
fn reserve_inflate_space(out: &mut Vec<u8>, input_len: usize, hard_cap: usize) {
    let len = out.len();
    let spare = out.capacity() - len;
    // Room left under the cap; at least 1 because `len <= max_output < hard_cap`.
    let room = hard_cap - len;
    let wanted = input_len.saturating_mul(2).max(MIN_INFLATE_GROW).min(room);
    if spare >= wanted {
        return;
    }
    let additional = wanted.max(out.capacity()).min(room);
    out.reserve_exact(additional);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(bits: u8, no_context_takeover: bool) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: no_context_takeover,
            client_no_context_takeover: no_context_takeover,
            server_max_window_bits: bits,
            client_max_window_bits: bits,
        }
    }

    /// A receiving endpoint (server) for messages from a peer that compressed with `p`.
    fn receiver(p: DeflateParams) -> PerMessageDeflate {
        PerMessageDeflate::new(Role::Server, p, 1)
    }

    /// Inflates one whole message in one call.
    fn inflate_msg(pmd: &mut PerMessageDeflate, payload: &[u8]) -> Result<Vec<u8>, DeflateError> {
        let mut out = Vec::new();
        pmd.decompress(payload, &mut out, usize::MAX)?;
        pmd.finish_message(&mut out, usize::MAX)?;
        Ok(out)
    }

    /// Inflates one message fed in chunks of `chunk` bytes.
    fn inflate_chunked(
        pmd: &mut PerMessageDeflate,
        payload: &[u8],
        chunk: usize,
        limit: usize,
    ) -> Result<Vec<u8>, DeflateError> {
        let mut out = Vec::new();
        for part in payload.chunks(chunk.max(1)) {
            pmd.decompress(part, &mut out, limit)?;
        }
        pmd.finish_message(&mut out, limit)?;
        Ok(out)
    }

    fn compress_msg(pmd: &mut PerMessageDeflate, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        pmd.compress(payload, &mut out);
        out
    }

    /// Deterministic text-like data: words from a small vocabulary, some numbers and punctuation.
    fn text(len: usize, seed: u64) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "the",
            "socket",
            "frame",
            "message",
            "deflate",
            "window",
            "context",
            "server",
            "client",
            "payload",
            "{\"id\":",
            "\"type\":",
            "\"data\":",
            "null",
            "true",
            "false",
            "hello",
            "world",
            "tether",
            "compress",
        ];
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut out = Vec::with_capacity(len + 16);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let pick = (state % 25) as usize;
            if pick < WORDS.len() {
                out.extend_from_slice(WORDS[pick].as_bytes());
            } else {
                out.extend_from_slice((state % 100_000).to_string().as_bytes());
            }
            out.push(if state & 0x30 == 0 { b'\n' } else { b' ' });
        }
        out.truncate(len);
        out
    }

    // RFC 7692 §7.2.3 examples.

    #[test]
    fn rfc_7_2_3_1_hello() {
        let mut pmd = receiver(params(15, false));
        let msg = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_msg(&mut pmd, &msg).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7_2_3_2_context_takeover() {
        let mut pmd = receiver(params(15, false));
        let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(inflate_msg(&mut pmd, &first).unwrap(), b"Hello");
        assert_eq!(inflate_msg(&mut pmd, &second).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7_2_3_2_second_message_needs_the_context() {
        // The same second message after a reset refers to data the inflater does not have.
        let mut pmd = receiver(params(15, true));
        let first = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
        assert_eq!(inflate_msg(&mut pmd, &first).unwrap(), b"Hello");
        assert!(matches!(
            inflate_msg(&mut pmd, &second),
            Err(DeflateError::Corrupt(_))
        ));
    }

    #[test]
    fn rfc_7_2_3_3_stored_block() {
        let mut pmd = receiver(params(15, false));
        let msg = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_msg(&mut pmd, &msg).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7_2_3_4_bfinal_block() {
        let mut pmd = receiver(params(15, false));
        let msg = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        assert_eq!(inflate_msg(&mut pmd, &msg).unwrap(), b"Hello");
        // The next message starts a new DEFLATE stream and still inflates.
        let next = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(inflate_msg(&mut pmd, &next).unwrap(), b"Hello");
        // Without the padding octet after the BFINAL block, too, byte by byte.
        let bare = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        assert_eq!(
            inflate_chunked(&mut pmd, &bare, 1, usize::MAX).unwrap(),
            b"Hello"
        );
        assert_eq!(inflate_msg(&mut pmd, &next).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7_2_3_5_two_blocks() {
        let mut pmd = receiver(params(15, false));
        let msg = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        assert_eq!(inflate_msg(&mut pmd, &msg).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_7_2_3_6_empty_message() {
        let mut pmd = receiver(params(15, false));
        assert_eq!(inflate_msg(&mut pmd, &[0x00]).unwrap(), b"");
        // Our compressor produces exactly that for an empty payload, also mid-stream.
        let mut sender = PerMessageDeflate::new(Role::Client, params(15, false), 6);
        assert_eq!(compress_msg(&mut sender, b""), [0x00]);
        let hello = compress_msg(&mut sender, b"Hello");
        assert_eq!(compress_msg(&mut sender, b""), [0x00]);
        assert_eq!(inflate_msg(&mut pmd, &hello).unwrap(), b"Hello");
        assert_eq!(inflate_msg(&mut pmd, &[0x00]).unwrap(), b"");
    }

    #[test]
    fn rfc_examples_any_split() {
        let examples: &[&[u8]] = &[
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00],
            &[
                0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
            ],
        ];
        for msg in examples {
            for split in 0..=msg.len() {
                let mut pmd = receiver(params(15, false));
                let mut out = Vec::new();
                pmd.decompress(&msg[..split], &mut out, 5).unwrap();
                pmd.decompress(&msg[split..], &mut out, 5).unwrap();
                pmd.finish_message(&mut out, 5).unwrap();
                assert_eq!(out, b"Hello", "split at {split} of {msg:02x?}");
            }
        }
    }

    #[test]
    fn compresses_hello_like_the_rfc() {
        for level in 0..=9 {
            let mut sender = PerMessageDeflate::new(Role::Server, params(15, false), level);
            let mut pmd = PerMessageDeflate::new(Role::Client, params(15, false), level);
            for _ in 0..3 {
                let wire = compress_msg(&mut sender, b"Hello");
                assert_eq!(inflate_msg(&mut pmd, &wire).unwrap(), b"Hello");
            }
        }
    }

    // Window sizes and context takeover.

    /// A sequence of messages that repeat each other's content, so context takeover matters and
    /// matches reach back across message boundaries.
    fn message_sequence() -> Vec<Vec<u8>> {
        let mut msgs = Vec::new();
        for i in 0..48u64 {
            let len = match i % 6 {
                0 => 0,
                1 => 7,
                2 => 300,
                3 => 1500,
                4 => 5000,
                _ => 40_000,
            };
            let mut m = text(len, i % 4);
            if i % 5 == 0 {
                m.extend(std::iter::repeat_n(b'z', 600));
            }
            msgs.push(m);
        }
        msgs
    }

    #[test]
    fn every_window_size_round_trips_with_context_takeover() {
        let msgs = message_sequence();
        for bits in 8..=15u8 {
            for role in [Role::Client, Role::Server] {
                let p = params(bits, false);
                let mut sender = PerMessageDeflate::new(role, p, 6);
                let mut ours = PerMessageDeflate::new(role.peer(), p, 6);
                let mut strict = StrictInflater::new(bits);
                let mut flate2_15 = Decompress::new(false);
                let mut flate2_w =
                    (bits >= 9).then(|| Decompress::new_with_window_bits(false, bits));
                let mut wire_total = 0;
                let mut plain_total = 0;
                for (i, m) in msgs.iter().enumerate() {
                    let wire = compress_msg(&mut sender, m);
                    wire_total += wire.len();
                    plain_total += m.len();
                    let mut full = wire.clone();
                    full.extend_from_slice(&SYNC_TAIL);
                    let ctx = format!("bits {bits}, {role:?}, message {i}");
                    // A decoder that rejects any distance beyond 2^bits bytes, within a message or
                    // across messages. flate2's `Decompress::new_with_window_bits` panics for 8
                    // (it takes 9..=15), and zlib checks distances against its window only for
                    // data written by earlier calls, so this is the stricter check.
                    assert_eq!(strict.inflate(&full).expect(&ctx), *m, "{ctx}");
                    // zlib-rs with a 15-bit window and, where flate2 allows it, the exact window.
                    for inflater in [Some(&mut flate2_15), flate2_w.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        let mut out = Vec::with_capacity(m.len() + 64);
                        let before = inflater.total_in();
                        inflater
                            .decompress_vec(&full, &mut out, FlushDecompress::Sync)
                            .expect(&ctx);
                        assert_eq!(inflater.total_in() - before, full.len() as u64, "{ctx}");
                        assert_eq!(out, *m, "{ctx}");
                    }
                    assert_eq!(
                        inflate_chunked(&mut ours, &wire, 1000, m.len()).expect(&ctx),
                        *m
                    );
                }
                // Run-length matches only (8 bits) compress text far less than LZ77 does.
                let factor = if bits == 8 { 1 } else { 2 };
                assert!(
                    wire_total * factor < plain_total,
                    "bits {bits}: {wire_total} of {plain_total} bytes"
                );
            }
        }
    }

    #[test]
    fn strict_inflater_rejects_far_distances() {
        // The oracle used above does catch a compressor that reaches too far back.
        let payload = [text(1000, 5), text(1000, 5)].concat();
        let mut sender = PerMessageDeflate::new(Role::Client, params(15, false), 6);
        let mut full = compress_msg(&mut sender, &payload);
        full.extend_from_slice(&SYNC_TAIL);
        assert_eq!(StrictInflater::new(15).inflate(&full).unwrap(), payload);
        let err = StrictInflater::new(9).inflate(&full).unwrap_err();
        assert!(err.contains("exceeds the 512-byte window"), "{err}");
        // And one that refers to a context the receiver reset.
        let mut strict = StrictInflater::new(15);
        let mut sender = PerMessageDeflate::new(Role::Client, params(15, false), 6);
        let mut first = compress_msg(&mut sender, &payload);
        first.extend_from_slice(&SYNC_TAIL);
        let mut second = compress_msg(&mut sender, &payload);
        second.extend_from_slice(&SYNC_TAIL);
        strict.inflate(&first).unwrap();
        strict.reset();
        assert!(strict.inflate(&second).is_err());
    }

    #[test]
    fn window_8_uses_only_short_distances_at_every_level() {
        let msgs = message_sequence();
        for level in 0..=9 {
            for no_takeover in [false, true] {
                let mut sender =
                    PerMessageDeflate::new(Role::Server, params(8, no_takeover), level);
                let mut strict = StrictInflater::new(8);
                for m in msgs.iter().take(30) {
                    let mut full = compress_msg(&mut sender, m);
                    full.extend_from_slice(&SYNC_TAIL);
                    assert_eq!(strict.inflate(&full).unwrap(), *m, "level {level}");
                    if no_takeover {
                        strict.reset();
                    }
                }
            }
        }
    }

    #[test]
    fn no_context_takeover_resets_the_compressor() {
        let payload = text(2000, 7);
        for bits in [8, 12, 15] {
            let mut fresh = PerMessageDeflate::new(Role::Client, params(bits, true), 6);
            let a = compress_msg(&mut fresh, &payload);
            let b = compress_msg(&mut fresh, &payload);
            assert_eq!(a, b, "bits {bits}: identical messages compress identically");
            // The receiver may reset after every message and still inflate everything.
            let mut strict = StrictInflater::new(bits);
            for wire in [&a, &b] {
                let mut full = wire.clone();
                full.extend_from_slice(&SYNC_TAIL);
                assert_eq!(strict.inflate(&full).unwrap(), payload);
                strict.reset();
            }
            let mut takeover = PerMessageDeflate::new(Role::Client, params(bits, false), 6);
            let a = compress_msg(&mut takeover, &payload);
            let b = compress_msg(&mut takeover, &payload);
            if bits > 8 {
                assert!(
                    b.len() < a.len() / 4,
                    "bits {bits}: the second copy refers to the first"
                );
            }
        }
    }

    #[test]
    fn roles_pick_their_side_of_the_parameters() {
        // The server may use 8 bits and must reset; the client uses 15 bits with context.
        let p = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: false,
            server_max_window_bits: 8,
            client_max_window_bits: 15,
        };
        let mut server = PerMessageDeflate::new(Role::Server, p, 6);
        let mut client = PerMessageDeflate::new(Role::Client, p, 6);
        assert!(matches!(server.compressor, Compressor::RunLength(_)));
        assert!(server.compress_reset && !server.inflate_reset);
        assert!(matches!(client.compressor, Compressor::Zlib(_)));
        assert!(!client.compress_reset && client.inflate_reset);
        let payload = text(3000, 1);
        for _ in 0..3 {
            let wire = compress_msg(&mut server, &payload);
            assert_eq!(inflate_msg(&mut client, &wire).unwrap(), payload);
            let wire = compress_msg(&mut client, &payload);
            assert_eq!(inflate_msg(&mut server, &wire).unwrap(), payload);
        }
    }

    #[test]
    fn appends_to_existing_output() {
        let mut sender = PerMessageDeflate::new(Role::Client, params(15, false), 1);
        let mut pmd = receiver(params(15, false));
        let mut wire = b"head".to_vec();
        sender.compress(b"payload payload payload", &mut wire);
        assert_eq!(&wire[..4], b"head");
        let mut out = b"prefix:".to_vec();
        pmd.decompress(&wire[4..], &mut out, 100).unwrap();
        pmd.finish_message(&mut out, 100).unwrap();
        assert_eq!(out, b"prefix:payload payload payload");
        // The limit bounds the whole of `out`, prefix included.
        let wire = compress_msg(&mut sender, b"0123456789");
        let mut out = b"prefix:".to_vec();
        assert_eq!(
            inflate_into(&mut pmd, &wire, &mut out, 16),
            Err(DeflateError::TooLarge { limit: 16 })
        );
    }

    fn inflate_into(
        pmd: &mut PerMessageDeflate,
        wire: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), DeflateError> {
        pmd.decompress(wire, out, limit)?;
        pmd.finish_message(out, limit)
    }

    #[test]
    fn large_payload_and_level_clamp() {
        let payload = text(1 << 20, 42);
        let mut sender = PerMessageDeflate::new(Role::Server, params(15, false), 100);
        let wire = compress_msg(&mut sender, &payload);
        let mut pmd = PerMessageDeflate::new(Role::Client, params(15, false), 1);
        assert_eq!(
            inflate_chunked(&mut pmd, &wire, 100_000, payload.len()).unwrap(),
            payload
        );
        assert_eq!(
            inflate_chunked(
                &mut pmd,
                &compress_msg(&mut sender, &payload),
                1 << 20,
                payload.len() - 1
            ),
            Err(DeflateError::TooLarge {
                limit: payload.len() - 1
            })
        );
    }

    #[test]
    fn deflate_bomb_fails_fast_with_bounded_memory() {
        let zeros = vec![0u8; 16 << 20];
        let mut sender = PerMessageDeflate::new(Role::Client, params(15, true), 9);
        let bomb = compress_msg(&mut sender, &zeros);
        assert!(bomb.len() < 32 << 10, "bomb is {} bytes", bomb.len());
        let limit = 1 << 20;
        for chunk in [bomb.len(), 1024] {
            let mut pmd = receiver(params(15, true));
            let mut out = Vec::new();
            let err = bomb
                .chunks(chunk)
                .try_for_each(|part| pmd.decompress(part, &mut out, limit))
                .and_then(|()| pmd.finish_message(&mut out, limit));
            assert_eq!(err, Err(DeflateError::TooLarge { limit }));
            assert!(
                out.capacity() <= limit + (64 << 10),
                "capacity {}",
                out.capacity()
            );
            // The inflater was reset and works for the next message.
            let ok = compress_msg(&mut sender, b"after the bomb");
            assert_eq!(inflate_msg(&mut pmd, &ok).unwrap(), b"after the bomb");
        }
    }

    #[test]
    fn limit_is_exact() {
        let payload = text(10_000, 3);
        for limit in [0, 1, 9_999, 10_000, 10_001] {
            let mut sender = PerMessageDeflate::new(Role::Client, params(15, true), 6);
            let wire = compress_msg(&mut sender, &payload);
            let mut pmd = receiver(params(15, true));
            let result = inflate_chunked(&mut pmd, &wire, 333, limit);
            if limit >= payload.len() {
                assert_eq!(result.unwrap(), payload);
            } else {
                assert_eq!(result, Err(DeflateError::TooLarge { limit }));
            }
        }
        // A zero limit still accepts an empty message.
        let mut pmd = receiver(params(15, true));
        assert_eq!(inflate_chunked(&mut pmd, &[0x00], 1, 0).unwrap(), b"");
    }

    #[test]
    fn corrupt_input_is_an_error() {
        let cases: &[&[u8]] = &[
            // BTYPE 11 is reserved.
            &[0x07, 0x00],
            // Stored block whose NLEN is not the complement of LEN.
            &[0x00, 0x05, 0x00, 0x00, 0x00, 0x48],
            // Distance before the start of the data.
            &[0xf2, 0x00, 0x11, 0x00, 0x00],
            &[0xff; 64],
        ];
        for case in cases {
            let mut pmd = receiver(params(15, false));
            let err = inflate_chunked(&mut pmd, case, 3, 1 << 20).unwrap_err();
            assert!(
                matches!(err, DeflateError::Corrupt(_)),
                "{case:02x?}: {err:?}"
            );
            assert!(err.to_string().starts_with("invalid DEFLATE data: "));
            // The codec is usable again afterwards.
            let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
            assert_eq!(inflate_msg(&mut pmd, &hello).unwrap(), b"Hello");
        }
    }

    #[test]
    fn error_traits() {
        fn assert_traits<
            T: Clone
                + fmt::Debug
                + PartialEq
                + Eq
                + fmt::Display
                + std::error::Error
                + Send
                + Sync
                + 'static,
        >() {
        }
        assert_traits::<DeflateError>();
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PerMessageDeflate>();
        assert_eq!(
            DeflateError::TooLarge { limit: 5 }.to_string(),
            "inflated message is longer than the limit of 5 bytes"
        );
        let pmd = receiver(params(15, false));
        assert!(format!("{pmd:?}").starts_with("PerMessageDeflate"));
    }

    fn payload_strategy() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            // Small alphabet: compressible, with long matches.
            proptest::collection::vec(
                prop_oneof![Just(b'a'), Just(b'b'), Just(b' '), any::<u8>()],
                0..3000
            ),
            // Arbitrary bytes.
            proptest::collection::vec(any::<u8>(), 0..600),
            (0usize..20_000, any::<u64>()).prop_map(|(len, seed)| text(len, seed)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn round_trip(
            msgs in proptest::collection::vec(payload_strategy(), 1..5),
            server_sends in any::<bool>(),
            server_bits in 8u8..=15,
            client_bits in 8u8..=15,
            server_nct in any::<bool>(),
            client_nct in any::<bool>(),
            level in 0u32..=9,
            chunks in proptest::collection::vec(1usize..2000, 1..8),
        ) {
            let p = DeflateParams {
                server_no_context_takeover: server_nct,
                client_no_context_takeover: client_nct,
                server_max_window_bits: server_bits,
                client_max_window_bits: client_bits,
            };
            let role = if server_sends { Role::Server } else { Role::Client };
            let mut sender = PerMessageDeflate::new(role, p, level);
            let mut receiver = PerMessageDeflate::new(role.peer(), p, level);
            let bits = if server_sends { server_bits } else { client_bits };
            let mut strict = StrictInflater::new(bits);
            for (i, m) in msgs.iter().enumerate() {
                let wire = compress_msg(&mut sender, m);
                // Split the payload at the chunk sizes, cycling.
                let mut out = Vec::new();
                let mut rest = &wire[..];
                let mut k = i;
                while !rest.is_empty() {
                    let n = chunks[k % chunks.len()].min(rest.len());
                    receiver.decompress(&rest[..n], &mut out, m.len()).unwrap();
                    rest = &rest[n..];
                    k += 1;
                }
                receiver.finish_message(&mut out, m.len()).unwrap();
                prop_assert_eq!(&out, m);
                let mut full = wire.clone();
                full.extend_from_slice(&SYNC_TAIL);
                prop_assert_eq!(&strict.inflate(&full).unwrap(), m);
                if (server_sends && server_nct) || (!server_sends && client_nct) {
                    strict.reset();
                }
            }
        }

        #[test]
        fn too_large_exactly_when_over_the_limit(
            payload in payload_strategy(),
            limit_frac in 0.0f64..2.0,
            chunk in 1usize..500,
        ) {
            let limit = (payload.len() as f64 * limit_frac) as usize;
            let mut sender = PerMessageDeflate::new(Role::Client, params(15, true), 6);
            let wire = compress_msg(&mut sender, &payload);
            let mut pmd = receiver(params(15, true));
            let result = inflate_chunked(&mut pmd, &wire, chunk, limit);
            if payload.len() <= limit {
                prop_assert_eq!(result.unwrap(), payload);
            } else {
                prop_assert_eq!(result, Err(DeflateError::TooLarge { limit }));
            }
        }

        #[test]
        fn garbage_never_panics(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..4),
            chunk in 1usize..64,
            limit in 0usize..5000,
        ) {
            let mut pmd = receiver(params(15, false));
            for m in &msgs {
                if let Ok(out) = inflate_chunked(&mut pmd, m, chunk, limit) {
                    prop_assert!(out.len() <= limit);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn mutated_streams_never_panic(
            len in 1usize..5000,
            seed in any::<u64>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
            chunk in 1usize..300,
        ) {
            // Valid DEFLATE with a few bytes changed and possibly truncated: gets much further into
            // the inflater than random bytes do.
            let payload = text(len, seed);
            let mut sender = PerMessageDeflate::new(Role::Client, params(15, false), 6);
            let mut wire = compress_msg(&mut sender, &payload);
            for (at, xor) in flips {
                let i = at.index(wire.len());
                wire[i] ^= xor;
            }
            wire.truncate(cut.index(wire.len()) + 1);
            let mut pmd = receiver(params(15, false));
            let limit = payload.len() + 10;
            for _ in 0..2 {
                if let Ok(out) = inflate_chunked(&mut pmd, &wire, chunk, limit) {
                    prop_assert!(out.len() <= limit);
                }
            }
        }
    }

    /// An independent raw DEFLATE decoder (RFC 1951) that enforces a window: any back-reference
    /// farther than `2^window_bits` bytes, or before the start of the context, is an error.
    /// Keeps its context across messages until `reset`.
    struct StrictInflater {
        window: usize,
        history: Vec<u8>,
    }

    struct Bits<'a> {
        data: &'a [u8],
        pos: usize,
        bit: u32,
    }

    impl Bits<'_> {
        fn bits(&mut self, n: u32) -> Result<u32, String> {
            let mut v = 0;
            for i in 0..n {
                let byte = *self.data.get(self.pos).ok_or("truncated")?;
                v |= u32::from((byte >> self.bit) & 1) << i;
                self.bit += 1;
                if self.bit == 8 {
                    self.bit = 0;
                    self.pos += 1;
                }
            }
            Ok(v)
        }

        fn align(&mut self) {
            if self.bit != 0 {
                self.bit = 0;
                self.pos += 1;
            }
        }
    }

    struct Huffman {
        count: [u16; 16],
        symbol: Vec<u16>,
    }

    impl Huffman {
        fn new(lengths: &[u8]) -> Huffman {
            let mut count = [0u16; 16];
            for &l in lengths {
                count[usize::from(l)] += 1;
            }
            count[0] = 0;
            let mut offs = [0u16; 16];
            for len in 1..15 {
                offs[len + 1] = offs[len] + count[len];
            }
            let mut symbol = vec![0; lengths.len()];
            for (sym, &l) in lengths.iter().enumerate() {
                if l != 0 {
                    symbol[usize::from(offs[usize::from(l)])] = sym as u16;
                    offs[usize::from(l)] += 1;
                }
            }
            Huffman { count, symbol }
        }

        fn decode(&self, b: &mut Bits<'_>) -> Result<u16, String> {
            let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
            for len in 1..16 {
                code |= b.bits(1)? as i32;
                let count = i32::from(self.count[len]);
                if code - count < first {
                    return Ok(self.symbol[(index + code - first) as usize]);
                }
                index += count;
                first = (first + count) << 1;
                code <<= 1;
            }
            Err("bad Huffman code".into())
        }
    }

    const LEN_BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];

    impl StrictInflater {
        fn new(window_bits: u8) -> Self {
            StrictInflater {
                window: 1 << window_bits,
                history: Vec::new(),
            }
        }

        fn reset(&mut self) {
            self.history.clear();
        }

        /// Inflates one message (payload with the tail appended), which must end at a byte
        /// boundary after a whole block.
        fn inflate(&mut self, data: &[u8]) -> Result<Vec<u8>, String> {
            let mut b = Bits {
                data,
                pos: 0,
                bit: 0,
            };
            let start = self.history.len();
            while b.pos < data.len() {
                let _bfinal = b.bits(1)?;
                match b.bits(2)? {
                    0 => {
                        b.align();
                        let len = b.bits(16)?;
                        let nlen = b.bits(16)?;
                        if len != !nlen & 0xffff {
                            return Err("stored block length check".into());
                        }
                        for _ in 0..len {
                            let byte = b.bits(8)? as u8;
                            self.history.push(byte);
                        }
                    }
                    1 => {
                        let mut lengths = [0u8; 288];
                        lengths[..144].fill(8);
                        lengths[144..256].fill(9);
                        lengths[256..280].fill(7);
                        lengths[280..].fill(8);
                        let lit = Huffman::new(&lengths);
                        let dist = Huffman::new(&[5; 30]);
                        self.codes(&mut b, &lit, &dist)?;
                    }
                    2 => {
                        let hlit = b.bits(5)? as usize + 257;
                        let hdist = b.bits(5)? as usize + 1;
                        let hclen = b.bits(4)? as usize + 4;
                        const ORDER: [usize; 19] = [
                            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                        ];
                        let mut cl = [0u8; 19];
                        for &i in &ORDER[..hclen] {
                            cl[i] = b.bits(3)? as u8;
                        }
                        let clh = Huffman::new(&cl);
                        let mut lengths = Vec::with_capacity(hlit + hdist);
                        while lengths.len() < hlit + hdist {
                            let sym = clh.decode(&mut b)?;
                            let (value, repeat) = match sym {
                                0..=15 => (sym as u8, 1),
                                16 => (*lengths.last().ok_or("repeat of nothing")?, 3 + b.bits(2)?),
                                17 => (0, 3 + b.bits(3)?),
                                _ => (0, 11 + b.bits(7)?),
                            };
                            lengths.extend(std::iter::repeat_n(value, repeat as usize));
                        }
                        if lengths.len() != hlit + hdist {
                            return Err("too many code lengths".into());
                        }
                        let lit = Huffman::new(&lengths[..hlit]);
                        let dist = Huffman::new(&lengths[hlit..]);
                        self.codes(&mut b, &lit, &dist)?;
                    }
                    _ => return Err("reserved block type".into()),
                }
            }
            let out = self.history[start..].to_vec();
            if self.history.len() > 1 << 16 {
                let excess = self.history.len() - (1 << 15);
                self.history.drain(..excess);
            }
            Ok(out)
        }

        fn codes(&mut self, b: &mut Bits<'_>, lit: &Huffman, dist: &Huffman) -> Result<(), String> {
            loop {
                let sym = usize::from(lit.decode(b)?);
                match sym {
                    0..=255 => self.history.push(sym as u8),
                    256 => return Ok(()),
                    257..=285 => {
                        let i = sym - 257;
                        let len =
                            usize::from(LEN_BASE[i]) + b.bits(u32::from(LEN_EXTRA[i]))? as usize;
                        let d = usize::from(dist.decode(b)?);
                        if d >= 30 {
                            return Err("bad distance symbol".into());
                        }
                        let distance =
                            usize::from(DIST_BASE[d]) + b.bits(u32::from(DIST_EXTRA[d]))? as usize;
                        if distance > self.window {
                            return Err(format!(
                                "distance {distance} exceeds the {}-byte window",
                                self.window
                            ));
                        }
                        if distance > self.history.len() {
                            return Err("distance before the start of the context".into());
                        }
                        for _ in 0..len {
                            let byte = self.history[self.history.len() - distance];
                            self.history.push(byte);
                        }
                    }
                    _ => return Err("bad literal/length symbol".into()),
                }
            }
        }
    }
}
