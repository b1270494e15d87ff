//! The command line of `tether bench`: one subcommand per workload, common options shared.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::{Args, Subcommand};

use super::echo_check::Verify;
use super::target::Target;

/// `tether bench MODE ...`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The workloads.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// N connections, each keeping K messages in flight; every echo is checked.
    Echo(EchoArgs),
    /// Opening and closing handshakes per second, with C concurrent connectors.
    Connect(ConnectArgs),
    /// Open and hold N connections; with --server-pid, the server's memory per connection.
    Idle(IdleArgs),
    /// N subscribers on a pub/sub route, one publisher at a rate; publish-to-receive latency.
    Fanout(FanoutArgs),
    /// Not a workload: a minimal echo server, to run `echo` against and measure the load
    /// tool's own ceiling on this machine.
    NullEcho(NullEchoArgs),
}

/// Options every workload takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The server: ws://host:port/path (plain TCP; the raw client does not speak TLS).
    #[arg(long, value_name = "URL")]
    pub url: Target,
    /// Print one JSON object on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Worker threads of the load tool (1: a current-thread runtime).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub threads: usize,
}

/// `tether bench echo`.
#[derive(Debug, Args)]
pub struct EchoArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 64, value_name = "N")]
    pub connections: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 16, value_name = "BYTES")]
    pub size: usize,
    /// Messages in flight per connection (sent before their echo came back).
    #[arg(long, default_value_t = 16, value_name = "K")]
    pub in_flight: usize,
    /// Strict request/response: the same as --in-flight 1.
    #[arg(long)]
    pub request_response: bool,
    /// Measured time (after the warmup).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "TIME")]
    pub duration: Duration,
    /// Time run before measuring.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "TIME")]
    pub warmup: Duration,
    /// Send text messages (ASCII payload).
    #[arg(long, conflicts_with = "binary")]
    pub text: bool,
    /// Send binary messages (the default).
    #[arg(long)]
    pub binary: bool,
    /// Offer permessage-deflate and compress: runs on the `tether` client, heavier per
    /// message than the raw client.
    #[arg(long)]
    pub deflate: bool,
    /// What of each echo is compared: `sequence` checks opcode, length and the message's
    /// sequence number (its first 8 bytes: lost, duplicated, reordered or cut echoes show);
    /// `full` compares every byte as well. With --deflate every byte is always compared.
    /// With `sequence`, echoes of 4 KiB and more are read up to their sequence number and
    /// the rest is discarded by the kernel unread (Linux `MSG_TRUNC`), so the tool spends no
    /// copy on bytes it does not compare.
    #[arg(long, value_enum, default_value_t = Verify::Sequence, value_name = "WHAT")]
    pub verify: Verify,
    /// The server's process: the CPU time it spends in the measured window (from
    /// /proc/PID/stat) is reported, as a share of the window and per echoed message, which
    /// compares servers even when the load tool is the bottleneck.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

impl EchoArgs {
    /// Messages in flight per connection, after --request-response.
    pub fn window(&self) -> usize {
        if self.request_response {
            1
        } else {
            self.in_flight
        }
    }
}

/// `tether bench null-echo`.
#[derive(Debug, Args)]
pub struct NullEchoArgs {
    /// The address to listen on (port 0: any free port, printed on stderr).
    #[arg(long, default_value = "127.0.0.1:9002", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Bytes read at once per connection; the replies waiting to be written take up to twice
    /// as much. A frame is written back whole when it is shorter than half of it.
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub buffer: usize,
}

/// `tether bench connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Concurrent connectors, each opening, closing and opening again.
    #[arg(short = 'c', long, default_value_t = 16, value_name = "N")]
    pub connections: usize,
    /// Measured time (after the warmup).
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "TIME")]
    pub duration: Duration,
    /// Time run before measuring.
    #[arg(long, default_value = "0s", value_parser = parse_duration, value_name = "TIME")]
    pub warmup: Duration,
}

/// `tether bench idle`.
#[derive(Debug, Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections to open and hold.
    #[arg(short = 'n', long, default_value_t = 1000, value_name = "N")]
    pub connections: usize,
    /// Local source addresses, spread over round-robin: one IPv4 address or a range
    /// `127.0.0.1-127.0.0.16` (each gives its own ephemeral port range).
    #[arg(long, value_parser = parse_sources, value_name = "RANGE")]
    pub sources: Option<Sources>,
    /// How long to hold the connections once all are open, before measuring RSS.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "TIME")]
    pub hold: Duration,
    /// The server's process: its RSS (VmRSS in /proc/PID/status) is read before and after.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Connections opening at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub concurrency: usize,
}

/// `tether bench fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Subscribers.
    #[arg(short = 'n', long, default_value_t = 1000, value_name = "N")]
    pub subscribers: usize,
    /// The topic published to.
    #[arg(long, default_value = "bench", value_name = "TOPIC")]
    pub topic: String,
    /// Publishes per second.
    #[arg(long, default_value_t = 100.0, value_name = "PER_S")]
    pub rate: f64,
    /// Measured time of publishing: rate x duration publishes (at least one), the first at
    /// once.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "TIME")]
    pub duration: Duration,
    /// Publish through the gateway's HTTP API at this URL instead of over a WebSocket on
    /// --url: http://host:port/api/publish (the topic is appended).
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<String>,
    /// Payload bytes of each published message (at least the 41 of its time stamp and
    /// last-publish mark).
    #[arg(long, default_value_t = 64, value_name = "BYTES")]
    pub size: usize,
    /// Local source addresses for the subscribers, as for `idle`.
    #[arg(long, value_parser = parse_sources, value_name = "RANGE")]
    pub sources: Option<Sources>,
    /// Connections opening at once.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub concurrency: usize,
    /// How long to wait after the last publish for its deliveries; what has not come by
    /// then counts as dropped.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "TIME")]
    pub settle: Duration,
    /// The server's process: the CPU time it spends from the first publish until every
    /// delivery is in (at most --settle after the last publish; from /proc/PID/stat) is
    /// reported per delivery.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
}

impl Mode {
    /// The options every workload has (`None` for the null echo server).
    pub fn common(&self) -> Option<&CommonArgs> {
        match self {
            Mode::Echo(a) => Some(&a.common),
            Mode::Connect(a) => Some(&a.common),
            Mode::Idle(a) => Some(&a.common),
            Mode::Fanout(a) => Some(&a.common),
            Mode::NullEcho(_) => None,
        }
    }

    /// The sockets the run holds open at once.
    pub fn connections_needed(&self) -> usize {
        match self {
            Mode::Echo(a) => a.connections,
            Mode::Connect(a) => a.connections,
            Mode::Idle(a) => a.connections,
            Mode::Fanout(a) => a.subscribers + 1,
            Mode::NullEcho(_) => 0,
        }
    }
}

impl BenchArgs {
    /// Checks the values clap cannot check alone.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(common) = self.mode.common()
            && (common.threads == 0 || common.threads > 256)
        {
            return Err("--threads must be between 1 and 256".into());
        }
        match &self.mode {
            Mode::Echo(a) => {
                if a.connections == 0 || a.window() == 0 {
                    return Err("-c and --in-flight must be at least 1".into());
                }
                if a.size > MAX_MESSAGE_SIZE {
                    return Err(format!("--size must be at most {MAX_MESSAGE_SIZE} bytes"));
                }
                if a.window() > 65_536 {
                    return Err("--in-flight must be at most 65536".into());
                }
                if a.duration.is_zero() {
                    return Err("--duration must be more than 0".into());
                }
            }
            Mode::Connect(a) if a.connections == 0 || a.duration.is_zero() => {
                return Err("-c must be at least 1 and --duration more than 0".into());
            }
            Mode::NullEcho(a) if !(MIN_NULL_ECHO_BUFFER..=MAX_MESSAGE_SIZE).contains(&a.buffer) => {
                return Err(format!(
                    "--buffer must be between {MIN_NULL_ECHO_BUFFER} and {MAX_MESSAGE_SIZE} bytes"
                ));
            }
            Mode::Idle(a) if a.connections == 0 || a.concurrency == 0 => {
                return Err("-n and --concurrency must be at least 1".into());
            }
            Mode::Fanout(a) => {
                if a.subscribers == 0 || a.concurrency == 0 {
                    return Err("-n and --concurrency must be at least 1".into());
                }
                if !(a.rate > 0.0 && a.rate <= 1_000_000.0) {
                    return Err("--rate must be more than 0 and at most 1000000".into());
                }
                if a.size > MAX_MESSAGE_SIZE {
                    return Err(format!("--size must be at most {MAX_MESSAGE_SIZE} bytes"));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The largest --size: bounds the buffers of each connection.
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The smallest `null-echo --buffer`: a handshake request head of a load tool and any frame
/// header fit (a longer head is refused).
pub const MIN_NULL_ECHO_BUFFER: usize = 1024;

/// `10s`, `500ms`, `2m`, `1.5s`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {text:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// Local source addresses, from `--sources`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sources(pub Vec<Ipv4Addr>);

/// `127.0.0.1` or `127.0.0.1-127.0.0.16` (at most 65536 addresses).
pub fn parse_sources(text: &str) -> Result<Sources, String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("{s:?} is not an IPv4 address"))
    };
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(text)?, parse(text)?),
    };
    let (first, last) = (u32::from(first), u32::from(last));
    if last < first || last - first >= 65_536 {
        return Err(format!(
            "{text:?}: the range must go upwards and hold at most 65536 addresses"
        ));
    }
    Ok(Sources((first..=last).map(Ipv4Addr::from).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sources_are_ranges_of_addresses() {
        let range = parse_sources("127.0.0.1-127.0.0.3").unwrap().0;
        assert_eq!(range.len(), 3);
        assert_eq!(range[2], Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(parse_sources("127.0.0.9").unwrap().0.len(), 1);
        assert!(parse_sources("127.0.0.3-127.0.0.1").is_err());
        assert!(parse_sources("localhost").is_err());
    }
}
