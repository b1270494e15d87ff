//! Messages framed once and sent as the same bytes on many server connections.

use bytes::{Bytes, BytesMut};

use super::send::frame_header;
use crate::deflate::{DeflateParams, PerMessageDeflate};
use crate::error::SendError;
use crate::frame::{MAX_HEADER_LEN, OpCode};
use crate::message::Message;
use crate::role::Role;

/// A data message framed once, to be sent as the same bytes on many server connections
/// (fan-out: one publish, thousands of subscribers, one encoding).
///
/// With [`PreparedMessage::with_compression`] it also carries a compressed frame, made once,
/// which is sent to every connection where it is valid: the server resets its compression
/// context after every message (`server_no_context_takeover`, RFC 7692 §7.1.1.1) and may use
/// the full 32 KiB window (`server_max_window_bits` 15). A message compressed without context
/// then decodes the same on every such connection. Other connections get the plain frame,
/// which is always valid (RFC 7692 §6: a message may be sent uncompressed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedMessage {
    pub(super) plain: Bytes,
    pub(super) compressed: Option<Bytes>,
}

impl PreparedMessage {
    /// Frames `msg` (text or binary) as one unmasked, uncompressed frame, as a server sends it.
    pub fn new(msg: &Message) -> Result<PreparedMessage, SendError> {
        let opcode = data_opcode(msg)?;
        Ok(PreparedMessage {
            plain: frame(opcode, false, msg.payload()),
            compressed: None,
        })
    }

    /// Frames `msg` plainly and, when it is at least `min_size` bytes, also compressed at
    /// `level` without context takeover.
    pub fn with_compression(
        msg: &Message,
        level: u32,
        min_size: usize,
    ) -> Result<PreparedMessage, SendError> {
        let opcode = data_opcode(msg)?;
        let payload = msg.payload();
        let compressed = (payload.len() >= min_size).then(|| {
            let params = DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 15,
                client_max_window_bits: 15,
            };
            let mut out = Vec::with_capacity(payload.len() / 2 + 64);
            PerMessageDeflate::new(Role::Server, params, level).compress(payload, &mut out);
            frame(opcode, true, &out)
        });
        Ok(PreparedMessage {
            plain: frame(opcode, false, payload),
            compressed,
        })
    }

    /// The plain (uncompressed) encoded frame.
    pub fn as_bytes(&self) -> &[u8] {
        &self.plain
    }

    /// The compressed encoded frame, if one was made.
    pub fn compressed_bytes(&self) -> Option<&[u8]> {
        self.compressed.as_deref()
    }

    /// Whether the shared compressed frame is valid on a connection with these parameters.
    pub(super) fn fits(params: &DeflateParams) -> bool {
        params.server_no_context_takeover && params.server_max_window_bits == 15
    }
}

fn data_opcode(msg: &Message) -> Result<OpCode, SendError> {
    match msg {
        Message::Text(_) => Ok(OpCode::Text),
        Message::Binary(_) => Ok(OpCode::Binary),
        _ => Err(SendError::UnsuitablePrepared(
            "only text and binary messages can be prepared",
        )),
    }
}

fn frame(opcode: OpCode, rsv1: bool, payload: &[u8]) -> Bytes {
    let header = frame_header(opcode, true, rsv1, None, payload.len());
    let mut buf = BytesMut::with_capacity(header.encoded_len() + payload.len());
    let mut head = [0; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    buf.extend_from_slice(&head[..n]);
    buf.extend_from_slice(payload);
    buf.freeze()
}
