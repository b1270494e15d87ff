//! Opening a client connection for the commands: the transport wrapped in a tracer, so `-v`
//! shows the handshake request and response exactly as sent and every frame header on the
//! wire (frames, not messages: a fragmented message shows as several, a compressed one with
//! RSV1 and its compressed length).

use std::io::Write;

use tether::trace::{Direction, TraceEvent, Traced};
use tether::{ClientBuilder, MaybeTlsStream, Response, WebSocket};
use tokio::net::TcpStream;

use crate::client_args::ClientArgs;
use crate::exit::{Failure, Status};

/// The transport of every client connection.
pub type Transport = Traced<MaybeTlsStream<TcpStream>>;

/// Prints trace events to stderr, each line starting with `prefix` (empty, or `[3] ` for
/// the third bridged connection).
fn printer(prefix: String) -> impl FnMut(TraceEvent<'_>) + Send + 'static {
    move |event| {
        let mut err = std::io::stderr().lock();
        let arrow = |d: Direction| if d == Direction::Sent { '>' } else { '<' };
        let _ = match event {
            TraceEvent::HandshakeHead { direction, head } => {
                let text = String::from_utf8_lossy(head);
                for line in text.split("\r\n") {
                    let _ = writeln!(err, "{prefix}{} {line}", arrow(direction));
                }
                writeln!(err, "{prefix}{}", arrow(direction))
            }
            TraceEvent::Frame { direction, header } => writeln!(
                err,
                "{prefix}{} frame {} fin={} rsv1={} masked={} len={}",
                arrow(direction),
                format!("{:?}", header.opcode).to_ascii_lowercase(),
                u8::from(header.fin),
                u8::from(header.rsv1),
                u8::from(header.mask.is_some()),
                header.payload_len
            ),
            TraceEvent::Stopped { direction, reason } => {
                writeln!(
                    err,
                    "{prefix}* {} trace stopped: {reason}",
                    arrow(direction)
                )
            }
            _ => Ok(()),
        };
    }
}

/// Connects with `builder`: TCP, TLS for wss, the handshake; traced to stderr when `-v`.
pub async fn open(
    builder: ClientBuilder,
    args: &ClientArgs,
    url: &str,
    prefix: &str,
) -> Result<(WebSocket<Transport>, Response), Failure> {
    if args.verbose {
        eprintln!("{prefix}* connecting to {url}");
    }
    let opening = async {
        let transport = builder
            .open_transport()
            .await
            .map_err(|e| Failure::from_error(&e, url))?;
        let traced = if args.verbose {
            Traced::new(transport, printer(prefix.to_string()))
        } else {
            Traced::new(transport, |_| {})
        };
        builder
            .connect_on(traced)
            .await
            .map_err(|e| Failure::from_error(&e, url))
    };
    let (mut ws, response) = tokio::time::timeout(args.connect_timeout, opening)
        .await
        .map_err(|_| {
            Failure::new(
                Status::Connect,
                format!(
                    "{url}: the connection was not open after {:.1} s\n  try: check the address, or a longer --connect-timeout",
                    args.connect_timeout.as_secs_f64()
                ),
            )
        })??;
    if args.verbose {
        let negotiated = ws.negotiated();
        eprintln!(
            "{prefix}* connected: subprotocol {}, compression {}",
            negotiated.subprotocol.as_deref().unwrap_or("(none)"),
            if negotiated.compression {
                "on (permessage-deflate)"
            } else {
                "off"
            }
        );
    }
    if let Some((interval, timeout)) = args.keepalive() {
        ws.set_keepalive(interval, timeout);
    }
    Ok((ws, response))
}
