//! The receiving half: frames parsed lazily from buffered input into events.

use bytes::{Buf, Bytes};

use super::lend::Step;
use super::send::sender;
use super::{Connection, Loan, State};
use crate::close::{CloseCode, CloseFrame};
use crate::deflate::DeflateError;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::{Message, Utf8Bytes};
use crate::role::Role;
use crate::utf8::Utf8Validator;

/// A data frame whose payload is still arriving.
#[derive(Debug)]
pub(super) struct IncomingFrame {
    pub(super) fin: bool,
    pub(super) mask: Option<[u8; 4]>,
    pub(super) remaining: u64,
    /// Payload bytes seen so far, for the mask's phase.
    pub(super) offset: usize,
    /// Whether this frame starts its message (frame streaming only).
    pub(super) first: bool,
    /// The unmasked payload so far (frame streaming only; reassembly appends to the message).
    pub(super) payload: bytes::BytesMut,
}

/// A message being reassembled from its frames.
#[derive(Debug)]
pub(super) struct IncomingMessage {
    pub(super) text: bool,
    pub(super) compressed: bool,
    pub(super) data: Vec<u8>,
    /// How much of `data` the UTF-8 validator has seen.
    validated: usize,
    pub(super) utf8: Utf8Validator,
    /// Payload bytes passed on frame by frame (frame streaming), as received on the wire.
    pub(super) streamed: u64,
}

impl IncomingMessage {
    pub(super) fn new(opcode: OpCode, compressed: bool) -> Self {
        IncomingMessage {
            text: opcode == OpCode::Text,
            compressed,
            data: Vec::new(),
            validated: 0,
            utf8: Utf8Validator::new(),
            streamed: 0,
        }
    }

    /// A received close frame's payload, kept to be lent.
    fn closing(payload: Vec<u8>) -> Self {
        IncomingMessage {
            data: payload,
            ..IncomingMessage::new(OpCode::Binary, false)
        }
    }
}

impl Connection {
    /// The next event: a message, ping, pong or close from the peer, in the order they came.
    ///
    /// Returns `None` when more input is needed. `Some(Err(e))` means the peer broke a rule:
    /// the engine has queued a close frame with [`ProtocolError::close_code`] and is now
    /// [`State::Closed`]. A ping is answered (when `auto_pong` is on) as it is returned here,
    /// so answers keep the order of the messages around them.
    ///
    /// With [frame streaming](Self::stream_frames) on, data frames are checked and dropped
    /// here (read them with [`poll_frame`](Self::poll_frame)); only control frames come out.
    ///
    /// [`for_each_ref`](Self::for_each_ref) lends the same events to a handler instead of
    /// handing them over.
    pub fn poll_event(&mut self) -> Option<Result<Message, ProtocolError>> {
        self.poll_with(|conn| match conn.next_step()? {
            Some(step) => conn.take_step(step).map(Some),
            None => Ok(None),
        })
    }

    /// Parses up to the next event and says where it lies: in the read buffer, or held
    /// beside it (a reassembled message, a close).
    pub(super) fn next_step(&mut self) -> Result<Option<Step>, ProtocolError> {
        if !self.streaming {
            return self.read_step();
        }
        loop {
            match self.stream_step()? {
                Some(super::stream::StreamStep::Frame(_)) => continue,
                Some(super::stream::StreamStep::Control(step)) => return Ok(Some(step)),
                None => return Ok(None),
            }
        }
    }

    /// Runs one parsing step with the bookkeeping every output shares: the last event's loan
    /// ended, nothing once closed, the read buffer released when empty, a broken rule
    /// failing the connection.
    pub(super) fn poll_with<T>(
        &mut self,
        step: impl FnOnce(&mut Self) -> Result<Option<T>, ProtocolError>,
    ) -> Option<Result<T, ProtocolError>> {
        self.release_loan();
        if self.state == State::Closed || self.failed {
            return None;
        }
        match step(self) {
            Ok(Some(msg)) => Some(Ok(msg)),
            Ok(None) => {
                if self.input.is_empty() {
                    // Release the read buffer: an idle connection holds none.
                    self.input = bytes::BytesMut::new();
                }
                None
            }
            Err(e) => {
                self.fail(&e);
                Some(Err(e))
            }
        }
    }

    fn read_step(&mut self) -> Result<Option<Step>, ProtocolError> {
        loop {
            if let Some(frame) = &mut self.frame {
                if frame.remaining > 0 {
                    if self.input.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(frame.remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len());
                    let mut chunk = self.input.split_to(n);
                    if let Some(key) = frame.mask {
                        apply_mask(&mut chunk, key, frame.offset);
                    }
                    frame.offset += n;
                    frame.remaining -= n as u64;
                    self.append_payload(&chunk)?;
                    if self.frame.as_ref().is_some_and(|f| f.remaining > 0) {
                        continue;
                    }
                }
                let fin = self.frame.take().is_some_and(|f| f.fin);
                if fin {
                    self.finish_message()?;
                    return Ok(Some(Step::Held(Loan::Message)));
                }
                continue;
            }

            let Some((header, header_len)) = FrameHeader::parse(&self.input)? else {
                return Ok(None);
            };
            self.check_header(&header)?;
            // Fits in usize: bounded by max_frame_size, or 125 for control frames.
            let len = header.payload_len as usize;

            if header.opcode.is_control() {
                if self.input.len() < header_len + len {
                    return Ok(None);
                }
                return self.control_step(&header, header_len, len).map(Some);
            }

            self.data_exchanged = true;
            self.note_data_frame(header_len, len);
            let whole_message = self.message.is_none() && header.fin && !header.rsv1;
            if whole_message
                && header.opcode == OpCode::Binary
                && self.input.len() < header_len + len
            {
                // A whole uncompressed binary message in one frame, not all here yet: wait
                // for the rest in the read buffer (bounded by `max_frame_size`, checked
                // above), so that it leaves by the copy-free path below. Text goes on
                // frame by frame instead, so that bad UTF-8 fails at once (RFC 6455 §8.1).
                return Ok(None);
            }
            if whole_message && self.input.len() >= header_len + len {
                // Fast path: a whole uncompressed message in one frame, all of it buffered.
                // Unmask it in place and lend it where it is: no copy. Its consumer checks
                // text as it makes a `str` of it (RFC 6455 §8.1), so that is done once.
                let range = header_len..header_len + len;
                if let Some(key) = header.mask {
                    apply_mask(&mut self.input[range.clone()], key, 0);
                }
                return Ok(Some(Step::Input {
                    opcode: header.opcode,
                    range,
                }));
            }

            self.input.advance(header_len);
            let first = header.opcode != OpCode::Continuation;
            if first {
                self.message = Some(Box::new(IncomingMessage::new(header.opcode, header.rsv1)));
            }
            self.frame = Some(Box::new(IncomingFrame {
                fin: header.fin,
                mask: header.mask,
                remaining: header.payload_len,
                offset: 0,
                first,
                payload: bytes::BytesMut::new(),
            }));
        }
    }

    /// Checks the rules that depend on connection state, before any payload is buffered.
    pub(super) fn check_header(&self, h: &FrameHeader) -> Result<(), ProtocolError> {
        // RFC 6455 §5.1: "a client MUST mask all frames that it sends to the server" and "A
        // server MUST NOT mask any frames"; the receiver must fail the connection otherwise.
        if !self.config.dangerous_accept_wrong_masking {
            match (self.role, h.mask.is_some()) {
                (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
                (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
                _ => {}
            }
        }
        // RFC 6455 §5.2: RSV bits "MUST be 0 unless an extension is negotiated that defines
        // meanings for non-zero values".
        if h.rsv2 || h.rsv3 || (h.rsv1 && self.deflate.is_none()) {
            return Err(ProtocolError::ReservedBitsSet);
        }
        // RFC 7692 §6.1: RSV1 marks the first frame of a compressed message only.
        if h.rsv1 && (h.opcode == OpCode::Continuation || h.opcode.is_control()) {
            return Err(ProtocolError::CompressedBitOnWrongFrame(h.opcode));
        }
        match h.opcode {
            // RFC 6455 §5.4: continuation frames continue a started message...
            OpCode::Continuation if self.message.is_none() => {
                return Err(ProtocolError::UnexpectedContinuation);
            }
            // ...and the fragments of one message are not interleaved with another's.
            OpCode::Text | OpCode::Binary if self.message.is_some() => {
                return Err(ProtocolError::ExpectedContinuation(h.opcode));
            }
            _ => {}
        }
        if !h.opcode.is_control() {
            if h.payload_len > self.config.max_frame_size as u64 {
                return Err(ProtocolError::FrameTooLarge {
                    size: h.payload_len,
                    limit: self.config.max_frame_size,
                });
            }
            let compressed = h.rsv1 || self.message.as_ref().is_some_and(|m| m.compressed);
            let so_far = self
                .message
                .as_ref()
                .map_or(0, |m| m.data.len() as u64 + m.streamed);
            // Reassembled compressed messages are limited after inflation (append_payload);
            // streamed ones, which this engine does not inflate, by their bytes on the wire.
            if (!compressed || self.streaming)
                && so_far + h.payload_len > self.config.max_message_size as u64
            {
                return Err(ProtocolError::MessageTooLarge {
                    limit: self.config.max_message_size,
                });
            }
        }
        Ok(())
    }

    /// Adds unmasked payload bytes to the message being reassembled, inflating and checking
    /// UTF-8 as they come so bad input fails at once.
    fn append_payload(&mut self, chunk: &[u8]) -> Result<(), ProtocolError> {
        let limit = self.config.max_message_size;
        // What is still to come of the current frame (already counted down for `chunk`).
        let frame_rest = self
            .frame
            .as_ref()
            .map_or(0, |f| usize::try_from(f.remaining).unwrap_or(usize::MAX));
        let msg = self
            .message
            .as_mut()
            .expect("a data frame belongs to a message");
        if msg.compressed {
            let deflate = self
                .deflate
                .as_mut()
                .expect("RSV1 accepted only with deflate");
            deflate
                .decompress(chunk, &mut msg.data, limit)
                .map_err(inflate_error)?;
        } else {
            if frame_rest > 0 && msg.data.capacity() - msg.data.len() < chunk.len() {
                // Grow towards the frame's end, by at most what has arrived: a frame split
                // over reads then lands in one allocation of its size, where doubling would
                // copy it and reserve twice that. The frame's declared length alone reserves
                // nothing, so memory follows the bytes the peer really sent.
                let extra = frame_rest.min(msg.data.len() + chunk.len());
                msg.data.reserve_exact(chunk.len() + extra);
            }
            msg.data.extend_from_slice(chunk);
        }
        validate_new_text(msg)
    }

    /// Completes the message being reassembled, which stays in `self.message` to be lent.
    fn finish_message(&mut self) -> Result<(), ProtocolError> {
        let limit = self.config.max_message_size;
        let msg = self
            .message
            .as_mut()
            .expect("a final frame belongs to a message");
        if msg.compressed {
            let deflate = self
                .deflate
                .as_mut()
                .expect("RSV1 accepted only with deflate");
            // RFC 7692 §7.2.2: append 0x00 0x00 0xff 0xff to the payload and inflate.
            deflate
                .finish_message(&mut msg.data, limit)
                .map_err(inflate_error)?;
        }
        validate_new_text(msg)?;
        if msg.text {
            // RFC 6455 §8.1: the message must not end inside a code point.
            msg.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Handles a ping, pong or close whose bytes are all buffered: unmasks it in place, does
    /// what receiving it requires of the engine, and leaves it to lend. A close is kept in
    /// `self.message`, since closing drops the read buffer.
    pub(super) fn control_step(
        &mut self,
        header: &FrameHeader,
        header_len: usize,
        len: usize,
    ) -> Result<Step, ProtocolError> {
        let end = header_len + len;
        if let Some(key) = header.mask {
            apply_mask(&mut self.input[header_len..end], key, 0);
        }
        let payload = &self.input[header_len..end];
        match header.opcode {
            OpCode::Ping => {
                // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong
                // frame in response", with "identical Application data".
                if self.config.auto_pong && self.state == State::Open {
                    sender!(self).queue_control(OpCode::Pong, payload);
                }
                Ok(Step::Input {
                    opcode: OpCode::Ping,
                    range: header_len..end,
                })
            }
            OpCode::Pong => Ok(Step::Input {
                opcode: OpCode::Pong,
                range: header_len..end,
            }),
            OpCode::Close => {
                let code = check_close_payload(payload)?;
                if self.state == State::Open {
                    // RFC 6455 §5.5.1: "the endpoint MUST send a Close frame in response",
                    // "typically echo[ing] the status code it received".
                    let reply = code.map(|c| c.0.to_be_bytes());
                    let reply = reply.as_ref().map_or(&[][..], |c| &c[..]);
                    sender!(self).queue_control(OpCode::Close, reply);
                }
                let payload = payload.to_vec();
                self.enter_closed();
                self.message = Some(Box::new(IncomingMessage::closing(payload)));
                Ok(Step::Held(Loan::Close))
            }
            _ => unreachable!("data opcodes are not control frames"),
        }
    }

    /// _Fail the WebSocket Connection_ (RFC 6455 §7.1.7): send a close frame with the error's
    /// code, unless one was sent already, and stop reading. With
    /// `Config::deferred_failure_close` the close frame waits for the application's
    /// [`Connection::close`] instead; reading stops all the same.
    pub(super) fn fail(&mut self, e: &ProtocolError) {
        if self.state == State::Open && self.config.deferred_failure_close {
            self.failed = true;
            self.loan = Loan::None;
            self.input = bytes::BytesMut::new();
            self.frame = None;
            self.message = None;
            return;
        }
        if self.state == State::Open {
            let mut payload = e.close_code().0.to_be_bytes().to_vec();
            let reason = e.to_string();
            let mut cut = reason.len().min(CloseFrame::MAX_REASON_LEN);
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            payload.extend_from_slice(&reason.as_bytes()[..cut]);
            self.queue_control(OpCode::Close, &payload);
        }
        self.failed = true;
        self.enter_closed();
    }
}

fn validate_new_text(msg: &mut IncomingMessage) -> Result<(), ProtocolError> {
    if msg.text {
        msg.utf8
            .feed(&msg.data[msg.validated..])
            .map_err(|_| ProtocolError::InvalidUtf8)?;
        msg.validated = msg.data.len();
    }
    Ok(())
}

fn inflate_error(e: DeflateError) -> ProtocolError {
    match e {
        DeflateError::TooLarge { limit } => ProtocolError::MessageTooLarge { limit },
        DeflateError::Corrupt(msg) => ProtocolError::InvalidCompressedData(msg),
    }
}

/// Checks a close frame's payload (RFC 6455 §5.5.1); returns its status code, if any.
fn check_close_payload(payload: &[u8]) -> Result<Option<CloseCode>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        // "If there is a body, the first two bytes of the body MUST be a 2-byte unsigned
        // integer ... representing a status code".
        1 => Err(ProtocolError::InvalidClosePayload),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            // RFC 6455 §7.4: reserved and unassigned codes must not appear on the wire.
            if !code.is_allowed_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.0));
            }
            // RFC 6455 §5.5.1: the reason is UTF-8; §8.1 applies to it as to text.
            if simdutf8::basic::from_utf8(&payload[2..]).is_err() {
                return Err(ProtocolError::InvalidCloseReason);
            }
            Ok(Some(code))
        }
    }
}

/// A close frame from a payload [`check_close_payload`] accepted.
pub(super) fn close_frame(payload: Bytes) -> Option<CloseFrame> {
    let code = check_close_payload(&payload).ok().flatten()?;
    Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_validated(payload.slice(2..)),
    })
}
