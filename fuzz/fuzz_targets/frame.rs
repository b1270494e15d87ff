//! `FrameHeader::parse` on arbitrary bytes.
//!
//! Invariants: a parsed header re-encodes to a header that parses back to itself; when the
//! input used the minimal length encoding (RFC 6455 §5.2) the re-encoding is exactly the
//! input's header bytes; every strict prefix of an encoding asks for more bytes; the result
//! depends only on the first `MAX_HEADER_LEN` bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::frame::{FrameHeader, MAX_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let result = FrameHeader::parse(data);
    // Bytes past the longest header never change the outcome.
    let head = &data[..data.len().min(MAX_HEADER_LEN)];
    assert_eq!(FrameHeader::parse(head), result);

    match result {
        Ok(Some((h, n))) => {
            assert!((2..=MAX_HEADER_LEN).contains(&n) && n <= data.len());
            if h.opcode.is_control() {
                assert!(
                    h.fin && h.payload_len <= 125,
                    "bad control frame accepted: {h:?}"
                );
            }
            assert_eq!(h.payload_len >> 63, 0);

            let mut buf = [0; MAX_HEADER_LEN];
            let m = h.encode(&mut buf);
            assert_eq!(m, h.encoded_len());
            assert_eq!(FrameHeader::parse(&buf[..m]), Ok(Some((h, m))));
            for cut in 0..m {
                assert_eq!(FrameHeader::parse(&buf[..cut]), Ok(None), "prefix of {cut}");
            }

            let minimal = match data[1] & 0x7f {
                126 => h.payload_len > 125,
                127 => h.payload_len > 0xffff,
                _ => true,
            };
            if minimal {
                assert_eq!(&buf[..m], &data[..n], "re-encoding differs from the input");
            } else {
                // A longer length field than needed: the re-encoding is shorter.
                assert!(m < n);
                assert_eq!(buf[0], data[0]);
            }
        }
        // Only a short input can be incomplete.
        Ok(None) => assert!(data.len() < MAX_HEADER_LEN),
        Err(_) => assert!(data.len() >= 2),
    }
});
