//! permessage-deflate (RFC 7692): negotiation and the per-connection codec.
//!
//! [`DeflateConfig`] is what an endpoint offers or accepts in the opening handshake and
//! [`DeflateParams`] what both ends agreed on (RFC 7692 §7.1). [`PerMessageDeflate`] is the
//! per-connection codec built from the agreed parameters (RFC 7692 §7.2): it compresses whole
//! outgoing message payloads and inflates incoming ones chunk by chunk, within a size limit, and
//! reports failures as [`DeflateError`].

mod codec;

pub use codec::{DeflateError, PerMessageDeflate};

/// What this endpoint offers (client) or accepts (server) for permessage-deflate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// zlib compression level, 0-9. Default 1 (fast; WebSocket messages are small).
    pub compression_level: u32,
    /// Ask (client) or require (server) that the server resets its compression context after
    /// every message (RFC 7692 §7.1.1.1). Default `false`.
    pub server_no_context_takeover: bool,
    /// Ask (server) or promise (client) that the client resets its compression context after
    /// every message (RFC 7692 §7.1.1.2). Default `false`.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window (base-2 log, 8-15) the server may use (RFC 7692 §7.1.2.1). Default 15.
    pub server_max_window_bits: u8,
    /// Largest LZ77 window (base-2 log, 8-15) the client may use (RFC 7692 §7.1.2.2). Default 15.
    pub client_max_window_bits: u8,
    /// Messages shorter than this many bytes are sent uncompressed (RSV1 clear). Default 64.
    pub min_compress_size: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            compression_level: 1,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            min_compress_size: 64,
        }
    }
}

/// The parameters both ends agreed on in the opening handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// The server's compressor window (base-2 log, 8-15).
    pub server_max_window_bits: u8,
    /// The client's compressor window (base-2 log, 8-15).
    pub client_max_window_bits: u8,
}
