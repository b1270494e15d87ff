//! Checking echoes frame by frame, in place in the read buffer.
//!
//! Every message a connection sends carries its sequence number in its first bytes
//! ([`sequence`](super::sequence)); the rest of the payload is the connection's fixed
//! pattern. Each echo is checked for its opcode, its length and its sequence number: the
//! number tells an intact echo of the message due from one of a later message (the ones
//! between were lost), of an earlier one (a duplicate), or a changed one. With
//! [`Verify::Full`] every other byte is compared too.
//!
//! A whole echo with the exact expected header is taken on a fast path: one comparison of
//! the header bytes, one of the sequence word. Anything else (fragments, control frames,
//! wrong headers) goes through [`FrameHeader::parse`].

use std::ops::Range;

use clap::ValueEnum;
use tether_proto::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};

use super::sequence::{self, SEQUENCE_LEN};

/// How much of each echo is compared with what was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Verify {
    /// Opcode, length and the sequence number in the first 8 bytes: catches lost,
    /// duplicated, reordered, crossed and cut echoes; a change in the other bytes is not seen.
    #[default]
    Sequence,
    /// Every byte as well.
    Full,
}

/// With [`Verify::Sequence`], echoes of at least this many bytes are checked on their
/// header and sequence number, and the rest of their payload is discarded unread
/// ([`EchoCheck::take_prefix`]): what the tool does not compare, it does not copy either.
pub const DISCARD_MIN: usize = 4096;

/// What one frame from the server means for the run.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// The echo of the message due (this sequence number), intact.
    Echoed(u64),
    /// An intact echo of a later message (`echoed`): the `lost` messages due before it
    /// never came back.
    Lost {
        /// The sequence number of the echo that came.
        echoed: u64,
        /// How many messages before it are missing.
        lost: u64,
    },
    /// An echo of a message that was echoed already.
    Duplicate(u64),
    /// A whole echo arrived in place of the message due and differs from it (the
    /// connection goes on).
    Wrong(String),
    /// Part of a fragmented echo, checked so far.
    Fragment,
    /// A ping: answer with a pong carrying its payload.
    Ping,
    /// A pong or other frame to ignore.
    Ignored,
    /// The server closed the connection, with this status code if any.
    Closed(Option<u16>),
    /// The stream cannot be followed any more.
    Broken(String),
}

/// The checker of one connection's echoes.
#[derive(Debug)]
pub struct EchoCheck {
    /// The payload sent, except for the sequence number in its first bytes.
    pattern: Vec<u8>,
    opcode: OpCode,
    verify: Verify,
    /// Bytes of the sequence number: 8, or the whole payload if shorter.
    sequence_len: usize,
    /// The most messages in flight at once: how far back a duplicate is recognised.
    window: u64,
    /// The sequence number of the echo due next.
    next: u64,
    /// The header of a whole, intact echo, for the fast path.
    head: [u8; MAX_HEADER_LEN],
    head_len: usize,
    /// Bytes of the current (fragmented) echo checked so far; `None` between messages.
    in_message: Option<usize>,
    /// The sequence bytes of the current echo, as far as they came.
    sequence_bytes: [u8; SEQUENCE_LEN],
    /// What is wrong with the current echo besides its bytes (opcode, length).
    wrong_kind: Option<String>,
    /// The first byte past the sequence number that differs ([`Verify::Full`]).
    wrong_byte: Option<usize>,
}

impl EchoCheck {
    /// A checker expecting every echo to be `pattern` with its sequence number written
    /// in, sent as `opcode`, with at most `window` messages in flight.
    pub fn new(opcode: OpCode, pattern: Vec<u8>, verify: Verify, window: usize) -> EchoCheck {
        let header = FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
            payload_len: pattern.len() as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let head_len = header.encode(&mut head);
        EchoCheck {
            sequence_len: pattern.len().min(SEQUENCE_LEN),
            pattern,
            opcode,
            verify,
            window: window as u64,
            next: 0,
            head,
            head_len,
            in_message: None,
            sequence_bytes: [0; SEQUENCE_LEN],
            wrong_kind: None,
            wrong_byte: None,
        }
    }

    /// Payload bytes per message.
    pub fn size(&self) -> usize {
        self.pattern.len()
    }

    /// The sequence number of the echo due next.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// How many bytes of an echo to read before the rest of it may be discarded unread (its
    /// header and sequence number), when echoes are large enough for that and only their
    /// sequence is verified.
    pub fn prefix_len(&self) -> Option<usize> {
        (self.verify == Verify::Sequence && self.pattern.len() >= DISCARD_MIN)
            .then_some(self.head_len + self.sequence_len)
    }

    /// The echo due next, checked on its header and sequence number alone, when `buf` starts
    /// with them but does not hold the whole frame (call it when
    /// [`next_frame`](Self::next_frame) returned `Ok(None)`): its sequence number, and how
    /// many bytes of its payload are still to come after `buf`, to discard unread. The
    /// caller consumes all of `buf`. `None` when the frame is anything else (a control
    /// frame, a fragment, a wrong or out-of-order echo): it is then read whole, and
    /// `next_frame` says what it is.
    pub fn take_prefix(&mut self, buf: &[u8]) -> Option<(u64, usize)> {
        let prefix = self.prefix_len()?;
        let frame_end = self.head_len + self.pattern.len();
        if self.in_message.is_some()
            || buf.len() < prefix
            || buf.len() >= frame_end
            || !self.is_echo_head(buf)
        {
            return None;
        }
        let sequence = &buf[self.head_len..prefix];
        if sequence != sequence::encode(self.next).to_le_bytes() {
            return None;
        }
        self.next += 1;
        Some((self.next - 1, frame_end - buf.len()))
    }

    /// The first frame of `buf`, checked: what it means, and where its payload lies (the
    /// frame ends with it). `Ok(None)` until the whole frame is there. `sent` is the
    /// sequence number of the next message to be sent (those below it are in flight or
    /// echoed). An error means the stream cannot be followed.
    pub fn next_frame(
        &mut self,
        buf: &[u8],
        sent: u64,
    ) -> Result<Option<(Reply, Range<usize>)>, String> {
        let frame_end = self.head_len + self.pattern.len();
        if self.in_message.is_none() && buf.len() >= frame_end && self.is_echo_head(buf) {
            let payload = &buf[self.head_len..frame_end];
            let due = sequence::encode(self.next);
            let numbered = if self.sequence_len == SEQUENCE_LEN {
                u64::from_le_bytes(payload[..SEQUENCE_LEN].try_into().expect("8 bytes")) == due
            } else {
                payload[..self.sequence_len] == due.to_le_bytes()[..self.sequence_len]
            };
            let intact_rest = self.verify == Verify::Sequence
                || payload[self.sequence_len..] == self.pattern[self.sequence_len..];
            if numbered && intact_rest {
                self.next += 1;
                return Ok(Some((
                    Reply::Echoed(self.next - 1),
                    self.head_len..frame_end,
                )));
            }
        }
        let Some((header, head_len)) = FrameHeader::parse(buf).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        // Checked before the payload is in: the length is bounded by the echo's.
        self.check_header(&header)?;
        let end = head_len + header.payload_len as usize;
        if buf.len() < end {
            return Ok(None);
        }
        Ok(Some((
            self.frame(&header, &buf[head_len..end], sent),
            head_len..end,
        )))
    }

    /// Whether `buf` (at least a header long) starts with the header of a whole echo:
    /// compared as integers, for the three lengths a server's header can have (2, 4 or 10
    /// bytes, RFC 6455 §5.2), so that no comparison of variable length runs per message.
    fn is_echo_head(&self, buf: &[u8]) -> bool {
        let word = |bytes: &[u8], at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]);
        let long = |bytes: &[u8]| {
            u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes of extended length"))
        };
        word(buf, 0) == word(&self.head, 0)
            && match self.head_len {
                2 => true,
                4 => word(buf, 2) == word(&self.head, 2),
                _ => long(buf) == long(&self.head),
            }
    }

    /// Checks a header before its payload is there: a frame that cannot be part of an
    /// echo is refused at once, so the read buffer never has to hold more than one echo.
    fn check_header(&self, header: &FrameHeader) -> Result<(), String> {
        // RFC 6455 §5.1: "A server MUST NOT mask any frames that it sends to the client."
        if header.mask.is_some() {
            return Err("the server sent a masked frame (RFC 6455 §5.1)".into());
        }
        // RFC 6455 §5.2: RSV bits "MUST be 0 unless an extension is negotiated".
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err("the server set RSV bits with no extension negotiated".into());
        }
        if header.opcode.is_control() {
            return Ok(());
        }
        let so_far = self.in_message.unwrap_or(0);
        let room = (self.pattern.len() - so_far) as u64;
        if header.payload_len > room {
            return Err(format!(
                "an echo longer than the {} bytes sent ({} bytes and more)",
                self.pattern.len(),
                so_far as u64 + header.payload_len
            ));
        }
        Ok(())
    }

    /// Takes one complete frame (header already checked, `payload` unmasked as sent).
    fn frame(&mut self, header: &FrameHeader, payload: &[u8], sent: u64) -> Reply {
        match header.opcode {
            OpCode::Ping => return Reply::Ping,
            OpCode::Pong => return Reply::Ignored,
            OpCode::Close => {
                let code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                return Reply::Closed(code);
            }
            OpCode::Continuation if self.in_message.is_none() => {
                return Reply::Broken("a continuation frame outside a message".into());
            }
            OpCode::Text | OpCode::Binary if self.in_message.is_some() => {
                return Reply::Broken("a new message inside a fragmented one".into());
            }
            OpCode::Text | OpCode::Binary if header.opcode != self.opcode => {
                self.wrong_kind = Some(format!(
                    "a {} echo of a {} message",
                    header.opcode, self.opcode
                ));
            }
            _ => {}
        }
        let start = self.in_message.unwrap_or(0);
        let end = start + payload.len();
        let sequence_end = end.min(self.sequence_len);
        if start < sequence_end {
            self.sequence_bytes[start..sequence_end]
                .copy_from_slice(&payload[..sequence_end - start]);
        }
        let rest_from = start.max(self.sequence_len);
        if self.verify == Verify::Full && self.wrong_byte.is_none() && rest_from < end {
            let got = &payload[rest_from - start..];
            let sent_bytes = &self.pattern[rest_from..end];
            if got != sent_bytes {
                let at = got.iter().zip(sent_bytes).position(|(a, b)| a != b);
                self.wrong_byte = Some(rest_from + at.unwrap_or(0));
            }
        }
        if !header.fin {
            self.in_message = Some(end);
            return Reply::Fragment;
        }
        self.in_message = None;
        if end != self.pattern.len() && self.wrong_kind.is_none() {
            self.wrong_kind = Some(format!(
                "an echo of {end} bytes for {} sent",
                self.pattern.len()
            ));
        }
        self.whole_message(sent)
    }

    /// The verdict on the echo just completed (its bytes gathered by [`Self::frame`]).
    fn whole_message(&mut self, sent: u64) -> Reply {
        let wrong_byte = self.wrong_byte.take();
        if let Some(kind) = self.wrong_kind.take() {
            self.next += 1;
            return Reply::Wrong(kind);
        }
        let len = self.sequence_len;
        let got = self.sequence_bytes;
        let due = sequence::encode(self.next).to_le_bytes();
        let Some(differs) = got[..len].iter().zip(&due[..len]).position(|(a, b)| a != b) else {
            self.next += 1;
            return match wrong_byte {
                Some(at) => Reply::Wrong(format!("the echo differs at byte {at}")),
                None => Reply::Echoed(self.next - 1),
            };
        };
        if wrong_byte.is_none()
            && let Some(number) = sequence::decode(&got[..len])
        {
            let modulus = sequence::modulus(len);
            let next = self.next % modulus;
            let ahead = (number + modulus - next) % modulus;
            let behind = (next + modulus - number) % modulus;
            if ahead < sent.saturating_sub(self.next).min(modulus) {
                let echoed = self.next + ahead;
                self.next = echoed + 1;
                return Reply::Lost {
                    echoed,
                    lost: ahead,
                };
            }
            if behind <= self.window.min(self.next) {
                return Reply::Duplicate(self.next - behind);
            }
        }
        self.next += 1;
        Reply::Wrong(format!("the echo differs at byte {differs}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::sequence::encode;

    #[test]
    fn a_large_echo_is_taken_on_its_header_and_sequence_and_the_rest_discarded() {
        let size = 64 << 10;
        let mut check = EchoCheck::new(OpCode::Binary, vec![7; size], Verify::Sequence, 4);
        let prefix = check
            .prefix_len()
            .expect("large echoes are discarded past their prefix");
        assert_eq!(
            prefix,
            10 + SEQUENCE_LEN,
            "a 64 KiB echo has a 10-byte header"
        );
        let mut echo = header(OpCode::Binary, true, size);
        echo.extend_from_slice(&encode(0).to_le_bytes());
        assert_eq!(
            check.take_prefix(&echo[..prefix - 1]),
            None,
            "not all of the sequence yet"
        );
        assert_eq!(check.take_prefix(&echo), Some((0, size - SEQUENCE_LEN)));
        assert_eq!(check.next(), 1);
        // Echo 1 is due: a copy of echo 0 is not taken on its prefix.
        assert_eq!(check.take_prefix(&echo), None);
        assert_eq!(check.next(), 1);
        // Nor is a ping, or a fragment.
        let ping = frame(OpCode::Ping, true, b"0123456789abcdef0123");
        assert_eq!(check.take_prefix(&ping), None);
        let mut part = header(OpCode::Binary, false, size);
        part.extend_from_slice(&encode(1).to_le_bytes());
        assert_eq!(check.take_prefix(&part), None);
    }

    #[test]
    fn small_or_fully_verified_echoes_are_read_whole() {
        let small = EchoCheck::new(
            OpCode::Binary,
            vec![7; DISCARD_MIN - 1],
            Verify::Sequence,
            4,
        );
        assert_eq!(small.prefix_len(), None);
        let mut full = EchoCheck::new(OpCode::Binary, vec![7; 64 << 10], Verify::Full, 4);
        assert_eq!(full.prefix_len(), None);
        let mut echo = header(OpCode::Binary, true, 64 << 10);
        echo.extend_from_slice(&encode(0).to_le_bytes());
        assert_eq!(full.take_prefix(&echo), None);
    }

    fn header(opcode: OpCode, fin: bool, len: usize) -> Vec<u8> {
        let header = FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
            payload_len: len as u64,
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let len = header.encode(&mut head);
        head[..len].to_vec()
    }

    /// An unmasked frame as a server sends it.
    fn frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = header(opcode, fin, payload.len());
        out.extend_from_slice(payload);
        out
    }

    /// The payload of message `number` over `pattern`.
    fn message(pattern: &[u8], number: u64) -> Vec<u8> {
        let mut payload = pattern.to_vec();
        let len = payload.len().min(8);
        payload[..len].copy_from_slice(&encode(number).to_le_bytes()[..len]);
        payload
    }

    /// Runs every frame of `wire` through `check`, `sent` messages sent.
    fn replies(check: &mut EchoCheck, mut wire: &[u8], sent: u64) -> Vec<Reply> {
        let mut out = Vec::new();
        while let Some((reply, range)) = check.next_frame(wire, sent).unwrap() {
            out.push(reply);
            wire = &wire[range.end..];
        }
        assert!(wire.is_empty(), "{} bytes left", wire.len());
        out
    }

    const PATTERN: &[u8] = b"abcdefghijklmnop";

    #[test]
    fn in_order_echoes_pass_on_the_fast_path() {
        let mut check = EchoCheck::new(OpCode::Binary, PATTERN.to_vec(), Verify::Sequence, 4);
        let mut wire = Vec::new();
        for n in 0..3 {
            wire.extend(frame(OpCode::Binary, true, &message(PATTERN, n)));
        }
        let replies = replies(&mut check, &wire, 4);
        assert_eq!(
            replies,
            [Reply::Echoed(0), Reply::Echoed(1), Reply::Echoed(2)]
        );
        assert_eq!(check.next(), 3);
        // Half a frame waits for the rest.
        let one = frame(OpCode::Binary, true, &message(PATTERN, 3));
        assert_eq!(check.next_frame(&one[..10], 4), Ok(None));
    }

    #[test]
    fn lost_duplicated_and_changed_echoes_are_told_apart() {
        let mut check = EchoCheck::new(OpCode::Binary, PATTERN.to_vec(), Verify::Sequence, 8);
        let echo = |n| frame(OpCode::Binary, true, &message(PATTERN, n));
        assert_eq!(replies(&mut check, &echo(0), 8), [Reply::Echoed(0)]);
        // 1 and 2 never came back.
        assert_eq!(
            replies(&mut check, &echo(3), 8),
            [Reply::Lost { echoed: 3, lost: 2 }]
        );
        assert_eq!(replies(&mut check, &echo(3), 8), [Reply::Duplicate(3)]);
        assert_eq!(check.next(), 4, "a duplicate takes no message's place");
        // Beyond what was sent: not an echo of anything, a changed one.
        let mut changed = message(PATTERN, 4);
        changed[3] ^= 1;
        assert_eq!(
            replies(&mut check, &frame(OpCode::Binary, true, &changed), 8),
            [Reply::Wrong("the echo differs at byte 3".into())]
        );
        let mut garbage = message(PATTERN, 5);
        garbage[0] = 0xff;
        assert_eq!(
            replies(&mut check, &frame(OpCode::Binary, true, &garbage), 8),
            [Reply::Wrong("the echo differs at byte 0".into())]
        );
        assert_eq!(replies(&mut check, &echo(6), 8), [Reply::Echoed(6)]);
    }

    #[test]
    fn full_verification_compares_every_byte() {
        let mut changed = message(PATTERN, 0);
        changed[12] ^= 1;
        let wire = frame(OpCode::Binary, true, &changed);
        let mut cheap = EchoCheck::new(OpCode::Binary, PATTERN.to_vec(), Verify::Sequence, 1);
        assert_eq!(replies(&mut cheap, &wire, 1), [Reply::Echoed(0)]);
        let mut full = EchoCheck::new(OpCode::Binary, PATTERN.to_vec(), Verify::Full, 1);
        assert_eq!(
            replies(&mut full, &wire, 1),
            [Reply::Wrong("the echo differs at byte 12".into())]
        );
        let intact = frame(OpCode::Binary, true, &message(PATTERN, 1));
        assert_eq!(replies(&mut full, &intact, 2), [Reply::Echoed(1)]);
    }

    #[test]
    fn fragments_are_checked_in_order() {
        for verify in [Verify::Sequence, Verify::Full] {
            let mut check = EchoCheck::new(OpCode::Text, PATTERN.to_vec(), verify, 2);
            let payload = message(PATTERN, 0);
            // The sequence number itself is split over two fragments.
            let mut wire = frame(OpCode::Text, false, &payload[..3]);
            wire.extend(frame(OpCode::Ping, true, b"hi"));
            wire.extend(frame(OpCode::Continuation, false, &payload[3..10]));
            wire.extend(frame(OpCode::Continuation, true, &payload[10..]));
            assert_eq!(
                replies(&mut check, &wire, 2),
                [
                    Reply::Fragment,
                    Reply::Ping,
                    Reply::Fragment,
                    Reply::Echoed(0)
                ],
                "{verify:?}"
            );
            let too_long = frame(OpCode::Text, true, &[b'x'; 17]);
            assert!(check.next_frame(&too_long, 2).is_err());
            let stray = frame(OpCode::Continuation, true, b"x");
            assert!(matches!(
                check.next_frame(&stray, 2),
                Ok(Some((Reply::Broken(_), _)))
            ));
        }
    }

    #[test]
    fn wrong_opcodes_and_lengths_are_wrong_echoes() {
        let mut check = EchoCheck::new(OpCode::Binary, PATTERN.to_vec(), Verify::Sequence, 4);
        let text = frame(OpCode::Text, true, &message(PATTERN, 0));
        assert_eq!(
            replies(&mut check, &text, 4),
            [Reply::Wrong("a text echo of a binary message".into())]
        );
        let short = frame(OpCode::Binary, true, &message(PATTERN, 1)[..5]);
        assert_eq!(
            replies(&mut check, &short, 4),
            [Reply::Wrong("an echo of 5 bytes for 16 sent".into())]
        );
        assert_eq!(check.next(), 2, "each took the place of the message due");
    }

    #[test]
    fn control_frames_and_bad_headers() {
        let mut check = EchoCheck::new(OpCode::Binary, vec![1; 4], Verify::Sequence, 1);
        assert_eq!(
            replies(&mut check, &frame(OpCode::Ping, true, b""), 1),
            [Reply::Ping]
        );
        assert_eq!(
            replies(
                &mut check,
                &frame(OpCode::Close, true, &1001u16.to_be_bytes()),
                1
            ),
            [Reply::Closed(Some(1001))]
        );
        let mut masked = frame(OpCode::Binary, true, b"abcd");
        masked[1] |= 0x80;
        masked.splice(2..2, [1, 2, 3, 4]);
        assert!(check.next_frame(&masked, 1).unwrap_err().contains("§5.1"));
        let mut rsv = frame(OpCode::Binary, true, b"abcd");
        rsv[0] |= 0x40;
        assert!(check.next_frame(&rsv, 1).is_err());
    }

    #[test]
    fn short_and_empty_payloads_carry_what_fits() {
        let mut check = EchoCheck::new(OpCode::Binary, vec![0; 2], Verify::Full, 4);
        for n in 0..70 {
            let wire = frame(OpCode::Binary, true, &message(&[0; 2], n));
            assert_eq!(replies(&mut check, &wire, n + 1), [Reply::Echoed(n)]);
        }
        let mut empty = EchoCheck::new(OpCode::Text, Vec::new(), Verify::Sequence, 1);
        let wire = frame(OpCode::Text, true, b"");
        assert_eq!(replies(&mut empty, &wire, 1), [Reply::Echoed(0)]);
        assert_eq!(replies(&mut empty, &wire, 2), [Reply::Echoed(1)]);
    }
}
