//! `[limits]`: what one connection, one client and the whole gateway may hold.

use std::time::Duration;

use serde::Deserialize;

use super::units;

/// Limits of the gateway. Sizes take a number of bytes or a string with a unit (`"16 MiB"`);
/// durations a string with a unit (`"10s"`, `"250ms"`) or whole seconds.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest received WebSocket message, after decompression; also the largest body of
    /// `POST /api/publish`. Default 16 MiB; bigger messages close the connection with 1009,
    /// bigger bodies get 413.
    #[serde(deserialize_with = "units::size")]
    pub max_message_size: usize,
    /// Largest received frame. Default 16 MiB.
    #[serde(deserialize_with = "units::size")]
    pub max_frame_size: usize,
    /// Bytes queued for one connection before sending waits. Default 4 MiB.
    #[serde(deserialize_with = "units::size")]
    pub max_outbound_buffer: usize,
    /// Largest opening handshake head (request line and headers). Default 16 KiB; larger
    /// gets 431.
    #[serde(deserialize_with = "units::size")]
    pub max_handshake_size: usize,
    /// Most header lines in a request. Default 64; more gets 431.
    pub max_headers: usize,
    /// Offer permessage-deflate (RFC 7692) to clients. Default `true`.
    pub compression: bool,
    /// Compress only messages of at least this many bytes. Default 64.
    #[serde(deserialize_with = "units::size")]
    pub min_compress_size: usize,
    /// Most WebSocket connections open at once. Default 10000; more get 503.
    pub max_connections: usize,
    /// Most WebSocket connections open at once from one client IP. Default 256; more get 503.
    pub max_connections_per_ip: usize,
    /// Most connections from one client IP that are not WebSockets (yet): TLS handshakes and
    /// request heads in progress, and idle HTTP keep-alive connections. Default 256; more are
    /// answered 503 (plain) or closed (TLS) at once.
    pub max_pending_per_ip: usize,
    /// Connections the kernel may hold accepted for each listener before the gateway takes
    /// them (`listen(2)`'s backlog; Linux caps it at `net.core.somaxconn`). Default 4096. A
    /// burst of connects past it overflows the queue: the kernel drops the client's last
    /// handshake packet and the client waits for retransmissions (1 s, 2 s, 4 s...).
    pub listen_backlog: u32,
    /// Time a new connection has to complete TLS and send a whole request head; also how
    /// long an idle HTTP keep-alive connection stays open. Default 10 s.
    #[serde(deserialize_with = "units::duration")]
    pub handshake_timeout: Duration,
    /// A WebSocket connection from which nothing (not even a pong) arrives for this long is
    /// closed with 1008. Default 60 s; `0` disables it and the keepalive pings.
    #[serde(deserialize_with = "units::duration")]
    pub idle_timeout: Duration,
    /// Ping a WebSocket connection after this long without incoming data. Default 20 s; `0`
    /// sends no pings (the idle timeout still applies).
    #[serde(deserialize_with = "units::duration")]
    pub keepalive_interval: Duration,
    /// How long to wait for the peer's close frame after sending ours. Default 5 s.
    #[serde(deserialize_with = "units::duration")]
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        let proto = tether::Config::default();
        Limits {
            max_message_size: proto.max_message_size,
            max_frame_size: proto.max_frame_size,
            max_outbound_buffer: proto.max_outbound_buffer,
            max_handshake_size: proto.max_handshake_size,
            max_headers: proto.max_headers,
            compression: true,
            min_compress_size: proto.deflate.as_ref().map_or(64, |d| d.min_compress_size),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_pending_per_ip: 256,
            listen_backlog: 4096,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(20),
            close_timeout: proto.close_timeout,
        }
    }
}

impl Limits {
    /// The per-connection settings of the WebSocket engine.
    pub fn connection_config(&self) -> tether::Config {
        let mut config = tether::Config::default();
        config.max_message_size = self.max_message_size;
        config.max_frame_size = self.max_frame_size;
        config.max_outbound_buffer = self.max_outbound_buffer;
        config.max_handshake_size = self.max_handshake_size;
        config.max_headers = self.max_headers;
        config.close_timeout = self.close_timeout;
        if self.compression {
            if let Some(deflate) = config.deflate.as_mut() {
                deflate.min_compress_size = self.min_compress_size;
            }
        } else {
            config.deflate = None;
        }
        config
    }

    /// The keepalive to set on each WebSocket: `(ping interval, idle timeout)`, or `None`.
    pub fn keepalive(&self) -> Option<(Duration, Duration)> {
        if self.idle_timeout.is_zero() {
            return None;
        }
        let interval = if self.keepalive_interval.is_zero() {
            self.idle_timeout
        } else {
            self.keepalive_interval
        };
        Some((interval, self.idle_timeout))
    }

    /// Checks the limits; errors name the key below `limits`.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Err(e) = self.connection_config().validate() {
            return Err((e.field, e.problem));
        }
        if self.max_connections == 0 {
            return Err(("max_connections", "must be at least 1".into()));
        }
        if self.max_connections_per_ip == 0 {
            return Err(("max_connections_per_ip", "must be at least 1".into()));
        }
        if self.max_pending_per_ip == 0 {
            return Err(("max_pending_per_ip", "must be at least 1".into()));
        }
        if self.listen_backlog == 0 {
            return Err(("listen_backlog", "must be at least 1".into()));
        }
        if self.handshake_timeout.is_zero() {
            return Err(("handshake_timeout", "must be longer than 0".into()));
        }
        if !self.idle_timeout.is_zero()
            && !self.keepalive_interval.is_zero()
            && self.keepalive_interval >= self.idle_timeout
        {
            return Err((
                "keepalive_interval",
                format!(
                    "{:?} must be shorter than idle_timeout ({:?}), or the peer gets no chance \
                     to answer the ping",
                    self.keepalive_interval, self.idle_timeout
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_engine_and_are_valid() {
        let limits = Limits::default();
        assert_eq!(limits.validate(), Ok(()));
        assert_eq!(limits.connection_config(), tether::Config::default());
        assert_eq!(
            limits.keepalive(),
            Some((Duration::from_secs(20), Duration::from_secs(60)))
        );
    }

    #[test]
    fn units_are_read() {
        let limits: Limits = toml::from_str(
            "max_message_size = \"1 MiB\"\nhandshake_timeout = \"250ms\"\nidle_timeout = 0",
        )
        .unwrap();
        assert_eq!(limits.max_message_size, 1 << 20);
        assert_eq!(limits.handshake_timeout, Duration::from_millis(250));
        assert_eq!(limits.keepalive(), None);
    }

    #[test]
    fn compression_off_removes_deflate() {
        let limits = Limits {
            compression: false,
            ..Limits::default()
        };
        assert_eq!(limits.connection_config().deflate, None);
    }

    #[test]
    fn keepalive_must_be_shorter_than_idle_timeout() {
        let limits = Limits {
            keepalive_interval: Duration::from_secs(60),
            ..Limits::default()
        };
        assert_eq!(limits.validate().unwrap_err().0, "keepalive_interval");
        let limits = Limits {
            max_handshake_size: 10,
            ..Limits::default()
        };
        assert_eq!(limits.validate().unwrap_err().0, "max_handshake_size");
    }

    #[test]
    fn a_zero_listen_backlog_is_refused() {
        let limits: Limits = toml::from_str("listen_backlog = 0").unwrap();
        assert_eq!(limits.validate().unwrap_err().0, "listen_backlog");
        let limits: Limits = toml::from_str("listen_backlog = 64").unwrap();
        assert_eq!(limits.listen_backlog, 64);
        assert_eq!(limits.validate(), Ok(()));
    }
}
