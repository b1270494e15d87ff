//! permessage-deflate (RFC 7692) codec on arbitrary bytes.
//!
//! Input layout: `[flags, windows, chunk_shift, chunk_seed, data...]`. `flags` bit 0 picks
//! the decompressing side (0: server, inflating a client's messages; 1: client), bits 1-2 the
//! no_context_takeover parameters, `windows` the window bits and compression level (see
//! `tether_proto_fuzz::deflate_params`).
//!
//! Invariants:
//! - inflating `data` as one message, fed in chunks, never yields more than the 1 MiB limit
//!   (one byte more when it fails with `TooLarge`, as the codec documents), fails with an
//!   error rather than a panic, and gives the same result as inflating it in one piece;
//! - round trip: `data` cut into messages, each compressed by the other side and inflated
//!   (in chunks) gives back the message, message after message (context takeover).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::Role;
use tether_proto::deflate::{DeflateError, PerMessageDeflate};
use tether_proto_fuzz::{Chunks, compression_level, deflate_params};

const LIMIT: usize = 1 << 20;

/// Checks the output bound after one codec call.
///
/// A successful call leaves at most `LIMIT` bytes. `PerMessageDeflate` documents that it
/// learns a message is too long by writing one byte past the limit, so a `TooLarge` error may
/// leave `LIMIT + 1`; the buffer's capacity never goes past that either.
fn check_bound(out: &[u8], capacity: usize, result: &Result<(), DeflateError>) {
    let bound = match result {
        Ok(()) => LIMIT,
        Err(_) => LIMIT + 1,
    };
    assert!(
        out.len() <= bound,
        "inflated {} bytes, limit {LIMIT}, {result:?}",
        out.len()
    );
    assert!(capacity <= LIMIT + 1, "buffer grew to {capacity} bytes");
}

/// Inflates one message given as `pieces`; `None` when the codec reported an error.
fn inflate<'a>(
    codec: &mut PerMessageDeflate,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for piece in pieces {
        let result = codec.decompress(piece, &mut out, LIMIT);
        check_bound(&out, out.capacity(), &result);
        result.ok()?;
    }
    let result = codec.finish_message(&mut out, LIMIT);
    check_bound(&out, out.capacity(), &result);
    result.ok()?;
    Some(out)
}

fuzz_target!(|input: &[u8]| {
    let [flags, windows, shift, seed, data @ ..] = input else {
        return;
    };
    let params = deflate_params(flags >> 1, *windows);
    let level = compression_level(*windows);
    let (inflater, deflater) = if flags & 1 == 0 {
        (Role::Server, Role::Client)
    } else {
        (Role::Client, Role::Server)
    };

    // Arbitrary bytes as a compressed message: in chunks, and in one piece.
    let mut chunked = PerMessageDeflate::new(inflater, params, level);
    let in_chunks = inflate(&mut chunked, Chunks::new(data, *shift, *seed));
    let mut whole = PerMessageDeflate::new(inflater, params, level);
    let in_one = inflate(&mut whole, std::iter::once(data));
    match (&in_chunks, &in_one) {
        (Some(a), Some(b)) => assert!(a == b, "output depends on how the input was split"),
        (None, None) => {}
        _ => panic!(
            "chunked inflate {} but whole inflate {}",
            if in_chunks.is_some() {
                "succeeded"
            } else {
                "failed"
            },
            if in_one.is_some() {
                "succeeded"
            } else {
                "failed"
            },
        ),
    }

    // Round trip: `data` as up to 8 messages through one compressor and one decompressor.
    let mut compressor = PerMessageDeflate::new(deflater, params, level);
    let mut decompressor = PerMessageDeflate::new(inflater, params, level);
    let messages = Chunks::new(data, shift.wrapping_add(7), seed.wrapping_add(1));
    for (i, msg) in messages.take(8).enumerate() {
        let mut compressed = Vec::new();
        compressor.compress(msg, &mut compressed);
        let out = inflate(
            &mut decompressor,
            Chunks::new(&compressed, *shift, seed.wrapping_add(2)),
        )
        .unwrap_or_else(|| panic!("message {i} ({} bytes) did not inflate", msg.len()));
        assert!(
            out == msg,
            "message {i} ({} bytes) changed in a round trip",
            msg.len()
        );
    }
});
