//! Frame streaming: data frames passed on one by one, for intermediaries that relay frames
//! without reassembling messages.
//!
//! With [`Connection::stream_frames`] on, [`Connection::poll_frame`] yields each data frame as
//! soon as its payload is complete, unmasked, with the opcode of its message, FIN and the
//! compressed flag, instead of a whole message. Every rule of the leg is still enforced here:
//! masking direction, reserved bits and opcodes, control frame rules, continuation order
//! (RFC 6455 §5.4), UTF-8 of uncompressed text checked as it arrives across fragments (1007 at
//! the first impossible byte), close codes and reasons, `max_frame_size` and a cumulative
//! `max_message_size` (1009). Pings are answered by the engine as in the reassembling mode.
//!
//! Compressed messages (RSV1, RFC 7692) are not inflated: their payload is passed on as
//! received, for a peer with the same permessage-deflate parameters to inflate. The engine
//! cannot check their UTF-8 or inflated size; `max_message_size` counts their bytes on the
//! wire, and the endpoint that inflates them enforces the rest.
//!
//! Memory: a frame is held whole until its last byte arrives, so one frame costs at most
//! `max_frame_size`; a message costs nothing beyond the frame being received.
//!
//! [`Connection::send_frame`] is the matching command: it sends one data frame and refuses a
//! sequence that would break RFC 6455 §5.4 on this leg.

use bytes::{Buf, Bytes, BytesMut};

use super::Connection;
use super::lend::Step;
use super::recv::{IncomingFrame, IncomingMessage};
use super::send::sender;
use crate::error::{ProtocolError, SendError};
use crate::frame::{FrameHeader, OpCode};
use crate::mask::apply_mask;
use crate::message::Message;

/// The kind of a data message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// A text message (opcode 0x1): UTF-8 once inflated.
    Text,
    /// A binary message (opcode 0x2).
    Binary,
}

impl DataKind {
    fn opcode(self) -> OpCode {
        match self {
            DataKind::Text => OpCode::Text,
            DataKind::Binary => OpCode::Binary,
        }
    }
}

/// One data frame of a message, unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataFrame {
    /// The kind of the message the frame belongs to (continuation frames included).
    pub kind: DataKind,
    /// Whether this is the first frame of its message (on the wire: opcode `kind`, else
    /// continuation, RFC 6455 §5.4).
    pub first: bool,
    /// Whether this is the last frame of its message (FIN).
    pub fin: bool,
    /// Whether the message is compressed (RFC 7692: RSV1 on its first frame). The payload of
    /// every frame of a compressed message is compressed data.
    pub compressed: bool,
    /// The payload, unmasked.
    pub payload: Bytes,
}

/// What [`Connection::poll_frame`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A data frame (frame streaming on).
    Frame(DataFrame),
    /// A ping, pong or close; with frame streaming off, also whole text and binary messages.
    Message(Message),
}

/// What one step of frame streaming produced.
pub(super) enum StreamStep {
    /// A data frame, whole.
    Frame(DataFrame),
    /// A ping, pong or close, left where it lies.
    Control(Step),
}

/// The message being sent frame by frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OutgoingMessage {
    kind: DataKind,
    compressed: bool,
}

impl Connection {
    /// Switches to frame streaming (see [`poll_frame`](Self::poll_frame)). Returns `false`, and
    /// changes nothing, once a data frame was sent or received: with permessage-deflate the
    /// compression contexts would no longer belong to the peers whose frames cross.
    ///
    /// In this mode whole messages sent with [`send`](Self::send) go uncompressed (the
    /// compression context belongs to the peer whose compressed frames are passed on).
    pub fn stream_frames(&mut self) -> bool {
        if self.data_exchanged {
            return false;
        }
        self.streaming = true;
        true
    }

    /// Whether frame streaming is on.
    pub fn is_streaming_frames(&self) -> bool {
        self.streaming
    }

    /// The next data frame, ping, pong or close, in the order they came.
    ///
    /// With frame streaming on, each data frame comes out as [`Incoming::Frame`] once its
    /// payload is complete; otherwise this is [`poll_event`](Self::poll_event), with whole
    /// messages as [`Incoming::Message`]. Errors and pings are handled as there.
    pub fn poll_frame(&mut self) -> Option<Result<Incoming, ProtocolError>> {
        if !self.streaming {
            return self.poll_event().map(|r| r.map(Incoming::Message));
        }
        self.poll_with(|conn| {
            Ok(match conn.stream_step()? {
                Some(StreamStep::Frame(frame)) => Some(Incoming::Frame(frame)),
                Some(StreamStep::Control(step)) => Some(Incoming::Message(conn.take_step(step)?)),
                None => None,
            })
        })
    }

    pub(super) fn stream_step(&mut self) -> Result<Option<StreamStep>, ProtocolError> {
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
                    let msg = self
                        .message
                        .as_mut()
                        .expect("a data frame belongs to a message");
                    msg.streamed += n as u64;
                    if msg.text && !msg.compressed {
                        // RFC 6455 §8.1, checked as the bytes come: fail fast on bad text.
                        msg.utf8
                            .feed(&chunk)
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    if frame.payload.is_empty() {
                        frame.payload = chunk;
                    } else {
                        frame.payload.extend_from_slice(&chunk);
                    }
                    if frame.remaining > 0 {
                        continue;
                    }
                }
                let frame = *self.frame.take().expect("checked above");
                let msg = self
                    .message
                    .as_ref()
                    .expect("a data frame belongs to a message");
                let out = DataFrame {
                    kind: if msg.text {
                        DataKind::Text
                    } else {
                        DataKind::Binary
                    },
                    first: frame.first,
                    fin: frame.fin,
                    compressed: msg.compressed,
                    payload: frame.payload.freeze(),
                };
                if frame.fin {
                    // RFC 6455 §8.1: the message must not end inside a code point.
                    if msg.text && !msg.compressed {
                        msg.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    self.message = None;
                }
                return Ok(Some(StreamStep::Frame(out)));
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
                return self
                    .control_step(&header, header_len, len)
                    .map(|step| Some(StreamStep::Control(step)));
            }
            self.data_exchanged = true;
            self.note_data_frame(header_len, len);
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
                payload: BytesMut::new(),
            }));
        }
    }

    /// Queues one data frame: the first frame of a message (opcode `frame.kind`, RSV1 when
    /// `frame.compressed`), or a continuation of the message started before (RFC 6455 §5.4).
    /// The payload goes out as given; a compressed one must come from a peer with the same
    /// permessage-deflate parameters.
    ///
    /// Refused with [`SendError::FrameOutOfSequence`] when the frame does not continue the
    /// message in progress (or starts one while another is unfinished),
    /// [`SendError::CompressionNotNegotiated`] for a compressed frame without
    /// permessage-deflate, and as [`send`](Self::send) refuses data when closed or full.
    /// Control frames may be sent between the frames of a message.
    pub fn send_frame(&mut self, frame: DataFrame) -> Result<(), SendError> {
        sender!(self).check_data_allowed()?;
        // RFC 7692 §6: RSV1 means compressed only where permessage-deflate was negotiated.
        if frame.compressed && self.deflate.is_none() {
            return Err(SendError::CompressionNotNegotiated);
        }
        let this = OutgoingMessage {
            kind: frame.kind,
            compressed: frame.compressed,
        };
        match (self.sending, frame.first) {
            // RFC 6455 §5.4: "fragments of one message MUST NOT be interleaved between
            // fragments of another message".
            (Some(_), true) => {
                return Err(SendError::FrameOutOfSequence(
                    "a message starts before the previous one ended",
                ));
            }
            (None, false) => {
                return Err(SendError::FrameOutOfSequence(
                    "a continuation frame without a message to continue",
                ));
            }
            (Some(current), false) if current != this => {
                return Err(SendError::FrameOutOfSequence(
                    "a continuation frame of another kind of message",
                ));
            }
            _ => {}
        }
        let opcode = if frame.first {
            frame.kind.opcode()
        } else {
            OpCode::Continuation
        };
        // RFC 7692 §6.1: RSV1 is set on the first frame of a compressed message only.
        let rsv1 = frame.first && frame.compressed;
        self.data_exchanged = true;
        sender!(self).queue_owned_frame(opcode, frame.fin, rsv1, frame.payload);
        self.sending = (!frame.fin).then_some(this);
        Ok(())
    }

    /// Whether a message sent with [`send_frame`](Self::send_frame) is unfinished.
    pub fn is_sending_fragments(&self) -> bool {
        self.sending.is_some()
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
