//! Raw bytes on a socket: HTTP requests and responses, and WebSocket frames built by hand so
//! they can break every rule.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any single read in a case may take.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// A valid `Sec-WebSocket-Key` (RFC 6455 §1.3's sample nonce).
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// An HTTP response head and body, as received.
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    /// The body as text, lossily.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `request` on a new connection and reads one response (to its `Content-Length`, or
/// to EOF). `None` when the server closed without answering.
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<Reply> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let (reply, _) = read_reply(&mut tcp).await?;
    Some(reply)
}

/// Reads one response head and its body; also returns bytes read past it (frames after a 101).
pub async fn read_reply(tcp: &mut TcpStream) -> Option<(Reply, Vec<u8>)> {
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
            .await
            .expect("no response in time")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let mut reply = Reply {
        status,
        head,
        body: Vec::new(),
    };
    let rest = raw.split_off(head_end);
    if status == 101 {
        return Some((reply, rest));
    }
    let length: Option<usize> = reply.header("content-length").and_then(|v| v.parse().ok());
    let mut body = rest;
    while length.is_none_or(|l| body.len() < l) {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut chunk))
            .await
            .expect("no body in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    reply.body = body;
    Some((reply, Vec::new()))
}

/// A WebSocket upgrade request for `target` with the standard headers and `extra` lines.
pub fn upgrade_request(target: &str, extra: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// An open WebSocket on a raw socket, after a 101.
pub struct RawSocket {
    pub tcp: TcpStream,
    pub buffered: Vec<u8>,
}

/// Opens a WebSocket on `target`; panics unless the answer is 101.
pub async fn open(addr: SocketAddr, target: &str, extra: &str) -> RawSocket {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request(target, extra).as_bytes())
        .await
        .unwrap();
    let (reply, buffered) = read_reply(&mut tcp).await.expect("an upgrade response");
    assert_eq!(reply.status, 101, "{}", reply.head);
    RawSocket { tcp, buffered }
}

/// What the server ended a WebSocket with.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// A close frame: its code (`None` for an empty one) and reason.
    Close(Option<u16>, String),
    /// The TCP connection ended without a close frame.
    Eof,
}

/// A message the server sent before closing (opcode and payload length).
pub type Seen = (u8, usize);

impl RawSocket {
    pub async fn send(&mut self, bytes: &[u8]) {
        // The server may fail the connection before reading all of it.
        let _ = self.tcp.write_all(bytes).await;
    }

    /// Reads server frames until a close frame or EOF; returns the data frames seen too.
    pub async fn ending(&mut self) -> (Ending, Vec<Seen>) {
        let mut seen = Vec::new();
        loop {
            match self.next_frame().await {
                None => return (Ending::Eof, seen),
                Some((0x8, payload)) => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into_owned();
                    return (Ending::Close(code, reason), seen);
                }
                Some((opcode, payload)) => seen.push((opcode, payload.len())),
            }
        }
    }

    /// The next frame from the server (which never masks): opcode and payload.
    pub async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((opcode, header, len)) = parse_header(&self.buffered)
                && self.buffered.len() >= header + len
            {
                let payload = self.buffered[header..header + len].to_vec();
                self.buffered.drain(..header + len);
                return Some((opcode, payload));
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let n = match tokio::time::timeout(PATIENCE, self.tcp.read(&mut chunk)).await {
                Ok(Ok(n)) => n,
                Ok(Err(_)) => 0,
                Err(_) => panic!("the server neither closed nor answered in time"),
            };
            if n == 0 {
                return None;
            }
            self.buffered.extend_from_slice(&chunk[..n]);
        }
    }
}

fn parse_header(b: &[u8]) -> Option<(u8, usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let opcode = b[0] & 0x0f;
    match b[1] & 0x7f {
        126 if b.len() >= 4 => Some((opcode, 4, u16::from_be_bytes([b[2], b[3]]) as usize)),
        127 if b.len() >= 10 => {
            let len = u64::from_be_bytes(b[2..10].try_into().unwrap());
            Some((opcode, 10, len as usize))
        }
        126 | 127 => None,
        n => Some((opcode, 2, n as usize)),
    }
}

/// A frame as a client would send it: `first` is the FIN/RSV/opcode byte, masked with a fixed
/// key unless `masked` is false.
pub fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A masked frame header announcing a 64-bit `length`, with no payload after it.
pub fn header_with_length(first: u8, length: u64) -> Vec<u8> {
    let mut out = vec![first, 0x80 | 127];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&[1, 2, 3, 4]);
    out
}

/// A close frame payload: code and reason bytes.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    payload
}
