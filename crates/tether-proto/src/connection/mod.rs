//! The connection engine: frames in, events out; commands in, bytes out.

mod lend;
mod prepared;
mod recv;
mod send;
mod stream;

use std::fmt;
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::config::Config;
use crate::deflate::{DeflateParams, PerMessageDeflate};
use crate::frame::FrameHeader;
use crate::outbound::Outbound;
use crate::role::Role;

pub use lend::{CloseFrameRef, MessageRef};
pub use prepared::PreparedMessage;
pub use send::{SHARE_THRESHOLD, SendOptions, Sender};
pub use stream::{DataFrame, DataKind, Incoming};

/// Where a connection is in its life (RFC 6455 §7).
///
/// ```text
///            close() sent              peer's close received
///   Open ───────────────▶ CloseSent ─────────────────────────▶ Closed
///     │                      │  close timeout                   ▲
///     │                      └──────────────────────────────────┤
///     │  peer's close received (reply queued), protocol error   │
///     │  (close with its code queued), transport EOF            │
///     └─────────────────────────────────────────────────────────┘
/// ```
/// In `Closed` the engine sends and accepts nothing more; the transport is closed once the
/// queued bytes are written ([`Connection::should_close_transport`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's (RFC 6455 §5.5.1); incoming messages are
    /// still delivered.
    CloseSent,
    /// The closing handshake is done, timed out, or the connection failed.
    Closed,
}

/// A source of masking keys for a client (RFC 6455 §5.3: "unpredictable", from "a strong
/// source of entropy"). The engine has no random number generator of its own.
pub type MaskKeys = Box<dyn FnMut() -> [u8; 4] + Send>;

/// A sans-I/O WebSocket connection, after the opening handshake.
///
/// The caller owns the transport and the clock. Inputs: [`receive`](Self::receive) with bytes
/// read (or [`receive_into`](Self::receive_into) for a large frame, when
/// [`direct_read_len`](Self::direct_read_len) asks), [`receive_eof`](Self::receive_eof),
/// [`handle_timeout`](Self::handle_timeout).
/// Commands: [`send`](Self::send), [`close`](Self::close). Outputs, to poll after every input
/// or command: [`poll_event`](Self::poll_event) until it returns `None`, then the bytes to
/// write ([`io_slices`](Self::io_slices) and [`advance_transmit`](Self::advance_transmit)),
/// then [`poll_timeout`](Self::poll_timeout) and
/// [`should_close_transport`](Self::should_close_transport).
pub struct Connection {
    role: Role,
    /// Shared: connections accepted with one configuration point at one copy of it.
    config: Arc<Config>,
    state: State,
    /// Boxed: most connections do not compress, and an idle one should stay small.
    deflate: Option<Box<PerMessageDeflate>>,
    /// What the handshake negotiated for permessage-deflate.
    deflate_params: Option<DeflateParams>,
    mask_keys: Option<MaskKeys>,
    /// Bytes received and not parsed yet: at most one read plus a partial header.
    input: BytesMut,
    /// The data frame whose payload is arriving, if any. Boxed, as is `message`: a connection
    /// between messages (most idle ones) pays one pointer for each.
    frame: Option<Box<recv::IncomingFrame>>,
    /// The message being reassembled, if any.
    message: Option<Box<recv::IncomingMessage>>,
    outbound: Outbound,
    /// Data frames are passed on one by one instead of reassembled ([`Connection::stream_frames`]).
    streaming: bool,
    /// A data frame was sent or received: too late to switch to frame streaming.
    data_exchanged: bool,
    /// The message whose frames are being sent with [`Connection::send_frame`], if any.
    sending: Option<stream::OutgoingMessage>,
    failed: bool,
    eof: bool,
    timed_out: bool,
    close_deadline: Option<Instant>,
    /// Header plus payload of the last data frame in [`DIRECT_READ_UNIT`]s, rounded up, when
    /// it was large enough that the next one is worth reading straight into `input`
    /// ([`Connection::direct_read_len`]); 0 otherwise. One byte, which fits in the padding
    /// after the flags: a wider field made every idle connection's task 128 bytes larger.
    last_large_frame: u8,
    /// The event a handler broke on, if it is still lent ([`Connection::for_each_ref`]).
    loan: Loan,
}

/// Where the event lent by the last poll is (every poll ends the loan first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loan {
    /// Nothing is lent.
    None,
    /// A whole frame at the front of `input`, unmasked and checked: a message of one frame,
    /// a ping or a pong.
    Input,
    /// A reassembled message, complete and checked, in `message`.
    Message,
    /// A close frame's payload, checked, in `message`.
    Close,
}

/// Data frames this large or larger are read straight into the engine's input buffer
/// ([`Connection::direct_read_len`]). Below it, the copy out of a shared read buffer costs
/// less than the extra reads that a buffer sized to one frame can take.
pub const DIRECT_READ_MIN: usize = 32 << 10;

/// The most one direct read asks for; a larger frame takes several, each at most as large
/// as what has arrived of it so far.
pub const DIRECT_READ_MAX: usize = 1 << 20;

/// The unit in which the last large frame's size is kept: [`DIRECT_READ_MAX`] is 256 of them.
const DIRECT_READ_UNIT: usize = DIRECT_READ_MAX / 256;

/// Room asked for past the end of the expected frame, so that a read of exactly one frame
/// comes back short of the buffer and the transport knows the socket is drained.
const DIRECT_READ_SLACK: usize = 4 << 10;

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("compression", &self.deflate.is_some())
            .field("buffered_input", &self.input.len())
            .field("queued_output", &self.outbound.len())
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A server-side connection. `deflate` is what the handshake negotiated. `config` is a
    /// [`Config`] or an `Arc<Config>` shared by many connections (an idle connection then
    /// holds a pointer to it, not a copy).
    pub fn server(config: impl Into<Arc<Config>>, deflate: Option<DeflateParams>) -> Connection {
        Connection::new(Role::Server, config.into(), deflate, None)
    }

    /// A client-side connection that masks each frame with a fresh key from `mask_keys`.
    /// `config` as for [`Connection::server`].
    pub fn client(
        config: impl Into<Arc<Config>>,
        deflate: Option<DeflateParams>,
        mask_keys: impl FnMut() -> [u8; 4] + Send + 'static,
    ) -> Connection {
        Connection::new(
            Role::Client,
            config.into(),
            deflate,
            Some(Box::new(mask_keys)),
        )
    }

    fn new(
        role: Role,
        config: Arc<Config>,
        deflate: Option<DeflateParams>,
        mask_keys: Option<MaskKeys>,
    ) -> Connection {
        let level = config.deflate.as_ref().map_or(1, |d| d.compression_level);
        Connection {
            role,
            deflate: deflate.map(|params| Box::new(PerMessageDeflate::new(role, params, level))),
            deflate_params: deflate,
            config,
            state: State::Open,
            mask_keys,
            input: BytesMut::new(),
            frame: None,
            message: None,
            outbound: Outbound::default(),
            streaming: false,
            data_exchanged: false,
            sending: None,
            failed: false,
            eof: false,
            timed_out: false,
            close_deadline: None,
            last_large_frame: 0,
            loan: Loan::None,
        }
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The lifecycle state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether permessage-deflate is in use.
    pub fn is_compressing(&self) -> bool {
        self.deflate.is_some()
    }

    /// The permessage-deflate parameters the handshake agreed on, if any.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.deflate_params
    }

    /// Whether the connection failed because the peer broke the protocol (with
    /// `Config::deferred_failure_close`, also while the close frame is still to be sent).
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Feeds bytes read from the transport. Parsing happens in [`poll_event`](Self::poll_event),
    /// so call it until it returns `None` before feeding more: buffered input is then bounded
    /// by one read, or by one frame (`max_frame_size`) while a single-frame binary message is
    /// arriving. Bytes after the connection closed are ignored (RFC 6455 §5.5.1).
    pub fn receive(&mut self, data: &[u8]) {
        self.release_loan();
        if self.state == State::Closed || self.failed || data.is_empty() {
            return;
        }
        if self.input.is_empty() {
            // Size the fresh buffer for the data frame that starts here, up to twice what
            // arrived: a frame split over a few reads then lands in one allocation, with no
            // copy when it grows. A declared length alone reserves no more than that.
            let frame = match FrameHeader::parse(data) {
                Ok(Some((h, header_len))) if !h.opcode.is_control() => {
                    usize::try_from(h.payload_len)
                        .map_or(usize::MAX, |l| l.saturating_add(header_len))
                }
                _ => 0,
            };
            self.input
                .reserve(frame.min(data.len().saturating_mul(2)).max(data.len()));
        }
        self.input.extend_from_slice(data);
    }

    /// How many bytes to read straight into the engine's own buffer with
    /// [`receive_into`](Self::receive_into), when that saves copying a large frame out of a
    /// read buffer shared between connections: while a data frame of at least
    /// [`DIRECT_READ_MIN`] bytes is arriving, or when nothing is buffered and the last data
    /// frame was that large (the next one likely is too). `None`: read into a buffer of your
    /// own and pass the bytes to [`receive`](Self::receive), so that an idle connection holds
    /// no buffer.
    ///
    /// The length is bounded by what the peer really sent: at most as much again as has
    /// arrived of the frame (or as the last frame was), and [`DIRECT_READ_MAX`].
    pub fn direct_read_len(&self) -> Option<usize> {
        if self.state == State::Closed || self.failed || self.loan != Loan::None {
            return None;
        }
        let (rest, arrived) = if let Some(frame) = &self.frame {
            let remaining = usize::try_from(frame.remaining).unwrap_or(usize::MAX);
            let buffered = self.input.len();
            (remaining.saturating_sub(buffered), frame.offset + buffered)
        } else if self.input.is_empty() {
            let last = usize::from(self.last_large_frame) * DIRECT_READ_UNIT;
            (last, last)
        } else {
            match FrameHeader::parse(&self.input) {
                Ok(Some((h, header_len))) if !h.opcode.is_control() => {
                    let total = usize::try_from(h.payload_len)
                        .map_or(usize::MAX, |l| l.saturating_add(header_len));
                    (total.saturating_sub(self.input.len()), self.input.len())
                }
                _ => return None,
            }
        };
        if rest < DIRECT_READ_MIN {
            return None;
        }
        Some(
            rest.min(arrived.max(DIRECT_READ_MIN))
                .min(DIRECT_READ_MAX)
                .saturating_add(DIRECT_READ_SLACK),
        )
    }

    /// Lends the engine's input buffer to `read`, with room reserved for `len` more bytes and
    /// a limit of `len`, for a transport to read into: the same as [`receive`](Self::receive)
    /// of the bytes `read` appends, without copying them. `len` is what
    /// [`direct_read_len`](Self::direct_read_len) returned. `read` must only append: the
    /// bytes already in the buffer are input the engine has not parsed yet.
    pub fn receive_into<R>(
        &mut self,
        len: usize,
        read: impl FnOnce(&mut bytes::buf::Limit<&mut BytesMut>) -> R,
    ) -> R {
        use bytes::BufMut;
        self.release_loan();
        let before = self.input.len();
        self.input.reserve(len);
        let result = read(&mut (&mut self.input).limit(len));
        debug_assert!(self.input.len() >= before, "receive_into removed input");
        if self.state == State::Closed || self.failed {
            // RFC 6455 §5.5.1: nothing after the close is data.
            self.input.truncate(before);
        }
        if self.input.is_empty() {
            // Nothing arrived: release the buffer, as an idle connection holds none.
            self.input = BytesMut::new();
        }
        result
    }

    /// Remembers a data frame's size (header and payload) for
    /// [`direct_read_len`](Self::direct_read_len).
    fn note_data_frame(&mut self, header_len: usize, payload_len: usize) {
        let size = payload_len.saturating_add(header_len);
        self.last_large_frame = if size >= DIRECT_READ_MIN {
            u8::try_from(size.div_ceil(DIRECT_READ_UNIT)).unwrap_or(u8::MAX)
        } else {
            0
        };
    }

    /// Whether buffered input remains that [`poll_event`](Self::poll_event) has not turned into
    /// events yet (for a driver that limits work per wake-up).
    pub fn has_buffered_input(&self) -> bool {
        match self.loan {
            Loan::Input => self.input.len() > lend::lent_frame(&self.input).1.end,
            _ => !self.input.is_empty(),
        }
    }

    /// The transport reached end of stream. Returns whether the close was clean: both close
    /// frames exchanged before it (RFC 6455 §7.1.4); otherwise the closure is abnormal (1006).
    pub fn receive_eof(&mut self) -> bool {
        self.eof = true;
        let clean = self.state == State::Closed && !self.failed && !self.timed_out;
        self.enter_closed();
        clean
    }

    /// The deadline of the running timer, if any: waiting for the peer's close frame after
    /// ours, or (as a client) for the server to close the transport. The timer starts at the
    /// first call after the engine begins waiting, so call this after every input or command.
    pub fn poll_timeout(&mut self, now: Instant) -> Option<Instant> {
        let waiting = match self.state {
            State::CloseSent => true,
            // RFC 6455 §7.1.1: the server closes the TCP connection first; a client waits for it.
            State::Closed => {
                self.role == Role::Client && !self.eof && !self.failed && !self.timed_out
            }
            State::Open => false,
        };
        if !waiting {
            return None;
        }
        Some(
            *self
                .close_deadline
                .get_or_insert(now + self.config.close_timeout),
        )
    }

    /// Advances the engine's clock: past the deadline, stop waiting for the peer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.close_deadline.is_some_and(|d| now >= d) {
            self.timed_out = true;
            self.close_deadline = None;
            self.enter_closed();
        }
    }

    /// Whether the caller should now close the transport: the engine is closed, everything
    /// queued was written, and either this is the server (RFC 6455 §7.1.1: the server closes
    /// the TCP connection first), the connection failed, the peer already closed, or the
    /// close timeout ran out.
    pub fn should_close_transport(&self) -> bool {
        self.state == State::Closed
            && self.outbound.is_empty()
            && (self.role == Role::Server || self.failed || self.eof || self.timed_out)
    }

    /// Bytes queued for the transport.
    pub fn pending_transmit(&self) -> usize {
        self.outbound.len()
    }

    /// Fills `dst` with the queued bytes, in order, for one vectored write; returns how many
    /// slices were filled. Then call [`advance_transmit`](Self::advance_transmit) with the
    /// number of bytes the transport took.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        self.outbound.io_slices(dst)
    }

    /// The first queued chunk, for transports without vectored writes.
    pub fn transmit_chunk(&self) -> &[u8] {
        self.outbound.first_chunk()
    }

    /// Drops `n` queued bytes that the transport accepted.
    ///
    /// # Panics
    /// If `n` is more than [`pending_transmit`](Self::pending_transmit).
    pub fn advance_transmit(&mut self, n: usize) {
        self.outbound.advance(n);
    }

    fn enter_closed(&mut self) {
        self.state = State::Closed;
        self.loan = Loan::None;
        self.input = BytesMut::new();
        self.frame = None;
        self.message = None;
    }
}

#[cfg(test)]
mod tests;
