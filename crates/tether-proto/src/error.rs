//! Errors: one variant per broken rule, each mapped to its close code.

use std::fmt;

use crate::close::CloseCode;
use crate::frame::OpCode;

/// The peer broke a rule of RFC 6455 or RFC 7692, or a configured limit.
///
/// Each variant maps to the close code the engine sends when it fails the connection
/// ([`ProtocolError::close_code`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An opcode reserved for future use (RFC 6455 §5.2).
    ReservedOpcode(u8),
    /// A 64-bit payload length with its top bit set (RFC 6455 §5.2).
    PayloadLengthTooLong,
    /// A control frame without FIN (RFC 6455 §5.5).
    FragmentedControlFrame,
    /// A control frame with more than 125 bytes of payload (RFC 6455 §5.5).
    ControlFrameTooLong(u64),
    /// RSV1, RSV2 or RSV3 set where no negotiated extension gives it a meaning (RFC 6455 §5.2).
    ReservedBitsSet,
    /// RSV1 set on a continuation or control frame (RFC 7692 §6.1).
    CompressedBitOnWrongFrame(OpCode),
    /// A client frame without a mask (RFC 6455 §5.1).
    UnmaskedFrame,
    /// A server frame with a mask (RFC 6455 §5.1).
    MaskedFrame,
    /// A continuation frame with no message to continue (RFC 6455 §5.4).
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished (RFC 6455 §5.4).
    ExpectedContinuation(OpCode),
    /// A text message that is not valid UTF-8 (RFC 6455 §8.1).
    InvalidUtf8,
    /// A close frame whose reason is not valid UTF-8 (RFC 6455 §5.5.1, §8.1).
    InvalidCloseReason,
    /// A close frame with a one-byte payload (RFC 6455 §5.5.1).
    InvalidClosePayload,
    /// A close code that must not appear on the wire (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// A compressed message that is not valid DEFLATE data (RFC 7692 §7.2.2).
    InvalidCompressedData(String),
    /// A frame larger than `Config::max_frame_size`.
    FrameTooLarge {
        /// The frame's payload length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message larger than `Config::max_message_size` (after decompression).
    MessageTooLarge {
        /// The configured limit.
        limit: usize,
    },
}

impl ProtocolError {
    /// The close code to fail the connection with (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCloseReason
            | ProtocolError::InvalidCompressedData(_) => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooLarge { .. } | ProtocolError::MessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::PayloadLengthTooLong => {
                f.write_str("payload length has its most significant bit set")
            }
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::ControlFrameTooLong(n) => {
                write!(f, "control frame payload of {n} bytes (limit 125)")
            }
            ProtocolError::ReservedBitsSet => {
                f.write_str("reserved bits set without a negotiated extension")
            }
            ProtocolError::CompressedBitOnWrongFrame(op) => write!(f, "RSV1 set on a {op} frame"),
            ProtocolError::UnmaskedFrame => f.write_str("client frame is not masked"),
            ProtocolError::MaskedFrame => f.write_str("server frame is masked"),
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message to continue")
            }
            ProtocolError::ExpectedContinuation(op) => {
                write!(f, "{op} frame inside a fragmented message")
            }
            ProtocolError::InvalidUtf8 => f.write_str("invalid UTF-8 in text"),
            ProtocolError::InvalidCloseReason => f.write_str("invalid UTF-8 in the close reason"),
            ProtocolError::InvalidClosePayload => f.write_str("close frame with a 1-byte payload"),
            ProtocolError::InvalidCloseCode(code) => {
                write!(f, "close code {code} is not allowed on the wire")
            }
            ProtocolError::InvalidCompressedData(msg) => {
                write!(f, "invalid compressed data: {msg}")
            }
            ProtocolError::FrameTooLarge { size, limit } => {
                write!(f, "frame of {size} bytes exceeds the limit of {limit}")
            }
            ProtocolError::MessageTooLarge { limit } => {
                write!(f, "message exceeds the limit of {limit} bytes")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a message could not be queued for sending.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame was sent or received: no more messages may be sent (RFC 6455 §5.5.1).
    Closed,
    /// The outbound queue holds `Config::max_outbound_buffer` bytes or more: write some out first.
    Full,
    /// A control frame payload over 125 bytes (RFC 6455 §5.5).
    ControlFrameTooLong(usize),
    /// A close code that must not be sent (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// A close reason over 123 bytes (RFC 6455 §5.5.1).
    CloseReasonTooLong(usize),
    /// A fragment size of zero was asked for.
    ZeroFragmentSize,
    /// A prepared message that does not fit this connection (see `PreparedMessage`).
    UnsuitablePrepared(&'static str),
    /// A data frame that does not fit the sequence of frames sent (RFC 6455 §5.4), with why.
    FrameOutOfSequence(&'static str),
    /// A compressed frame on a connection without permessage-deflate (RFC 7692 §6).
    CompressionNotNegotiated,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("the connection is closing or closed"),
            SendError::Full => f.write_str("the outbound queue is full"),
            SendError::ControlFrameTooLong(n) => {
                write!(f, "control frame payload of {n} bytes (limit 125)")
            }
            SendError::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
            SendError::CloseReasonTooLong(n) => write!(f, "close reason of {n} bytes (limit 123)"),
            SendError::ZeroFragmentSize => f.write_str("fragment size must be at least 1"),
            SendError::UnsuitablePrepared(why) => {
                write!(f, "prepared message does not fit this connection: {why}")
            }
            SendError::FrameOutOfSequence(why) => write!(f, "frame out of sequence: {why}"),
            SendError::CompressionNotNegotiated => {
                f.write_str("compressed frame without permessage-deflate")
            }
        }
    }
}

impl std::error::Error for SendError {}
