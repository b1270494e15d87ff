//! Incremental UTF-8 validation (RFC 6455 §8.1) that fails at the first impossible byte.

/// Validates a byte stream that arrives in pieces: a text message split over fragments, or a
/// frame's payload that arrives over several reads.
///
/// RFC 6455 §8.1: an endpoint that finds a text message is not valid UTF-8 "MUST _Fail the
/// WebSocket Connection_". [`Utf8Validator::feed`] reports an error as soon as the bytes seen
/// so far cannot begin any valid UTF-8 string, not only at the end of the message: a code
/// point split across two pieces is held (at most 3 bytes) and checked byte by byte.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: u8,
}

/// The bytes can no longer be valid UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator at the start of a string.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next piece. After an error the validator must not be used again.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let need = sequence_len(self.pending[0]);
            let take = (need - have).min(data.len());
            self.pending[have..have + take].copy_from_slice(&data[..take]);
            let candidate = &self.pending[..have + take];
            match std::str::from_utf8(candidate) {
                Ok(_) => self.pending_len = 0,
                // Still a valid prefix, and the piece ran out: keep waiting.
                Err(e) if e.error_len().is_none() && take == data.len() => {
                    self.pending_len = (have + take) as u8;
                    return Ok(());
                }
                Err(_) => return Err(InvalidUtf8),
            }
            data = &data[take..];
        }
        // Hold back a code point cut off at the end of the piece, validate the rest in one
        // SIMD pass, then check that the held-back bytes can still begin a valid sequence.
        let cut = incomplete_tail_start(data);
        let (whole, tail) = data.split_at(cut);
        if simdutf8::basic::from_utf8(whole).is_err() {
            return Err(InvalidUtf8);
        }
        if !tail.is_empty() {
            match std::str::from_utf8(tail) {
                Err(e) if e.error_len().is_none() && e.valid_up_to() == 0 => {}
                _ => return Err(InvalidUtf8),
            }
            self.pending[..tail.len()].copy_from_slice(tail);
            self.pending_len = tail.len() as u8;
        }
        Ok(())
    }

    /// Checks that the string ended on a code point boundary.
    pub fn finish(&self) -> Result<(), InvalidUtf8> {
        if self.pending_len == 0 {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Forgets any partial code point, for the next string.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

/// Where a code point that the end of `data` cuts off begins (`data.len()` if none does): the
/// last lead byte within 3 bytes of the end, when its sequence needs more bytes than follow it.
fn incomplete_tail_start(data: &[u8]) -> usize {
    for back in 1..=data.len().min(3) {
        let at = data.len() - back;
        match data[at] {
            // A continuation byte: the lead byte is further back.
            0x80..=0xbf => continue,
            lead => {
                return if sequence_len(lead) > back {
                    at
                } else {
                    data.len()
                };
            }
        }
    }
    data.len()
}

/// Length of the sequence that `first` starts; 1 for bytes that cannot start one (the check
/// then fails on that byte).
fn sequence_len(first: u8) -> usize {
    match first {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_all(pieces: &[&[u8]]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        for p in pieces {
            v.feed(p)?;
        }
        v.finish()
    }

    #[test]
    fn rfc6455_8_1_valid_text_across_pieces() {
        let s = "κόσμε 𝄞 €".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(feed_all(&[&s[..i], &s[i..j], &s[j..]]), Ok(()), "{i} {j}");
            }
        }
    }

    // Autobahn 6.4.x: the validator must fail at the first impossible byte, mid-message.
    #[test]
    fn rfc6455_8_1_fails_fast_inside_a_code_point() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed("κόσμε".as_bytes()), Ok(()));
        assert_eq!(v.feed(&[0xf4]), Ok(()));
        // U+110000 and above can never be valid: 0xf4 must be followed by 0x80-0x8f.
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8));
    }

    #[test]
    fn rejects_overlongs_surrogates_and_stray_bytes() {
        for bad in [
            &[0xc0, 0x80][..],
            &[0xe0, 0x80, 0x80],
            &[0xed, 0xa0, 0x80],
            &[0xf8, 0x88, 0x80, 0x80, 0x80],
            &[0x80],
            &[0xff],
        ] {
            let mut v = Utf8Validator::new();
            let one_by_one = bad
                .iter()
                .try_for_each(|b| v.feed(&[*b]))
                .and_then(|_| v.finish());
            assert_eq!(one_by_one, Err(InvalidUtf8), "{bad:x?}");
            assert_eq!(feed_all(&[bad]), Err(InvalidUtf8), "{bad:x?}");
        }
    }

    #[test]
    fn truncated_sequence_fails_only_at_finish() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(&[0xe2, 0x82]), Ok(()));
        assert_eq!(v.finish(), Err(InvalidUtf8));
    }

    proptest! {
        #[test]
        fn agrees_with_std_for_any_split(data in proptest::collection::vec(any::<u8>(), 0..64), cut in 0usize..64, cut2 in 0usize..64) {
            let a = cut.min(data.len());
            let b = cut2.min(data.len()).max(a);
            let ours = feed_all(&[&data[..a], &data[a..b], &data[b..]]).is_ok();
            prop_assert_eq!(ours, std::str::from_utf8(&data).is_ok());
        }

        #[test]
        fn valid_strings_pass_byte_by_byte(s in "\\PC*") {
            let mut v = Utf8Validator::new();
            for b in s.as_bytes() {
                prop_assert!(v.feed(&[*b]).is_ok());
            }
            prop_assert!(v.finish().is_ok());
        }
    }
}
