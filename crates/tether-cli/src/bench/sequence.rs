//! The sequence number each echo message carries in its first bytes, so that a cheap check
//! of one word tells whether the echo that came back is the one due, a later one (messages
//! were lost), an earlier one (duplicated) or none (the bytes were changed).
//!
//! A number is written as 8 digits of 6 bits each, least significant first, every digit as
//! the byte `0x30 + digit` (`'0'` to `'o'`): ASCII, so text messages stay valid UTF-8. That
//! holds 48 bits; numbers are compared modulo 2^48 (a run would need 2^48 messages on one
//! connection to wrap). A payload shorter than 8 bytes carries the low digits that fit.

/// Bytes of the sequence number at the start of a payload of 8 bytes or more.
pub const SEQUENCE_LEN: usize = 8;

/// The numbers a full-length sequence field holds: 2^48.
pub const SEQUENCE_MODULUS: u64 = 1 << (6 * SEQUENCE_LEN);

/// The offset of every digit byte, added to all 8 bytes of the word at once.
const DIGIT_BASE: u64 = 0x3030_3030_3030_3030;

/// The 8 digit bytes of `number` (modulo 2^48), as a little-endian word: byte `i` of
/// `encode(n).to_le_bytes()` is the `i`-th digit.
pub fn encode(number: u64) -> u64 {
    // The 48 bits spread into 8 bytes of 6 in three halving steps: 24 bits per 32-bit
    // lane, 12 per 16-bit lane, 6 per byte.
    let x = number & (SEQUENCE_MODULUS - 1);
    let x = ((x & 0xffff_ff00_0000) << 8) | (x & 0xff_ffff);
    let x = ((x & 0x00ff_f000_00ff_f000) << 4) | (x & 0x0000_0fff_0000_0fff);
    let x = ((x & 0x0fc0_0fc0_0fc0_0fc0) << 2) | (x & 0x003f_003f_003f_003f);
    // No carry between bytes: each holds at most 0x3f + 0x30.
    x + DIGIT_BASE
}

/// The number written in `bytes` (up to 8 digit bytes), or `None` if one of them is not a
/// digit byte.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    let mut number = 0u64;
    for (digit, &byte) in bytes.iter().take(SEQUENCE_LEN).enumerate() {
        let value = byte.checked_sub(0x30).filter(|v| *v < 64)?;
        number |= u64::from(value) << (6 * digit);
    }
    Some(number)
}

/// The numbers a field of `len` bytes (at most 8) tells apart: `64^len`.
pub fn modulus(len: usize) -> u64 {
    if len >= SEQUENCE_LEN {
        SEQUENCE_MODULUS
    } else {
        1 << (6 * len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip_as_ascii_digits() {
        for n in [0, 1, 63, 64, 4095, 262_144, 1 << 40, SEQUENCE_MODULUS - 1] {
            let bytes = encode(n).to_le_bytes();
            assert!(
                bytes.iter().all(|b| (0x30..0x70).contains(b)),
                "{n}: {bytes:?}"
            );
            assert_eq!(decode(&bytes), Some(n), "{n}");
        }
        assert_eq!(&encode(0).to_le_bytes(), b"00000000");
        assert_eq!(
            &encode(65).to_le_bytes(),
            b"11000000",
            "least significant first"
        );
        assert_eq!(encode(SEQUENCE_MODULUS + 5), encode(5), "modulo 2^48");
    }

    #[test]
    fn the_spread_matches_digit_by_digit_encoding() {
        let by_digit = |n: u64| {
            let mut bytes = [0u8; SEQUENCE_LEN];
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = 0x30 + ((n >> (6 * i)) & 0x3f) as u8;
            }
            u64::from_le_bytes(bytes)
        };
        let mut n = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            assert_eq!(encode(n), by_digit(n), "{n:#x}");
        }
        for n in 0..5_000 {
            assert_eq!(encode(n), by_digit(n), "{n}");
        }
    }

    #[test]
    fn short_fields_hold_the_low_digits() {
        let bytes = encode(64 * 3 + 2).to_le_bytes();
        assert_eq!(decode(&bytes[..1]), Some(2));
        assert_eq!(decode(&bytes[..2]), Some(64 * 3 + 2));
        assert_eq!(decode(&[]), Some(0));
        assert_eq!(modulus(1), 64);
        assert_eq!(modulus(8), SEQUENCE_MODULUS);
        assert_eq!(modulus(20), SEQUENCE_MODULUS);
    }

    #[test]
    fn bytes_that_are_no_digits_do_not_decode() {
        assert_eq!(decode(b"0000000\x2f"), None);
        assert_eq!(decode(b"p0000000"), None);
        assert_eq!(decode(b"\xff"), None);
    }
}
