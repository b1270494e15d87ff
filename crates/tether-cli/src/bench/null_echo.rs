//! `tether bench null-echo`: the least work an echo server can do, to measure the load
//! tool's own ceiling. Run against it, `tether bench echo` is the bottleneck (its CPU near
//! 100%), so its rate there is the most the tool can measure on that machine: a server
//! measured well below it is the limit, one measured near it may be faster than the tool.
//!
//! It speaks just enough WebSocket for the raw client: the opening handshake (checked by
//! `tether_proto`), then every frame sent back as it came (same FIN and opcode, a ping as a
//! pong, a close as the closing reply), unmasked, streamed through one fixed buffer without
//! waiting for whole frames. No extension is negotiated; no UTF-8 is checked; messages of
//! any size pass, in memory bounded by the buffers: `--buffer` bytes per connection for
//! what is read at once, and up to twice that for the replies (a reply is never longer
//! than what it answers, and leaves once its frame is whole or half a buffer is waiting).

use std::convert::Infallible;

use tether_proto::Config;
use tether_proto::frame::{FrameHeader, MAX_HEADER_LEN, OpCode};
use tether_proto::handshake::{AcceptOptions, accept, parse_request};
use tether_proto::mask::apply_mask;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::args::NullEchoArgs;

/// Listens on `args.listen` and echoes every connection until the process is stopped.
pub async fn run(args: &NullEchoArgs) -> Result<Infallible, String> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    eprintln!("null echo server listening on ws://{addr}");
    loop {
        let (stream, peer) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        let buffer = args.buffer;
        tokio::spawn(async move {
            if let Err(e) = serve(stream, buffer).await {
                tracing::debug!("null echo: {peer}: {e}");
            }
        });
    }
}

/// One connection: the handshake, then echoes until the close or the end of the stream.
async fn serve(mut stream: TcpStream, buffer: usize) -> Result<(), String> {
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let mut input = vec![0u8; buffer];
    let leftover = handshake(&mut stream, &mut input).await?;
    let mut echo = Echo::default();
    let mut output = Vec::with_capacity(buffer);
    input[..leftover.len()].copy_from_slice(&leftover);
    let mut filled = leftover.len();
    loop {
        let used = echo.take(&input[..filled], &mut output)?;
        // A frame read in pieces goes back whole (one write, as a server that waits for
        // the message would), unless half a buffer of it is waiting already.
        if echo.left == 0 || output.len() >= buffer / 2 {
            stream
                .write_all(&output)
                .await
                .map_err(|e| format!("write: {e}"))?;
            output.clear();
        }
        if echo.closed {
            // RFC 6455 §7.1.1: the server closes the TCP connection first.
            let _ = stream.shutdown().await;
            return Ok(());
        }
        // What is left is a header cut in two: kept for the next read.
        input.copy_within(used..filled, 0);
        let kept = filled - used;
        let n = stream
            .read(&mut input[kept..])
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        filled = kept + n;
    }
}

/// Reads the request head into `buf`, answers it; returns the bytes after the head.
async fn handshake(stream: &mut TcpStream, buf: &mut [u8]) -> Result<Vec<u8>, String> {
    let mut config = Config::default();
    config.deflate = None;
    let mut filled = 0;
    loop {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        if n == 0 {
            return Err("the client left during the handshake".into());
        }
        filled += n;
        match parse_request(&buf[..filled], &config) {
            Ok(None) if filled < buf.len() => continue,
            Ok(None) => return Err("a request head longer than the buffer".into()),
            Ok(Some((request, head_len))) => {
                let response = match accept(&request, &config, &AcceptOptions::default()) {
                    Ok(accepted) => accepted.response,
                    Err(e) => {
                        let _ = stream.write_all(&e.response()).await;
                        return Err(format!("handshake refused: {e}"));
                    }
                };
                stream
                    .write_all(&response)
                    .await
                    .map_err(|e| format!("handshake: {e}"))?;
                return Ok(buf[head_len..filled].to_vec());
            }
            Err(e) => {
                let _ = stream.write_all(&e.response()).await;
                return Err(format!("handshake refused: {e}"));
            }
        }
    }
}

/// Where the echo is in the client's stream.
#[derive(Debug, Default)]
struct Echo {
    /// The payload bytes of the current frame still to come, its key, and how far in.
    left: u64,
    key: [u8; 4],
    offset: usize,
    /// Whether the current frame's payload is dropped (a pong) rather than echoed.
    skip: bool,
    /// Whether the current frame is a close: the connection ends after it.
    closing: bool,
    /// The close is answered: nothing more is read.
    closed: bool,
}

impl Echo {
    /// Echoes what `input` holds into `output`; returns how many bytes of `input` it used
    /// (the rest is the start of a header, to be kept for the next read).
    fn take(&mut self, input: &[u8], output: &mut Vec<u8>) -> Result<usize, String> {
        let mut pos = 0;
        while pos < input.len() && !self.closed {
            if self.left == 0 {
                let Some((header, head_len)) =
                    FrameHeader::parse(&input[pos..]).map_err(|e| e.to_string())?
                else {
                    break;
                };
                self.start_frame(&header, output)?;
                pos += head_len;
                if self.left == 0 {
                    self.end_frame();
                }
                continue;
            }
            let n = (self.left.min((input.len() - pos) as u64)) as usize;
            if !self.skip {
                let start = output.len();
                output.extend_from_slice(&input[pos..pos + n]);
                apply_mask(&mut output[start..], self.key, self.offset);
            }
            pos += n;
            self.offset += n;
            self.left -= n as u64;
            if self.left == 0 {
                self.end_frame();
            }
        }
        Ok(pos)
    }

    /// Checks a client frame's header and writes the reply's header.
    fn start_frame(&mut self, header: &FrameHeader, output: &mut Vec<u8>) -> Result<(), String> {
        // RFC 6455 §5.1: "The server MUST close the connection upon receiving a frame that
        // is not masked."
        let key = header
            .mask
            .ok_or("an unmasked frame from the client (RFC 6455 §5.1)")?;
        // RFC 6455 §5.2: RSV bits "MUST be 0 unless an extension is negotiated".
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err("RSV bits set with no extension negotiated (RFC 6455 §5.2)".into());
        }
        self.key = key;
        self.offset = 0;
        self.left = header.payload_len;
        self.skip = header.opcode == OpCode::Pong;
        self.closing = header.opcode == OpCode::Close;
        if self.skip {
            return Ok(());
        }
        let reply = FrameHeader {
            // RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong
            // frame in response", with "identical Application data" (§5.5.3).
            opcode: if header.opcode == OpCode::Ping {
                OpCode::Pong
            } else {
                header.opcode
            },
            // RFC 6455 §5.1: "A server MUST NOT mask any frames that it sends".
            mask: None,
            ..*header
        };
        let mut head = [0u8; MAX_HEADER_LEN];
        let len = reply.encode(&mut head);
        output.extend_from_slice(&head[..len]);
        Ok(())
    }

    fn end_frame(&mut self) {
        // RFC 6455 §5.5.1: the endpoint that receives a close "MUST send a Close frame in
        // response"; echoing its status code is such a response.
        if self.closing {
            self.closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::frame::push_masked_frame;

    fn masked(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_masked_frame(&mut out, opcode, payload);
        out
    }

    #[test]
    fn frames_come_back_unmasked_in_any_cut() {
        let mut wire = masked(OpCode::Binary, b"Hello");
        wire.extend(masked(OpCode::Ping, b"p"));
        wire.extend(masked(OpCode::Pong, b"ignored"));
        wire.extend(masked(OpCode::Text, &[b'x'; 300]));
        let mut expected = vec![0x82, 0x05];
        expected.extend_from_slice(b"Hello");
        expected.extend_from_slice(&[0x8a, 0x01, b'p']);
        expected.extend_from_slice(&[0x81, 126, 0x01, 0x2c]);
        expected.extend_from_slice(&[b'x'; 300]);
        for cut in 0..wire.len() {
            let mut echo = Echo::default();
            let mut output = Vec::new();
            let used = echo.take(&wire[..cut], &mut output).unwrap();
            let mut rest = wire[used..cut].to_vec();
            assert!(
                rest.len() < MAX_HEADER_LEN,
                "cut {cut}: only a header is kept"
            );
            rest.extend_from_slice(&wire[cut..]);
            assert_eq!(echo.take(&rest, &mut output).unwrap(), rest.len());
            assert_eq!(output, expected, "cut {cut}");
        }
    }

    #[test]
    fn a_close_is_answered_and_ends_the_echo() {
        let mut wire = masked(OpCode::Close, &1000u16.to_be_bytes());
        wire.extend(masked(OpCode::Binary, b"after"));
        let mut echo = Echo::default();
        let mut output = Vec::new();
        let used = echo.take(&wire, &mut output).unwrap();
        assert!(echo.closed);
        assert_eq!(used, 8, "nothing read past the close");
        assert_eq!(output, [0x88, 0x02, 0x03, 0xe8]);
    }

    #[test]
    fn unmasked_frames_and_rsv_bits_are_refused() {
        let mut echo = Echo::default();
        let err = echo.take(&[0x81, 0x01, b'x'], &mut Vec::new()).unwrap_err();
        assert!(err.contains("§5.1"), "{err}");
        let mut rsv = masked(OpCode::Binary, b"x");
        rsv[0] |= 0x40;
        assert!(Echo::default().take(&rsv, &mut Vec::new()).is_err());
    }
}
