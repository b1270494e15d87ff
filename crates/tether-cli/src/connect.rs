//! `tether connect URL`: stdin to messages, messages to stdout.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use tether::{CloseCode, CloseFrame, Message};
use tokio::sync::mpsc;

use crate::client_args::ClientArgs;
use crate::exit::{Failure, Status};
use crate::session;

/// Arguments of `tether connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The WebSocket URL: ws://host:port/path or wss://host/path (the port is optional).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Offers a subprotocol (repeatable, most preferred first). With --listen-tcp the default
    /// is "binary".
    #[arg(long = "subprotocol", value_name = "NAME")]
    pub subprotocols: Vec<String>,
    /// Sends stdin as binary messages (each read of up to 64 KiB is one message) instead of
    /// one text message per line.
    #[arg(long, short = 'b')]
    pub binary: bool,
    /// How received binary messages are printed, one per line.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = BinaryFormat::Hex)]
    pub show_binary: BinaryFormat,
    /// The close frame sent at the end of stdin: a code, optionally with a reason.
    #[arg(long, value_name = "CODE[:REASON]", value_parser = parse_close, default_value = "1000")]
    pub close: CloseFrame,
    /// Closes after receiving N messages, instead of at the end of stdin. For servers that
    /// drop their replies once they see a close (an echo piped in: `-n` lines).
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,
    /// Instead of stdin: listens on ADDR (e.g. 127.0.0.1:6380) and carries every TCP
    /// connection accepted there over a new WebSocket to URL, as binary messages both ways.
    #[arg(long, value_name = "ADDR")]
    pub listen_tcp: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How binary messages are shown on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BinaryFormat {
    /// Lowercase hexadecimal: 00ff10.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

fn parse_close(text: &str) -> Result<CloseFrame, String> {
    let (code, reason) = text.split_once(':').unwrap_or((text, ""));
    let code: u16 = code
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: expected CODE or CODE:REASON, e.g. 1000 or 4000:done"))?;
    let code = CloseCode(code);
    // RFC 6455 §7.4: only 1000-1003, 1007-1014 and 3000-4999 may be sent.
    if !code.is_allowed_on_wire() {
        return Err(format!(
            "{} cannot be sent in a close frame (use 1000, 1001, 1008, 1011 or 3000-4999)",
            code.0
        ));
    }
    if reason.len() > CloseFrame::MAX_REASON_LEN {
        return Err(format!(
            "the reason is {} bytes; a close frame holds at most {}",
            reason.len(),
            CloseFrame::MAX_REASON_LEN
        ));
    }
    Ok(CloseFrame::new(code, reason.to_string()))
}

/// Most bytes of stdin per binary message.
const BINARY_CHUNK: usize = 64 << 10;

/// Input read from stdin by its thread.
enum Input {
    Message(Message),
    Invalid(String),
    End,
}

/// Reads stdin on a thread of its own (reading a terminal or a pipe blocks), at most a few
/// messages ahead of the connection.
fn read_stdin(binary: bool, max_len: usize) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut stdin = stdin.lock();
        let mut line_number = 0u64;
        loop {
            let input = if binary {
                let mut chunk = vec![0; BINARY_CHUNK.min(max_len)];
                match stdin.read(&mut chunk) {
                    Ok(0) => Input::End,
                    Ok(n) => {
                        chunk.truncate(n);
                        Input::Message(Message::Binary(Bytes::from(chunk)))
                    }
                    Err(e) => Input::Invalid(format!("reading stdin: {e}")),
                }
            } else {
                line_number += 1;
                let mut line = Vec::new();
                // Bounded: a line longer than the server would take is refused, not buffered.
                match (&mut stdin)
                    .take(max_len as u64 + 2)
                    .read_until(b'\n', &mut line)
                {
                    Ok(0) => Input::End,
                    Ok(_) => {
                        let complete = line.last() == Some(&b'\n');
                        if complete {
                            line.pop();
                            if line.last() == Some(&b'\r') {
                                line.pop();
                            }
                        }
                        if line.len() > max_len {
                            Input::Invalid(format!(
                                "line {line_number} is longer than --max-message-size ({max_len} bytes)"
                            ))
                        } else {
                            match String::from_utf8(line) {
                                Ok(text) => Input::Message(Message::text(text)),
                                Err(_) => Input::Invalid(format!(
                                    "line {line_number} is not UTF-8 text (send it with --binary)"
                                )),
                            }
                        }
                    }
                    Err(e) => Input::Invalid(format!("reading stdin: {e}")),
                }
            };
            let last = !matches!(input, Input::Message(_));
            if tx.blocking_send(input).is_err() || last {
                return;
            }
        }
    });
    rx
}

/// Ctrl-C (SIGINT), caught from the moment this is made.
struct Interrupt {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Interrupt {
    fn new() -> Self {
        Interrupt {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok(),
        }
    }

    /// Completes at the next Ctrl-C.
    async fn recv(&mut self) {
        #[cfg(unix)]
        match &mut self.signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Writes one received message to stdout; `false` when stdout is gone.
fn print_message(msg: &Message, format: BinaryFormat) -> bool {
    let mut out = std::io::stdout().lock();
    let written = match msg {
        Message::Text(text) => writeln!(out, "{}", text.as_str()),
        Message::Binary(data) => match format {
            BinaryFormat::Hex => {
                let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(out, "{hex}")
            }
            BinaryFormat::Base64 => {
                use base64::Engine as _;
                writeln!(
                    out,
                    "{}",
                    base64::engine::general_purpose::STANDARD.encode(data)
                )
            }
        },
        _ => return true,
    };
    written.and_then(|()| out.flush()).is_ok()
}

/// Runs `tether connect URL` (without --listen-tcp).
pub async fn run(args: ConnectArgs) -> Result<(), Failure> {
    // Listening from the start, so a Ctrl-C once connected always closes politely.
    let mut interrupt = Interrupt::new();
    let builder = args.client.builder(&args.url, &args.subprotocols)?;
    let (ws, _response) = session::open(builder, &args.client, &args.url, "").await?;
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        eprintln!(
            "tether: connected to {}; type lines to send, Ctrl-D to close",
            args.url
        );
    }
    let (mut reader, mut writer) = ws.split();
    let mut stdin = read_stdin(args.binary, args.client.max_message_size);
    let close = args.close.clone();
    let we_closed = AtomicBool::new(false);
    let bad_input = AtomicBool::new(false);

    // stdin to the server; never finishes on its own: the connection's end ends the command.
    let count_reached = tokio::sync::Notify::new();
    let upstream = async {
        let mut stdin_open = true;
        loop {
            let input = tokio::select! {
                input = stdin.recv(), if stdin_open => input.unwrap_or(Input::End),
                () = count_reached.notified() => {
                    we_closed.store(true, Ordering::Relaxed);
                    let _ = writer.send(Message::Close(Some(close.clone()))).await;
                    break;
                }
                // Ctrl-C leaves politely: close 1001 "going away", then the server's reply.
                () = interrupt.recv() => {
                    we_closed.store(true, Ordering::Relaxed);
                    let frame = CloseFrame::new(CloseCode(1001), "interrupted");
                    let _ = writer.send(Message::Close(Some(frame))).await;
                    break;
                }
            };
            match input {
                Input::Message(msg) => {
                    if writer.send(msg).await.is_err() {
                        break; // the connection is closing; the reader tells how
                    }
                }
                Input::Invalid(why) => {
                    // RFC 6455 §7.4.1: 1003 is for "a type of data it cannot accept".
                    eprintln!("tether: {why}; closing with 1003");
                    bad_input.store(true, Ordering::Relaxed);
                    we_closed.store(true, Ordering::Relaxed);
                    let frame = CloseFrame::new(CloseCode(1003), "bad input");
                    let _ = writer.send(Message::Close(Some(frame))).await;
                    break;
                }
                // With --count, the count closes, not the end of stdin.
                Input::End if args.count.is_some() => stdin_open = false,
                Input::End => {
                    we_closed.store(true, Ordering::Relaxed);
                    let _ = writer.send(Message::Close(Some(close.clone()))).await;
                    break;
                }
            }
        }
        std::future::pending::<std::convert::Infallible>().await
    };
    // The server to stdout, until the connection ends.
    let downstream = async {
        let mut close_frame = None;
        let mut received = 0u64;
        while let Some(item) = reader.next().await {
            match item {
                Ok(Message::Close(frame)) => close_frame = Some(frame),
                Ok(msg) => {
                    if !print_message(&msg, args.show_binary) {
                        // Nobody reads our output any more (`| head -1`): leave politely.
                        return Err(Failure::new(Status::Normal, "stdout closed"));
                    }
                    if msg.is_data() {
                        received += 1;
                        if args.count == Some(received) {
                            count_reached.notify_one();
                        }
                    }
                }
                Err(e) => return Err(Failure::from_error(&e, &args.url)),
            }
        }
        Ok(close_frame)
    };
    let outcome = tokio::select! {
        never = upstream => match never {},
        outcome = downstream => outcome,
    };
    if bad_input.load(Ordering::Relaxed) {
        return Err(Failure::new(Status::Other, "stopped on invalid input"));
    }
    let we_closed = we_closed.load(Ordering::Relaxed);
    match outcome {
        Ok(Some(frame)) => match Failure::from_close(frame.as_ref(), we_closed) {
            Some(failure) => Err(failure),
            None => Ok(()),
        },
        // The stream ended without the server's close frame: our close was not answered.
        Ok(None) => Err(Failure::new(
            Status::Abnormal,
            "the server did not answer the closing handshake in time",
        )),
        Err(failure) if failure.status == Status::Normal => {
            // Nobody reads stdout any more (`| head -1`): close 1001 "going away", and read
            // (and drop) what comes until the server's reply, within the close timeout.
            let frame = CloseFrame::new(CloseCode(1001), "stdout closed");
            if writer.send(Message::Close(Some(frame))).await.is_ok() {
                while let Some(Ok(_)) = reader.next().await {}
            }
            Ok(())
        }
        Err(failure) => Err(failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_arguments_take_a_code_and_a_reason() {
        assert_eq!(parse_close("1000").unwrap().code, CloseCode::NORMAL);
        let frame = parse_close("4000:done: really").unwrap();
        assert_eq!(
            (frame.code.0, frame.reason.as_str()),
            (4000, "done: really")
        );
        assert!(parse_close("1006").unwrap_err().contains("cannot be sent"));
        assert!(parse_close("bye").unwrap_err().contains("CODE:REASON"));
        assert!(parse_close(&format!("1000:{}", "x".repeat(124))).is_err());
    }
}
