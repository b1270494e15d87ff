//! Payload masking (RFC 6455 §5.3).

/// Buffers at least this long are unmasked from a 64-byte boundary on (the bytes before it one
/// at a time); shorter ones as they lie.
const ALIGN_FROM: usize = 256;

/// XORs `buf` with the masking key, as if `buf` started at byte `offset` of the payload.
///
/// RFC 6455 §5.3: octet i of the transformed data is octet i of the original data XOR octet
/// `i MOD 4` of the masking key. Masking and unmasking are the same operation. `offset` lets a
/// payload that arrives in pieces be unmasked piece by piece.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    let mut buf = buf;
    if buf.len() >= ALIGN_FROM {
        // A payload behind a 2-, 4-, 10- or 14-byte header rarely starts aligned, and vector
        // loads and stores that straddle cache lines made a 64 KiB unmask ~1.5x slower: the
        // bytes up to a 64-byte boundary first, one at a time, then the key from that phase.
        let head = buf.as_ptr().align_offset(64).min(buf.len());
        let (unaligned, rest) = buf.split_at_mut(head);
        for (i, b) in unaligned.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        key.rotate_left(head % 4);
        buf = rest;
    }
    // The key repeated over 16 bytes, XORed in byte-wise loops of fixed length that the
    // compiler turns into 16-byte vector operations (SSE2 on any x86_64): 64 bytes a step
    // (four vectors with one loop test), then 16 at a time, then the rest byte by byte.
    // 64 and 16 are multiples of 4, so each part starts at key phase 0. Written this way
    // rather than as `u128` words, which compile to pairs of 64-bit scalar operations:
    // 1.6x the throughput at 64 KiB (benches/mask.rs). AVX2 and AVX-512 versions measured
    // no faster than this on an AVX-512 machine (memory-bound), so there is no unsafe
    // runtime dispatch.
    let k = [
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3], key[0], key[1], key[2],
        key[3], key[0], key[1], key[2], key[3],
    ];
    let mut wide = buf.chunks_exact_mut(64);
    for chunk in &mut wide {
        for part in 0..4 {
            for i in 0..16 {
                chunk[16 * part + i] ^= k[i];
            }
        }
    }
    let mut chunks = wide.into_remainder().chunks_exact_mut(16);
    for chunk in &mut chunks {
        for i in 0..16 {
            chunk[i] ^= k[i];
        }
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// The plain byte-at-a-time definition from RFC 6455 §5.3, the reference for tests.
#[cfg(test)]
fn apply_mask_reference(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(offset + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6455 §5.7: a masked "Hello" from client to server.
    #[test]
    fn rfc6455_5_7_masked_hello() {
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    /// `apply_mask` against the byte-at-a-time definition, for slices of `data` at each
    /// start and length given and every key phase.
    fn assert_matches_reference(
        data: &[u8],
        key: [u8; 4],
        starts: std::ops::Range<usize>,
        lens: impl Iterator<Item = usize> + Clone,
    ) {
        for start in starts {
            for len in lens.clone().filter(|len| start + len <= data.len()) {
                for offset in 0..4 {
                    let mut fast = data.to_vec();
                    let mut slow = data.to_vec();
                    apply_mask(&mut fast[start..start + len], key, offset);
                    apply_mask_reference(&mut slow[start..start + len], key, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    #[test]
    fn matches_reference_for_every_length_alignment_and_offset() {
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        assert_matches_reference(&data, [0xa1, 0x02, 0xf3, 0x44], 0..8, 0..200);
    }

    #[test]
    fn matches_reference_across_the_alignment_threshold() {
        let data: Vec<u8> = (0..1200u32).map(|i| (i * 13 + 5) as u8).collect();
        let lens = (ALIGN_FROM - 70..ALIGN_FROM + 70).chain([1000, 1100]);
        assert_matches_reference(&data, [0x5c, 0x9e, 0x01, 0xd7], 0..70, lens);
    }

    #[test]
    fn piecewise_equals_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..=255).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..data.len() {
            let mut parts = data.clone();
            let (a, b) = parts.split_at_mut(split);
            apply_mask(a, key, 0);
            apply_mask(b, key, split);
            assert_eq!(parts, whole, "split at {split}");
        }
    }
}
