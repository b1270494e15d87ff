//! Payload masking (RFC 6455 §5.3).

/// XORs `buf` with the masking key, as if `buf` started at byte `offset` of the payload.
///
/// RFC 6455 §5.3: octet i of the transformed data is octet i of the original data XOR octet
/// `i MOD 4` of the masking key. Masking and unmasking are the same operation. `offset` lets a
/// payload that arrives in pieces be unmasked piece by piece.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    // 16 bytes at a time (unaligned loads are cheap on current CPUs, and a 16-byte message
    // takes one step), then the rest byte by byte: 16 is a multiple of 4, so the rest starts
    // at key phase 0.
    let word = u128::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3], key[0], key[1], key[2],
        key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = buf.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let v = u128::from_ne_bytes((&*chunk).try_into().expect("chunk of 16"));
        chunk.copy_from_slice(&(v ^ word).to_ne_bytes());
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

    #[test]
    fn matches_reference_for_every_length_alignment_and_offset() {
        let key = [0xa1, 0x02, 0xf3, 0x44];
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for len in 0..(data.len() - start) {
                for offset in 0..4 {
                    let mut fast = data.clone();
                    let mut slow = data.clone();
                    apply_mask(&mut fast[start..start + len], key, offset);
                    apply_mask_reference(&mut slow[start..start + len], key, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
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
