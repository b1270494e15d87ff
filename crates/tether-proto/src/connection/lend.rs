//! Lent events: a received message read where it lies, in the engine's buffers, instead of
//! handed over as an owned [`Message`].
//!
//! [`Connection::poll_event`] hands over each message as [`Bytes`]: a view of the read buffer
//! with a reference count, which the application may keep. [`Connection::for_each_ref`]
//! lends each to a handler instead: no reference count, no allocation, and a [`Sender`] to
//! queue replies while it is lent, uWebSockets' way. A handler that wants to keep a message
//! breaks, and the message is taken ([`Connection::take_lent`]) at the cost `poll_event`
//! would have paid.

use std::ops::ControlFlow;

use bytes::{Buf, Bytes};

use super::recv::close_frame;
use super::send::{Sender, sender};
use super::{Connection, Loan};
use crate::close::{CloseCode, CloseFrame};
use crate::error::ProtocolError;
use crate::frame::OpCode;
use crate::message::{Message, Utf8Bytes};

/// A message, or a control frame, lent by the engine (see [`Connection::for_each_ref`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageRef<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
    /// A ping, with up to 125 bytes of application data (already answered when `auto_pong`
    /// is on).
    Ping(&'a [u8]),
    /// A pong.
    Pong(&'a [u8]),
    /// A close frame; `None` when it carried no status code (already answered).
    Close(Option<CloseFrameRef<'a>>),
}

/// A close frame's status code and reason, lent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseFrameRef<'a> {
    /// The status code.
    pub code: CloseCode,
    /// The reason (UTF-8, up to 123 bytes).
    pub reason: &'a str,
}

impl CloseFrameRef<'_> {
    /// An owned copy.
    pub fn to_close_frame(&self) -> CloseFrame {
        CloseFrame {
            code: self.code,
            reason: Utf8Bytes::from(self.reason),
        }
    }
}

impl<'a> MessageRef<'a> {
    /// Whether this is a text or binary message rather than a control frame.
    pub fn is_data(&self) -> bool {
        matches!(self, MessageRef::Text(_) | MessageRef::Binary(_))
    }

    /// The payload bytes (for a close, the reason).
    pub fn payload(&self) -> &'a [u8] {
        match *self {
            MessageRef::Text(t) => t.as_bytes(),
            MessageRef::Binary(b) | MessageRef::Ping(b) | MessageRef::Pong(b) => b,
            MessageRef::Close(Some(f)) => f.reason.as_bytes(),
            MessageRef::Close(None) => &[],
        }
    }

    /// An owned copy of the message.
    pub fn to_message(&self) -> Message {
        match *self {
            MessageRef::Text(t) => Message::Text(Utf8Bytes::from(t)),
            MessageRef::Binary(b) => Message::Binary(Bytes::copy_from_slice(b)),
            MessageRef::Ping(b) => Message::Ping(Bytes::copy_from_slice(b)),
            MessageRef::Pong(b) => Message::Pong(Bytes::copy_from_slice(b)),
            MessageRef::Close(f) => Message::Close(f.map(|f| f.to_close_frame())),
        }
    }
}

impl std::fmt::Debug for Sender<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("pending_transmit", &self.pending_transmit())
            .finish_non_exhaustive()
    }
}

/// Where a parsed event lies, before it is lent or taken.
pub(super) enum Step {
    /// A whole frame at the front of the read buffer, unmasked: a message of one frame (its
    /// text not checked yet), a ping or a pong. `range` is its payload.
    Input {
        opcode: OpCode,
        range: std::ops::Range<usize>,
    },
    /// Checked and held elsewhere: a reassembled message or a close.
    Held(Loan),
}

/// The opcode and payload range of the frame lent from the front of the read buffer. Its
/// header was parsed and checked when it arrived, so only the lengths are read again
/// (RFC 6455 §5.2: 7-bit length, or 126 and 16 bits, or 127 and 64 bits; then the mask).
#[inline]
pub(super) fn lent_frame(input: &[u8]) -> (OpCode, std::ops::Range<usize>) {
    let b1 = input[1];
    let (len, mut header_len) = match b1 & 0x7f {
        126 => (usize::from(u16::from_be_bytes([input[2], input[3]])), 4),
        127 => {
            let bytes: [u8; 8] = input[2..10].try_into().expect("8 bytes");
            // Fits in usize: the frame is buffered whole.
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        n => (usize::from(n), 2),
    };
    if b1 & 0x80 != 0 {
        header_len += 4;
    }
    let opcode = match input[0] & 0x0f {
        0x1 => OpCode::Text,
        0x9 => OpCode::Ping,
        0xa => OpCode::Pong,
        _ => OpCode::Binary,
    };
    (opcode, header_len..header_len + len)
}

/// A lent frame's payload as an event; `None` for text that is not UTF-8 (RFC 6455 §8.1).
#[inline]
fn frame_ref(opcode: OpCode, payload: &[u8]) -> Option<MessageRef<'_>> {
    Some(match opcode {
        OpCode::Text => MessageRef::Text(simdutf8::basic::from_utf8(payload).ok()?),
        OpCode::Ping => MessageRef::Ping(payload),
        OpCode::Pong => MessageRef::Pong(payload),
        _ => MessageRef::Binary(payload),
    })
}

/// Text the engine checked when it arrived, checked again (SIMD) to make a `str` of it
/// without `unsafe`.
fn checked_str(bytes: &[u8]) -> &str {
    simdutf8::basic::from_utf8(bytes).expect("lent text was checked on arrival")
}

impl Connection {
    /// Lends every buffered event to `f`, one after another: the events
    /// [`poll_event`](Self::poll_event) would return, read where they lie in the engine's
    /// buffers, with no allocation or reference count. A message of one frame goes to `f`
    /// straight from the parser. The [`Sender`] beside each event queues messages, so an
    /// echo, or a reply made from the lent bytes, costs one copy into the outbound buffer.
    /// A lent event lasts until `f` returns; to keep one, break and
    /// [`take_lent`](Self::take_lent) it.
    ///
    /// Returns `Ok(Continue)` once more input is needed (or the connection is closed), and
    /// `Ok(Break)` as soon as `f` breaks: the event `f` broke on stays lent until the next
    /// poll, [`receive`](Self::receive) or [`close`](Self::close), and the events after it
    /// stay buffered. `Err` is a broken rule, as from `poll_event`; the events before it were
    /// lent. Pings and closes are answered as with `poll_event`; with frame streaming on,
    /// data frames are checked and dropped, as there.
    pub fn for_each_ref<F>(&mut self, mut f: F) -> Result<ControlFlow<()>, ProtocolError>
    where
        F: FnMut(MessageRef<'_>, &mut Sender<'_>) -> ControlFlow<()>,
    {
        loop {
            let step = match self.poll_with(Connection::next_step) {
                None => return Ok(ControlFlow::Continue(())),
                Some(Err(e)) => return Err(e),
                Some(Ok(step)) => step,
            };
            match step {
                Step::Input { opcode, range } => {
                    let Some(message) = frame_ref(opcode, &self.input[range.clone()]) else {
                        // RFC 6455 §8.1: text must be valid UTF-8.
                        let e = ProtocolError::InvalidUtf8;
                        self.fail(&e);
                        return Err(e);
                    };
                    if f(message, &mut sender!(self)).is_break() {
                        self.loan = Loan::Input;
                        return Ok(ControlFlow::Break(()));
                    }
                    self.input.advance(range.end);
                }
                Step::Held(loan) => {
                    self.loan = loan;
                    let Some((message, mut sender)) = self.lend() else {
                        continue;
                    };
                    if f(message, &mut sender).is_break() {
                        return Ok(ControlFlow::Break(()));
                    }
                }
            }
        }
    }

    /// The event held outside the read buffer (a reassembled message, a close) and the
    /// sending side, borrowed together.
    fn lend(&mut self) -> Option<(MessageRef<'_>, Sender<'_>)> {
        let message = match self.loan {
            Loan::None | Loan::Input => return None,
            Loan::Message => {
                let msg = self.message.as_deref()?;
                if msg.text {
                    MessageRef::Text(checked_str(&msg.data))
                } else {
                    MessageRef::Binary(&msg.data)
                }
            }
            Loan::Close => {
                let payload = &self.message.as_deref()?.data;
                MessageRef::Close((payload.len() >= 2).then(|| CloseFrameRef {
                    code: CloseCode(u16::from_be_bytes([payload[0], payload[1]])),
                    reason: checked_str(&payload[2..]),
                }))
            }
        };
        Some((message, sender!(self)))
    }

    /// Takes the lent event as an owned [`Message`], as [`poll_event`](Self::poll_event)
    /// would have returned it (a message of one frame as a view of the read buffer, without a
    /// copy). `None` if nothing is lent.
    pub fn take_lent(&mut self) -> Option<Message> {
        let step = match std::mem::replace(&mut self.loan, Loan::None) {
            Loan::None => return None,
            Loan::Input => {
                let (opcode, range) = lent_frame(&self.input);
                Step::Input { opcode, range }
            }
            held => Step::Held(held),
        };
        // Lent text was checked when it was lent.
        self.take_step(step).ok()
    }

    /// The event of `step` as an owned message; `Err` for text that is not UTF-8.
    pub(super) fn take_step(&mut self, step: Step) -> Result<Message, ProtocolError> {
        Ok(match step {
            Step::Input { opcode, range } => {
                self.input.advance(range.start);
                let payload = self.input.split_to(range.len()).freeze();
                match opcode {
                    // RFC 6455 §8.1: text must be valid UTF-8.
                    OpCode::Text => Message::Text(
                        Utf8Bytes::try_from_bytes(payload)
                            .map_err(|_| ProtocolError::InvalidUtf8)?,
                    ),
                    OpCode::Ping => Message::Ping(payload),
                    OpCode::Pong => Message::Pong(payload),
                    _ => Message::Binary(payload),
                }
            }
            Step::Held(Loan::Close) => {
                let msg = self.message.take().expect("a close is held");
                Message::Close(close_frame(Bytes::from(msg.data)))
            }
            Step::Held(_) => {
                let msg = self.message.take().expect("a reassembled message is held");
                let data = Bytes::from(msg.data);
                if msg.text {
                    Message::Text(Utf8Bytes::from_validated(data))
                } else {
                    Message::Binary(data)
                }
            }
        })
    }

    /// Ends the loan of the last event: its bytes are dropped.
    #[inline]
    pub(super) fn release_loan(&mut self) {
        match std::mem::replace(&mut self.loan, Loan::None) {
            Loan::None => {}
            Loan::Input => {
                let end = lent_frame(&self.input).1.end;
                self.input.advance(end);
            }
            Loan::Message | Loan::Close => self.message = None,
        }
    }
}

#[cfg(test)]
#[path = "lend_tests.rs"]
mod tests;
