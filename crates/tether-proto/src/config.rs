//! Limits and settings of one connection, in one validated type.

use std::fmt;
use std::time::Duration;

use crate::deflate::DeflateConfig;

/// Limits and settings for one WebSocket connection, both roles.
///
/// Every field has a safe default (see [`Config::default`]); every limit bounds memory that a
/// peer could otherwise make this endpoint hold. Check a hand-built value with
/// [`Config::validate`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Largest payload of one received frame, in bytes. Default 16 MiB. A larger frame fails
    /// the connection with close code 1009 before any of its payload is buffered.
    pub max_frame_size: usize,
    /// Largest received message (all fragments, after decompression), in bytes. Default
    /// 16 MiB. Bounds the reassembly buffer; a larger message fails with close code 1009.
    pub max_message_size: usize,
    /// Largest opening handshake (request or response head), in bytes. Default 16 KiB.
    /// A larger head is refused with HTTP 431.
    pub max_handshake_size: usize,
    /// Most header lines in the opening handshake. Default 64; more is refused with HTTP 431.
    pub max_headers: usize,
    /// Most bytes queued for sending before [`crate::Connection::send`] refuses more with
    /// [`crate::SendError::Full`]. Default 4 MiB. Control frames the engine answers on its own
    /// (pong, close) are always queued; the driver applies backpressure on this limit.
    pub max_outbound_buffer: usize,
    /// How long to wait for the peer's close frame (and, as a server, for the TCP close) after
    /// sending ours. Default 5 s.
    pub close_timeout: Duration,
    /// Answer every ping with a pong carrying the same payload (RFC 6455 §5.5.2). Default `true`.
    pub auto_pong: bool,
    /// permessage-deflate to offer (client) or accept (server); `None` disables it. Default
    /// `Some(DeflateConfig::default())`.
    pub deflate: Option<DeflateConfig>,
    /// Accept unmasked frames from a client (server role) or masked frames from a server
    /// (client role). Default `false`: RFC 6455 §5.1 requires failing the connection.
    pub dangerous_accept_wrong_masking: bool,
    /// When the peer breaks a rule, leave sending the close frame to the application instead
    /// of queuing it at once. Default `false`.
    ///
    /// [`crate::Connection::poll_event`] still returns the error and the engine stops reading
    /// at once, but the connection stays [`crate::State::Open`] for sending until the
    /// application calls [`crate::Connection::close`], which then fails the connection
    /// (RFC 6455 §7.1.7: the close frame goes out, nothing more is awaited). This is for
    /// intermediaries: a proxy first delivers what the other side sent in answer to the
    /// messages before the violation, then the close with the error's code.
    pub deferred_failure_close: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            max_handshake_size: 16 << 10,
            max_headers: 64,
            max_outbound_buffer: 4 << 20,
            close_timeout: Duration::from_secs(5),
            auto_pong: true,
            deflate: Some(DeflateConfig::default()),
            dangerous_accept_wrong_masking: false,
            deferred_failure_close: false,
        }
    }
}

/// A [`Config`] value that cannot work, naming the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending field, e.g. `"deflate.server_max_window_bits"`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid setting `{}`: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks that every field is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn err(field: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError {
                field,
                problem: problem.into(),
            })
        }
        if self.max_frame_size == 0 {
            return err("max_frame_size", "must be at least 1");
        }
        if self.max_message_size == 0 {
            return err("max_message_size", "must be at least 1");
        }
        if self.max_handshake_size < 256 {
            return err("max_handshake_size", "must be at least 256 bytes");
        }
        if self.max_headers < 8 {
            return err("max_headers", "must be at least 8");
        }
        if self.max_outbound_buffer == 0 {
            return err("max_outbound_buffer", "must be at least 1");
        }
        if let Some(d) = &self.deflate {
            if d.compression_level > 9 {
                return err("deflate.compression_level", "must be 0-9");
            }
            if !(8..=15).contains(&d.server_max_window_bits) {
                return err("deflate.server_max_window_bits", "must be 8-15");
            }
            if !(8..=15).contains(&d.client_max_window_bits) {
                return err("deflate.client_max_window_bits", "must be 8-15");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn window_bits_out_of_range_names_the_field() {
        let mut c = Config::default();
        c.deflate.as_mut().unwrap().client_max_window_bits = 16;
        assert_eq!(
            c.validate().unwrap_err().field,
            "deflate.client_max_window_bits"
        );
    }

    #[test]
    fn zero_limits_are_refused() {
        let c = Config {
            max_message_size: 0,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "max_message_size");
    }
}
