//! Frames built once and parsed in place: the load tool's wire format.
//!
//! Every frame the tool sends is masked with the fixed key [`MASK_KEY`]. RFC 6455 §5.3 asks
//! clients for an unpredictable key per frame to stop cache-poisoning attacks on proxies
//! between client and server; a load tool talking to its own server over loopback has no
//! such proxy, and a fixed key lets each connection hold its frames masked once, so that
//! sending costs no masking work. Servers cannot tell the difference: they unmask whatever
//! key is given.

use std::ops::Range;

use tether_proto::ProtocolError;
use tether_proto::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use tether_proto::mask::apply_mask;

use super::sequence::{self, SEQUENCE_LEN};

/// The masking key of every frame sent (see the module doc).
pub const MASK_KEY: [u8; 4] = [0x6b, 0x3e, 0x91, 0xd4];

/// Appends one final, masked frame carrying `payload` to `out`.
pub fn push_masked_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8]) {
    let header = FrameHeader {
        fin: true,
        rsv1: false,
        rsv2: false,
        rsv3: false,
        opcode,
        // RFC 6455 §5.3: "The masking key is a 32-bit value chosen at random by the client"
        // (fixed here, see the module doc); every client frame MUST be masked (§5.1).
        mask: Some(MASK_KEY),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let head_len = header.encode(&mut head);
    out.extend_from_slice(&head[..head_len]);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], MASK_KEY, 0);
}

/// `count` copies of the same masked frame, back to back: written in any prefix of whole
/// frames, it sends that many messages.
pub fn repeated_frames(opcode: OpCode, payload: &[u8], count: usize) -> Vec<u8> {
    let mut one = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
    push_masked_frame(&mut one, opcode, payload);
    one.repeat(count)
}

/// Writes sequence number `number` ([`sequence`](super::sequence)) into the first bytes of a
/// payload masked with [`MASK_KEY`] from its start, as [`push_masked_frame`] left it: the
/// frame then carries that number, masked, with no other byte touched.
pub fn write_masked_sequence(masked_payload: &mut [u8], number: u64) {
    let len = masked_payload.len().min(SEQUENCE_LEN);
    let mask = u64::from_le_bytes([
        MASK_KEY[0],
        MASK_KEY[1],
        MASK_KEY[2],
        MASK_KEY[3],
        MASK_KEY[0],
        MASK_KEY[1],
        MASK_KEY[2],
        MASK_KEY[3],
    ]);
    let digits = (sequence::encode(number) ^ mask).to_le_bytes();
    // The whole word in one store when it fits (every payload of 8 bytes or more).
    match masked_payload.get_mut(..SEQUENCE_LEN) {
        Some(word) => word.copy_from_slice(&digits),
        None => masked_payload[..len].copy_from_slice(&digits[..len]),
    }
}

/// A masked close frame with status 1000 (RFC 6455 §5.5.1, §7.4.1).
pub fn close_frame() -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    push_masked_frame(&mut out, OpCode::Close, &1000u16.to_be_bytes());
    out
}

/// A masked pong answering a ping's `payload` (RFC 6455 §5.5.3: "A Pong frame sent in
/// response to a Ping frame must have identical Application data"). `payload` is at most
/// 125 bytes (§5.5), so the frame fits the returned array.
pub fn pong_frame(payload: &[u8]) -> ([u8; 6 + 125], usize) {
    let mut frame = [0u8; 6 + 125];
    let len = payload.len().min(125);
    frame[0] = 0x80 | OpCode::Pong.as_u8();
    frame[1] = 0x80 | len as u8;
    frame[2..6].copy_from_slice(&MASK_KEY);
    frame[6..6 + len].copy_from_slice(&payload[..len]);
    apply_mask(&mut frame[6..6 + len], MASK_KEY, 0);
    (frame, 6 + len)
}

/// The first complete frame of `buf`: its header, where its payload lies in `buf`, and the
/// frame's whole length. `Ok(None)` until the whole frame is there.
pub fn complete_frame(buf: &[u8]) -> Result<Option<(FrameHeader, Range<usize>)>, ProtocolError> {
    let Some((header, head_len)) = FrameHeader::parse(buf)? else {
        return Ok(None);
    };
    let end = usize::try_from(header.payload_len)
        .ok()
        .and_then(|len| len.checked_add(head_len));
    match end {
        Some(end) if end <= buf.len() => Ok(Some((header, head_len..end))),
        _ => Ok(None),
    }
}

/// A read buffer reused for the whole run: bytes land in its spare room, frames are taken
/// from its front, and a partial frame at the end moves to the start when room runs out.
#[derive(Debug)]
pub struct ReadBuffer {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuffer {
    /// A buffer of `capacity` bytes, which must exceed the largest frame expected.
    pub fn new(capacity: usize) -> ReadBuffer {
        ReadBuffer {
            data: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// A buffer holding `bytes` already received (from after the handshake), with room.
    pub fn with_bytes(capacity: usize, bytes: &[u8]) -> ReadBuffer {
        let mut buffer = ReadBuffer::new(capacity.max(bytes.len() * 2));
        buffer.data[..bytes.len()].copy_from_slice(bytes);
        buffer.end = bytes.len();
        buffer
    }

    /// Empties the buffer and puts `bytes` in it (as many as fit).
    pub fn reset(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.data.len());
        self.data[..n].copy_from_slice(&bytes[..n]);
        self.start = 0;
        self.end = n;
    }

    /// The bytes received and not consumed yet.
    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    /// Marks `n` bytes at the front as consumed.
    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Room to read into; moves the unconsumed bytes to the front when the room is gone.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.end == self.data.len() && self.start > 0 {
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.data[self.end..]
    }

    /// Marks `n` bytes of the spare room as received.
    pub fn advance(&mut self, n: usize) {
        self.end += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_masked_with_the_fixed_key() {
        let mut out = Vec::new();
        push_masked_frame(&mut out, OpCode::Text, b"Hello");
        // RFC 6455 §5.7 layout: FIN + text, MASK + length 5, the key, the masked payload.
        assert_eq!(&out[..6], &[0x81, 0x85, 0x6b, 0x3e, 0x91, 0xd4]);
        let mut payload = out[6..].to_vec();
        apply_mask(&mut payload, MASK_KEY, 0);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn long_payloads_use_the_extended_lengths() {
        for (len, head) in [(125, 6), (126, 8), (65_535, 8), (65_536, 14)] {
            let frames = repeated_frames(OpCode::Binary, &vec![7u8; len], 3);
            assert_eq!(frames.len(), 3 * (len + head), "length {len}");
            let (header, range) = complete_frame(&frames).unwrap().unwrap();
            assert_eq!(header.payload_len, len as u64);
            assert_eq!(header.mask, Some(MASK_KEY));
            assert_eq!(range, head..head + len);
        }
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        // RFC 6455 §5.7: an unmasked "Hello" from server to client.
        let hello = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        for cut in 0..hello.len() {
            assert_eq!(complete_frame(&hello[..cut]).unwrap(), None, "cut {cut}");
        }
        let (header, range) = complete_frame(&hello).unwrap().unwrap();
        assert!(header.fin && header.mask.is_none());
        assert_eq!(&hello[range], b"Hello");
        assert!(complete_frame(&[0x83, 0x00]).is_err(), "reserved opcode");
    }

    #[test]
    fn sequence_numbers_are_written_masked() {
        let payload = b"abcdefghijkl";
        let mut frame = Vec::new();
        push_masked_frame(&mut frame, OpCode::Text, payload);
        write_masked_sequence(&mut frame[6..], 65);
        let mut unmasked = frame[6..].to_vec();
        apply_mask(&mut unmasked, MASK_KEY, 0);
        assert_eq!(
            &unmasked, b"11000000ijkl",
            "the number, then the payload as it was"
        );
        let mut short = Vec::new();
        push_masked_frame(&mut short, OpCode::Binary, b"ab");
        write_masked_sequence(&mut short[6..], 3);
        let mut unmasked = short[6..].to_vec();
        apply_mask(&mut unmasked, MASK_KEY, 0);
        assert_eq!(&unmasked, b"30");
    }

    #[test]
    fn pongs_echo_the_ping_payload_masked() {
        let (frame, len) = pong_frame(b"abc");
        let (header, range) = complete_frame(&frame[..len]).unwrap().unwrap();
        assert_eq!(header.opcode, OpCode::Pong);
        let mut payload = frame[range].to_vec();
        apply_mask(&mut payload, MASK_KEY, 0);
        assert_eq!(payload, b"abc");
        assert_eq!(&close_frame()[..2], &[0x88, 0x82]);
    }

    #[test]
    fn the_read_buffer_keeps_a_partial_frame_when_it_fills() {
        let mut buffer = ReadBuffer::with_bytes(8, b"abcdef");
        buffer.consume(4);
        assert_eq!(buffer.filled(), b"ef");
        buffer.spare()[..6].copy_from_slice(b"ghijkl");
        buffer.advance(6);
        assert_eq!(buffer.filled(), b"efghijkl");
        buffer.consume(8);
        assert_eq!(buffer.filled(), b"");
        assert_eq!(buffer.spare().len(), 12);
    }
}
