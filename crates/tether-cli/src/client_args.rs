//! The options every client command shares (`connect`, `pub`, `sub`): request headers,
//! origin, subprotocols, compression, limits, TLS and `-v`, and turning them into a
//! [`tether::ClientBuilder`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tether::{ClientBuilder, Config};

use crate::exit::Failure;

/// Connection options shared by the client commands.
#[derive(Clone, Debug, Args)]
pub struct ClientArgs {
    /// Adds a request header, e.g. -H 'Cookie: a=b' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Sends an Origin header, as a browser would.
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,
    /// Sends "Authorization: Bearer TOKEN".
    #[arg(
        long,
        env = "TETHER_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Does not offer permessage-deflate compression.
    #[arg(long)]
    pub no_compression: bool,
    /// Largest message accepted from the server, and longest line read from stdin, in bytes
    /// (K, M suffixes: 64K, 16M).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "16M")]
    pub max_message_size: usize,
    /// Sends a ping after SECS without traffic from the server; gives up after three such
    /// intervals without any.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub ping_interval: Option<Duration>,
    /// Gives up when the connection (DNS, TCP, TLS and the WebSocket handshake) is not open
    /// within SECS.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = "30")]
    pub connect_timeout: Duration,
    /// For wss: trusts the CA certificates in FILE (PEM) besides the system's web roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// For wss: accepts any certificate, unchecked (dangerous: anyone on the path can read
    /// and change the traffic). For test servers with throwaway certificates only.
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// Prints the handshake request and response and every frame's opcode, flags and length
    /// to stderr.
    #[arg(short, long)]
    pub verbose: bool,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected 'Name: value'"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(format!("{text:?}: {name:?} is not a header name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Parses `4096`, `64K`, `16M` (powers of 1024; `KiB`, `MiB` and `B` are accepted too).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a size such as 4096, 64K or 16M"))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("{text:?}: unknown unit {other:?} (use K, M or G)")),
    };
    let size = number
        .checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if size == 0 {
        return Err("a size must be at least 1 byte".into());
    }
    Ok(size)
}

/// Parses seconds, fractions allowed: `30`, `0.5`.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?}: expected seconds, e.g. 30 or 0.5"))?;
    if !(secs > 0.0 && secs < 1e9) {
        return Err(format!("{text:?}: must be more than 0 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl ClientArgs {
    /// The engine configuration: compression and the message size limit.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        if self.no_compression {
            config.deflate = None;
        }
        config.max_message_size = self.max_message_size;
        config.max_frame_size = config.max_frame_size.min(self.max_message_size);
        config
    }

    /// A builder for `url` with these options; `subprotocols` are offered in order.
    pub fn builder(&self, url: &str, subprotocols: &[String]) -> Result<ClientBuilder, Failure> {
        let mut builder = ClientBuilder::new(url).config(self.config());
        for protocol in subprotocols {
            builder = builder.subprotocol(protocol.clone());
        }
        for (name, value) in &self.headers {
            builder = builder.header(name.clone(), value.clone());
        }
        if let Some(token) = &self.token {
            builder = builder.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(origin) = &self.origin {
            builder = builder.origin(origin.clone());
        }
        if let Some(path) = &self.ca {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::usage(format!("--ca {}: {e}", path.display())))?;
            builder = builder
                .add_root_certificates_pem(&pem)
                .map_err(|e| Failure::usage(format!("--ca {}: {e}", path.display())))?;
        }
        if self.insecure {
            builder = builder.dangerous_accept_invalid_certificates(true);
        }
        Ok(builder)
    }

    /// Keepalive for a connection: ping after the interval, give up after three.
    pub fn keepalive(&self) -> Option<(Duration, Duration)> {
        self.ping_interval.map(|i| (i, i * 3))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_sizes_and_seconds_parse_or_say_what_is_wrong() {
        assert_eq!(
            parse_header("X-Test:  a: b ").unwrap(),
            ("X-Test".into(), "a: b".into())
        );
        assert!(
            parse_header("no colon")
                .unwrap_err()
                .contains("Name: value")
        );
        assert!(parse_header("bad name: x").is_err());
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("0").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("-1").is_err());
    }
}
