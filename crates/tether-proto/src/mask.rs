//! Payload masking (RFC 6455 §5.3).

/// XORs `buf` with the masking key, as if `buf` started at byte `offset` of the payload.
///
/// RFC 6455 §5.3: octet i of the transformed data is octet i of the original data XOR octet
/// `i MOD 4` of the masking key. Masking and unmasking are the same operation. `offset` lets a
/// payload that arrives in pieces be unmasked piece by piece.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    // Head: bytes until the slice is word aligned, so the word loop can use aligned loads.
    let (head, words, tail) = split_aligned(buf);
    for (i, b) in head.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
    key.rotate_left(head.len() % 4);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    for chunk in words.chunks_exact_mut(8) {
        let v = u64::from_ne_bytes(chunk.try_into().expect("chunk of 8"));
        chunk.copy_from_slice(&(v ^ word).to_ne_bytes());
    }
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// Splits `buf` into an unaligned head, a middle whose length is a multiple of 8 and which
/// starts 8-byte aligned, and a tail shorter than 8 bytes.
fn split_aligned(buf: &mut [u8]) -> (&mut [u8], &mut [u8], &mut [u8]) {
    let misalign = buf.as_ptr() as usize % 8;
    let head_len = if misalign == 0 {
        0
    } else {
        (8 - misalign).min(buf.len())
    };
    let (head, rest) = buf.split_at_mut(head_len);
    let words_len = rest.len() / 8 * 8;
    let (words, tail) = rest.split_at_mut(words_len);
    (head, words, tail)
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
