//! The sending half: messages and control frames encoded into the outbound queue.

use bytes::Bytes;

use super::{Connection, PreparedMessage, State};
use crate::close::CloseFrame;
use crate::error::SendError;
use crate::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use crate::mask::apply_mask;
use crate::message::Message;
use crate::role::Role;

/// Unmasked payloads at least this long are queued by reference instead of copied.
const SHARE_THRESHOLD: usize = 2048;

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
            Message::Text(text) => self.send_data(OpCode::Text, text.into(), options),
            Message::Binary(data) => self.send_data(OpCode::Binary, data, options),
            Message::Ping(data) => self.send_control(OpCode::Ping, &data),
            Message::Pong(data) => self.send_control(OpCode::Pong, &data),
            Message::Close(frame) => self.close(frame),
        }
    }

    /// Starts the closing handshake (RFC 6455 §7.1.2): queues a close frame and waits for the
    /// peer's. `None` sends a close frame without a status code.
    pub fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        let payload = match &frame {
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
        self.state = State::CloseSent;
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
        self.check_data_allowed()?;
        self.check_no_fragments_in_progress()?;
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

    pub(super) fn check_data_allowed(&self) -> Result<(), SendError> {
        if self.state != State::Open {
            return Err(SendError::Closed);
        }
        if self.outbound.len() >= self.config.max_outbound_buffer {
            return Err(SendError::Full);
        }
        Ok(())
    }

    /// RFC 6455 §5.4: a whole message cannot go between the frames of one sent with
    /// [`Connection::send_frame`].
    fn check_no_fragments_in_progress(&self) -> Result<(), SendError> {
        if self.sending.is_some() {
            return Err(SendError::FrameOutOfSequence(
                "a message starts before the previous one ended",
            ));
        }
        Ok(())
    }

    fn send_data(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), SendError> {
        self.check_data_allowed()?;
        self.check_no_fragments_in_progress()?;
        if options.fragment_size == Some(0) {
            return Err(SendError::ZeroFragmentSize);
        }
        let min_size = self
            .config
            .deflate
            .as_ref()
            .map_or(0, |d| d.min_compress_size);
        self.data_exchanged = true;
        let payload = match &mut self.deflate {
            // With frame streaming, the compression context belongs to the peer whose
            // compressed frames cross this leg: whole messages go uncompressed.
            Some(deflate) if options.compress && payload.len() >= min_size && !self.streaming => {
                let mut out = Vec::with_capacity(payload.len() / 2 + 64);
                deflate.compress(&payload, &mut out);
                Some(Bytes::from(out))
            }
            _ => None,
        }
        .map_or((payload, false), |compressed| (compressed, true));
        let (payload, compressed) = payload;
        let size = options.fragment_size.unwrap_or(usize::MAX).max(1);
        if payload.len() <= size {
            self.queue_frame(opcode, true, compressed, payload);
            return Ok(());
        }
        // RFC 6455 §5.4: the first fragment carries the opcode, the rest are continuations;
        // RFC 7692 §6.1: RSV1 is set on the first fragment only.
        let mut offset = 0;
        while offset < payload.len() {
            let end = (offset + size).min(payload.len());
            let first = offset == 0;
            let op = if first { opcode } else { OpCode::Continuation };
            self.queue_frame(
                op,
                end == payload.len(),
                compressed && first,
                payload.slice(offset..end),
            );
            offset = end;
        }
        Ok(())
    }

    fn send_control(&mut self, opcode: OpCode, payload: &[u8]) -> Result<(), SendError> {
        if self.state != State::Open {
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

    pub(super) fn queue_frame(&mut self, opcode: OpCode, fin: bool, rsv1: bool, payload: Bytes) {
        if self.role == Role::Server && payload.len() >= SHARE_THRESHOLD {
            let header = frame_header(opcode, fin, rsv1, None, payload.len());
            let mut head = [0; MAX_HEADER_LEN];
            let n = header.encode(&mut head);
            self.outbound.tail().extend_from_slice(&head[..n]);
            self.outbound.commit(n);
            self.outbound.push_shared(payload);
        } else {
            self.encode_frame(opcode, fin, rsv1, &payload);
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
