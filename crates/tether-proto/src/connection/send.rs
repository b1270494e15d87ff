//! The sending half: messages and control frames encoded into the outbound queue.

use bytes::Bytes;

use super::{Connection, MaskKeys, PreparedMessage, State};
use crate::close::CloseFrame;
use crate::config::Config;
use crate::deflate::PerMessageDeflate;
use crate::error::SendError;
use crate::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::outbound::Outbound;
use crate::role::Role;

/// A server queues an owned payload ([`Bytes`]) at least this long by reference, without
/// copying it; shorter payloads, and every payload a client sends (it masks them), are
/// copied into the outbound buffer.
pub const SHARE_THRESHOLD: usize = 2048;

/// First capacity of an empty outbound buffer: the replies to one read of small messages fit
/// without a reallocation.
const MIN_TAIL: usize = 4096;

/// How to send one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendOptions {
    /// Compress when permessage-deflate is in use and the message is at least
    /// `DeflateConfig::min_compress_size` long. `false` sends this message uncompressed
    /// (RFC 7692 §6: RSV1 clear). Default `true`.
    pub compress: bool,
    /// Split the message into frames of at most this many payload bytes (RFC 6455 §5.4).
    /// Default `None`: one frame.
    pub fragment_size: Option<usize>,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            compress: true,
            fragment_size: None,
        }
    }
}

impl SendOptions {
    /// Options with compression off for this message.
    pub fn uncompressed() -> Self {
        SendOptions {
            compress: false,
            ..Self::default()
        }
    }

    /// Options that fragment the message into frames of at most `size` payload bytes.
    pub fn fragmented(size: usize) -> Self {
        SendOptions {
            fragment_size: Some(size),
            ..Self::default()
        }
    }
}

/// The header of a frame we send; RSV2 and RSV3 are never set (RFC 6455 §5.2).
pub(super) fn frame_header(
    opcode: OpCode,
    fin: bool,
    rsv1: bool,
    mask: Option<[u8; 4]>,
    len: usize,
) -> FrameHeader {
    FrameHeader {
        fin,
        rsv1,
        rsv2: false,
        rsv3: false,
        opcode,
        mask,
        payload_len: len as u64,
    }
}

/// The sending side of a [`Connection`], borrowed apart from what it receives: it queues
/// messages while a received message is lent ([`Connection::for_each_ref`]), so a reply can
/// be made from the lent bytes without copying them out first.
///
/// It queues as [`Connection::send_with`] does, with the same checks and errors.
pub struct Sender<'a> {
    pub(super) role: Role,
    pub(super) streaming: bool,
    /// A message sent frame by frame is unfinished.
    pub(super) sending: bool,
    pub(super) config: &'a Config,
    pub(super) state: &'a mut State,
    pub(super) data_exchanged: &'a mut bool,
    pub(super) deflate: Option<&'a mut PerMessageDeflate>,
    pub(super) mask_keys: Option<&'a mut MaskKeys>,
    pub(super) outbound: &'a mut Outbound,
}

/// A [`Sender`] over a connection's fields. A macro rather than a method, so that a function
/// can also borrow the fields it leaves out (the received bytes a handler is lent).
macro_rules! sender {
    ($conn:expr) => {
        $crate::connection::send::Sender {
            role: $conn.role,
            streaming: $conn.streaming,
            sending: $conn.sending.is_some(),
            config: &$conn.config,
            state: &mut $conn.state,
            data_exchanged: &mut $conn.data_exchanged,
            deflate: $conn.deflate.as_deref_mut(),
            mask_keys: $conn.mask_keys.as_mut(),
            outbound: &mut $conn.outbound,
        }
    };
}
pub(super) use sender;

/// A payload to send: owned (a large one is then queued without a copy) or borrowed.
enum Payload<'p> {
    Owned(Bytes),
    Borrowed(&'p [u8]),
}

impl Payload<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Owned(b) => b,
            Payload::Borrowed(b) => b,
        }
    }
}

impl Sender<'_> {
    /// Queues a message (see [`Connection::send`]).
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.send_with(msg, SendOptions::default())
    }

    /// Queues a message with explicit options (see [`Connection::send_with`]).
    pub fn send_with(&mut self, msg: Message, options: SendOptions) -> Result<(), SendError> {
        match msg {
            Message::Text(text) => {
                self.send_data(OpCode::Text, Payload::Owned(text.into()), options)
            }
            Message::Binary(data) => self.send_data(OpCode::Binary, Payload::Owned(data), options),
            Message::Ping(data) => self.send_control(OpCode::Ping, &data),
            Message::Pong(data) => self.send_control(OpCode::Pong, &data),
            Message::Close(frame) => self.close(frame.as_ref()),
        }
    }

    /// Queues a text message, copied (or compressed) from `text`.
    #[inline]
    pub fn send_text(&mut self, text: &str) -> Result<(), SendError> {
        let payload = Payload::Borrowed(text.as_bytes());
        self.send_data(OpCode::Text, payload, SendOptions::default())
    }

    /// Queues a binary message, copied (or compressed) from `data`.
    #[inline]
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), SendError> {
        let payload = Payload::Borrowed(data);
        self.send_data(OpCode::Binary, payload, SendOptions::default())
    }

    /// Queues a borrowed message: the same kind with the same payload, copied. A close
    /// starts the closing handshake, as [`Connection::close`] does.
    #[inline]
    pub fn send_ref(&mut self, msg: super::MessageRef<'_>) -> Result<(), SendError> {
        use super::MessageRef;
        match msg {
            MessageRef::Text(text) => self.send_text(text),
            MessageRef::Binary(data) => self.send_binary(data),
            MessageRef::Ping(data) => self.send_control(OpCode::Ping, data),
            MessageRef::Pong(data) => self.send_control(OpCode::Pong, data),
            MessageRef::Close(frame) => self.close(frame.map(|f| f.to_close_frame()).as_ref()),
        }
    }

    /// Bytes queued for the transport.
    pub fn pending_transmit(&self) -> usize {
        self.outbound.len()
    }

    /// Queues a close frame and moves to [`State::CloseSent`] (RFC 6455 §7.1.2).
    fn close(&mut self, frame: Option<&CloseFrame>) -> Result<(), SendError> {
        if *self.state != State::Open {
            return Err(SendError::Closed);
        }
        let payload = match frame {
            Some(f) => {
                // RFC 6455 §7.4: 1004-1006, 1015 and unassigned codes are never sent.
                if !f.code.is_allowed_on_wire() {
                    return Err(SendError::InvalidCloseCode(f.code.0));
                }
                if f.reason.len() > CloseFrame::MAX_REASON_LEN {
                    return Err(SendError::CloseReasonTooLong(f.reason.len()));
                }
                f.to_payload()
            }
            None => Bytes::new(),
        };
        self.queue_control(OpCode::Close, &payload);
        *self.state = State::CloseSent;
        Ok(())
    }

    pub(super) fn check_data_allowed(&self) -> Result<(), SendError> {
        if *self.state != State::Open {
            return Err(SendError::Closed);
        }
        if self.outbound.len() >= self.config.max_outbound_buffer {
            return Err(SendError::Full);
        }
        Ok(())
    }

    /// RFC 6455 §5.4: a whole message cannot go between the frames of one sent with
    /// [`Connection::send_frame`].
    pub(super) fn check_no_fragments_in_progress(&self) -> Result<(), SendError> {
        if self.sending {
            return Err(SendError::FrameOutOfSequence(
                "a message starts before the previous one ended",
            ));
        }
        Ok(())
    }

    fn send_data(
        &mut self,
        opcode: OpCode,
        payload: Payload<'_>,
        options: SendOptions,
    ) -> Result<(), SendError> {
        self.check_data_allowed()?;
        self.check_no_fragments_in_progress()?;
        if self.deflate.is_none() && options.fragment_size.is_none() {
            // The common case: one frame, as it is.
            *self.data_exchanged = true;
            self.queue_frame(opcode, true, false, payload);
            return Ok(());
        }
        if options.fragment_size == Some(0) {
            return Err(SendError::ZeroFragmentSize);
        }
        let min_size = self
            .config
            .deflate
            .as_ref()
            .map_or(0, |d| d.min_compress_size);
        *self.data_exchanged = true;
        let len = payload.as_slice().len();
        let (payload, compressed) = match &mut self.deflate {
            // With frame streaming, the compression context belongs to the peer whose
            // compressed frames cross this leg: whole messages go uncompressed.
            Some(deflate) if options.compress && len >= min_size && !self.streaming => {
                let mut out = Vec::with_capacity(len / 2 + 64);
                deflate.compress(payload.as_slice(), &mut out);
                (Payload::Owned(Bytes::from(out)), true)
            }
            _ => (payload, false),
        };
        let size = options.fragment_size.unwrap_or(usize::MAX).max(1);
        let total = payload.as_slice().len();
        if total <= size {
            self.queue_frame(opcode, true, compressed, payload);
            return Ok(());
        }
        // RFC 6455 §5.4: the first fragment carries the opcode, the rest are continuations;
        // RFC 7692 §6.1: RSV1 is set on the first fragment only.
        let mut offset = 0;
        while offset < total {
            let end = (offset + size).min(total);
            let first = offset == 0;
            let op = if first { opcode } else { OpCode::Continuation };
            let part = match &payload {
                Payload::Owned(b) => Payload::Owned(b.slice(offset..end)),
                Payload::Borrowed(b) => Payload::Borrowed(&b[offset..end]),
            };
            self.queue_frame(op, end == total, compressed && first, part);
            offset = end;
        }
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if *self.state != State::Open {
            return Err(SendError::Closed);
        }
        // RFC 6455 §5.5: "All control frames MUST have a payload length of 125 bytes or less".
        if payload.len() > 125 {
            return Err(SendError::ControlFrameTooLong(payload.len()));
        }
        self.queue_control(opcode, payload);
        Ok(())
    }

    /// Queues a control frame the engine itself decided to send (pong, close).
    pub(super) fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
        debug_assert!(payload.len() <= 125);
        self.encode_frame(opcode, true, false, payload);
    }

    /// Queues one frame of an owned payload (see [`SHARE_THRESHOLD`]).
    pub(super) fn queue_owned_frame(
        &mut self,
        opcode: OpCode,
        fin: bool,
        rsv1: bool,
        payload: Bytes,
    ) {
        self.queue_frame(opcode, fin, rsv1, Payload::Owned(payload));
    }

    fn queue_frame(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Payload<'_>) {
        match payload {
            Payload::Owned(payload)
                if self.role == Role::Server && payload.len() >= SHARE_THRESHOLD =>
            {
                let header = frame_header(opcode, fin, rsv1, None, payload.len());
                let mut head = [0; MAX_HEADER_LEN];
                let n = header.encode(&mut head);
                self.outbound.tail().extend_from_slice(&head[..n]);
                self.outbound.commit(n);
                self.outbound.push_shared(payload);
            }
            payload => self.encode_frame(opcode, fin, rsv1, payload.as_slice()),
        }
    }

    /// Copies a frame into the outbound buffer, masking it as a client (RFC 6455 §5.3: a
    /// fresh key for every frame).
    fn encode_frame(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8]) {
        let mask = self.mask_keys.as_mut().map(|keys| keys());
        let header = frame_header(opcode, fin, rsv1, mask, payload.len());
        let mut head = [0; MAX_HEADER_LEN];
        let n = header.encode(&mut head);
        let tail = self.outbound.tail();
        // A fresh buffer starts with room for a batch of small frames (the replies to one
        // read), so it does not grow by reallocation frame after frame. It is released
        // once written (`Outbound::advance`).
        let want = n + payload.len();
        tail.reserve(if tail.capacity() == 0 {
            want.max(MIN_TAIL)
        } else {
            want
        });
        tail.extend_from_slice(&head[..n]);
        let start = tail.len();
        tail.extend_from_slice(payload);
        if let Some(key) = mask {
            apply_mask(&mut tail[start..], key, 0);
        }
        self.outbound.commit(n + payload.len());
    }
}

impl Connection {
    /// Queues a message: text or binary as one frame (compressed when negotiated), or a ping,
    /// pong or close. Same as [`send_with`](Self::send_with) with default options.
    pub fn send(&mut self, msg: Message) -> Result<(), SendError> {
        self.send_with(msg, SendOptions::default())
    }

    /// Queues a message with explicit options.
    ///
    /// Data messages are refused with [`SendError::Full`] while `max_outbound_buffer` bytes or
    /// more are queued, and with [`SendError::Closed`] once a close frame was sent or received
    /// (RFC 6455 §5.5.1: no data frames after a close).
    pub fn send_with(&mut self, msg: Message, options: SendOptions) -> Result<(), SendError> {
        match msg {
            Message::Close(frame) => self.close(frame),
            msg => sender!(self).send_with(msg, options),
        }
    }

    /// Starts the closing handshake (RFC 6455 §7.1.2): queues a close frame and waits for the
    /// peer's. `None` sends a close frame without a status code.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        self.release_loan();
        sender!(self).close(frame.as_ref())?;
        if self.failed {
            // The close of a deferred failure (Config::deferred_failure_close): RFC 6455
            // §7.1.7, no closing handshake is awaited from a peer that broke the protocol.
            self.enter_closed();
        }
        Ok(())
    }

    /// Queues a message prepared once for many connections. Only for servers (clients must
    /// mask every frame with their own key). The compressed frame is used where it is valid
    /// for this connection (see [`PreparedMessage::with_compression`]), else the plain one.
    pub fn send_prepared(&mut self, msg: &PreparedMessage) -> Result<(), SendError> {
        if self.role != Role::Server {
            return Err(SendError::UnsuitablePrepared(
                "a client must mask its frames",
            ));
        }
        let sender = sender!(self);
        sender.check_data_allowed()?;
        sender.check_no_fragments_in_progress()?;
        self.data_exchanged = true;
        let frame = match (&msg.compressed, self.deflate_params) {
            (Some(compressed), Some(params))
                if PreparedMessage::fits(&params) && !self.streaming =>
            {
                compressed
            }
            _ => &msg.plain,
        };
        self.outbound.push_shared(frame.clone());
        Ok(())
    }

    /// Queues a control frame the engine itself decided to send (pong, close).
    pub(super) fn queue_control(&mut self, opcode: OpCode, payload: &[u8]) {
        sender!(self).queue_control(opcode, payload);
    }
}
