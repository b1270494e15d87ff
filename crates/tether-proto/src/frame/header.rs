//! Frame header parsing and encoding (RFC 6455 §5.2).

use crate::error::ProtocolError;
use crate::frame::OpCode;

/// The longest header: 2 bytes, an 8-byte extended length, a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The fixed part of a frame, before its payload.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-------+-+-------------+-------------------------------+
/// |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
/// |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
/// |N|V|V|V|       |S|             |   (if payload len==126/127)   |
/// | |1|2|3|       |K|             |                               |
/// +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
/// |     Extended payload length continued, if payload len == 127  |
/// + - - - - - - - - - - - - - - - +-------------------------------+
/// |                               |Masking-key, if MASK set to 1  |
/// +-------------------------------+-------------------------------+
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The final fragment of a message.
    pub fin: bool,
    /// RSV1: set on the first frame of a compressed message (RFC 7692 §6).
    pub rsv1: bool,
    /// RSV2: no extension of ours uses it.
    pub rsv2: bool,
    /// RSV3: no extension of ours uses it.
    pub rsv3: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a header, `Ok(Some((header, len)))`
    /// with the header's length in bytes otherwise. Rules that need no connection state are
    /// checked here: reserved opcodes, the 64-bit length's top bit, and the control frame
    /// rules of RFC 6455 §5.5.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        // RFC 6455 §5.2: "If an unknown opcode is received, the receiving endpoint MUST _Fail
        // the WebSocket Connection_."
        let opcode = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        // RFC 6455 §5.5: control frames carry at most 125 bytes and are never fragmented;
        // both are known from the first two bytes.
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlFrameTooLong(u64::from(len7)));
            }
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                let Some(bytes) = buf.get(2..4) else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
            }
            127 => {
                let Some(bytes) = buf.get(2..10) else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes(bytes.try_into().expect("8 bytes"));
                // RFC 6455 §5.2: "the most significant bit MUST be 0".
                if len >> 63 != 0 {
                    return Err(ProtocolError::PayloadLengthTooLong);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            let Some(key) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([key[0], key[1], key[2], key[3]])
        } else {
            None
        };
        let header = FrameHeader {
            fin,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((header, pos)))
    }

    /// The encoded length of this header.
    pub fn encoded_len(&self) -> usize {
        let len_bytes = match self.payload_len {
            0..=125 => 0,
            126..=0xffff => 2,
            _ => 8,
        };
        2 + len_bytes + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header into `out`, returning the number of bytes written.
    ///
    /// RFC 6455 §5.2: "the minimal number of bytes MUST be used to encode the length".
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        out[0] = u8::from(self.fin) << 7
            | u8::from(self.rsv1) << 6
            | u8::from(self.rsv2) << 5
            | u8::from(self.rsv3) << 4
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = match self.payload_len {
            len @ 0..=125 => {
                out[1] = mask_bit | len as u8;
                2
            }
            len @ 126..=0xffff => {
                out[1] = mask_bit | 126;
                out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                4
            }
            len => {
                out[1] = mask_bit | 127;
                out[2..10].copy_from_slice(&len.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            out[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(opcode: OpCode, fin: bool, mask: Option<[u8; 4]>, len: u64) -> FrameHeader {
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len: len,
        }
    }

    fn encode(h: &FrameHeader) -> Vec<u8> {
        let mut buf = [0; MAX_HEADER_LEN];
        let n = h.encode(&mut buf);
        buf[..n].to_vec()
    }

    // RFC 6455 §5.7 examples.
    #[test]
    fn rfc6455_5_7_single_frame_unmasked_text() {
        let bytes = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let (h, n) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(h, header(OpCode::Text, true, None, 5));
        assert_eq!(n, 2);
        assert_eq!(&bytes[n..], b"Hello");
    }

    #[test]
    fn rfc6455_5_7_masked_text() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (h, n) = FrameHeader::parse(&bytes).unwrap().unwrap();
        assert_eq!(
            h,
            header(OpCode::Text, true, Some([0x37, 0xfa, 0x21, 0x3d]), 5)
        );
        assert_eq!(n, 6);
    }

    #[test]
    fn rfc6455_5_7_fragmented_text() {
        let first = [0x01, 0x03, 0x48, 0x65, 0x6c];
        let second = [0x80, 0x02, 0x6c, 0x6f];
        let (h1, _) = FrameHeader::parse(&first).unwrap().unwrap();
        let (h2, _) = FrameHeader::parse(&second).unwrap().unwrap();
        assert_eq!(
            (h1.opcode, h1.fin, h1.payload_len),
            (OpCode::Text, false, 3)
        );
        assert_eq!(
            (h2.opcode, h2.fin, h2.payload_len),
            (OpCode::Continuation, true, 2)
        );
    }

    #[test]
    fn rfc6455_5_7_ping_and_pong() {
        let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let pong = [
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            FrameHeader::parse(&ping).unwrap().unwrap().0.opcode,
            OpCode::Ping
        );
        assert_eq!(
            FrameHeader::parse(&pong).unwrap().unwrap().0.opcode,
            OpCode::Pong
        );
    }

    #[test]
    fn rfc6455_5_7_binary_256_and_64k() {
        let h256 = header(OpCode::Binary, true, None, 256);
        assert_eq!(encode(&h256), [0x82, 0x7e, 0x01, 0x00]);
        let h64k = header(OpCode::Binary, true, None, 65536);
        assert_eq!(encode(&h64k), [0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    }

    #[test]
    fn rfc6455_5_2_length_encoding_is_minimal() {
        for (len, header_len) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let h = header(OpCode::Binary, true, None, len);
            assert_eq!(encode(&h).len(), header_len, "{len}");
            assert_eq!(h.encoded_len(), header_len);
        }
    }

    #[test]
    fn rfc6455_5_2_reserved_opcodes_fail() {
        for op in [3u8, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf] {
            assert_eq!(
                FrameHeader::parse(&[0x80 | op, 0]),
                Err(ProtocolError::ReservedOpcode(op))
            );
        }
    }

    #[test]
    fn rfc6455_5_2_length_top_bit_fails() {
        let bytes = [0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            FrameHeader::parse(&bytes),
            Err(ProtocolError::PayloadLengthTooLong)
        );
    }

    #[test]
    fn rfc6455_5_5_control_frames_are_short_and_whole() {
        assert_eq!(
            FrameHeader::parse(&[0x09, 0x00]),
            Err(ProtocolError::FragmentedControlFrame)
        );
        assert_eq!(
            FrameHeader::parse(&[0x89, 0x7e, 0x00, 0x7e]),
            Err(ProtocolError::ControlFrameTooLong(126))
        );
    }

    #[test]
    fn partial_headers_ask_for_more() {
        let h = header(OpCode::Binary, true, Some([1, 2, 3, 4]), 70000);
        let bytes = encode(&h);
        for cut in 0..bytes.len() {
            assert_eq!(FrameHeader::parse(&bytes[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(FrameHeader::parse(&bytes), Ok(Some((h, bytes.len()))));
    }

    fn any_header() -> impl Strategy<Value = FrameHeader> {
        let opcode = prop_oneof![
            Just(OpCode::Continuation),
            Just(OpCode::Text),
            Just(OpCode::Binary),
            Just(OpCode::Close),
            Just(OpCode::Ping),
            Just(OpCode::Pong)
        ];
        (
            any::<bool>(),
            any::<[bool; 3]>(),
            opcode,
            any::<Option<[u8; 4]>>(),
            0u64..(1 << 63),
        )
            .prop_map(|(fin, rsv, opcode, mask, len)| {
                let (fin, len) = if opcode.is_control() {
                    (true, len % 126)
                } else {
                    (fin, len)
                };
                FrameHeader {
                    fin,
                    rsv1: rsv[0],
                    rsv2: rsv[1],
                    rsv3: rsv[2],
                    opcode,
                    mask,
                    payload_len: len,
                }
            })
    }

    proptest! {
        #[test]
        fn parse_inverts_encode(h in any_header()) {
            let bytes = encode(&h);
            prop_assert_eq!(FrameHeader::parse(&bytes), Ok(Some((h, bytes.len()))));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = FrameHeader::parse(&bytes);
        }
    }
}
