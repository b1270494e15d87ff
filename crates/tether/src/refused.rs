//! A server's refusal of the opening handshake: its status, headers and (bounded) body, so a
//! client can show people what the server said (`403 Forbidden: origin not allowed`).

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The most body bytes kept from a refused handshake's response.
pub const MAX_REFUSED_BODY: usize = 64 << 10;

/// The server answered the opening handshake with plain HTTP instead of `101 Switching
/// Protocols` (RFC 6455 §4.1: "If the status code received from the server is not 101, the
/// client handles the response per HTTP procedures").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedHandshake {
    /// The status code, e.g. 403.
    pub status: u16,
    /// The reason phrase as sent, e.g. `Forbidden`.
    pub reason: String,
    /// The response's header fields, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body, at most [`MAX_REFUSED_BODY`] bytes (chunked bodies are decoded).
    pub body: Vec<u8>,
    /// Whether the body was cut at [`MAX_REFUSED_BODY`] or by the read timeout.
    pub body_truncated: bool,
}

impl RefusedHandshake {
    /// The first header named `name` (case-insensitive), lossily decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The body as text (lossily decoded), trimmed.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).trim().to_string()
    }
}

impl fmt::Display for RefusedHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server answered {} {}", self.status, self.reason)?;
        let body = self.body_text();
        if !body.is_empty() {
            write!(f, ": {body}")?;
        }
        Ok(())
    }
}

/// How the body of a response is delimited (RFC 9112 §6.3).
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn framing(headers: &[(String, Vec<u8>)]) -> Framing {
    let value = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_ascii_lowercase())
    };
    if value("transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        return Framing::Chunked;
    }
    match value("content-length").and_then(|v| v.parse().ok()) {
        Some(len) => Framing::Length(len),
        None => Framing::UntilClose,
    }
}

/// Reads the rest of a refused handshake's body: `already` holds the bytes read past the
/// head. Stops at the body's end, at [`MAX_REFUSED_BODY`], at EOF or after `patience`.
pub(crate) async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    headers: &[(String, Vec<u8>)],
    already: &[u8],
    patience: Duration,
) -> (Vec<u8>, bool) {
    let framing = framing(headers);
    let mut raw = already.to_vec();
    let complete = |raw: &[u8]| match framing {
        Framing::Length(len) => raw.len() >= len,
        Framing::Chunked => decode_chunked(raw).1,
        Framing::UntilClose => false,
    };
    let read = async {
        let mut chunk = [0u8; 4096];
        while !complete(&raw) && raw.len() < MAX_REFUSED_BODY {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => raw.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    let finished = tokio::time::timeout(patience, read).await.is_ok();
    let (mut body, done) = match framing {
        Framing::Chunked => decode_chunked(&raw),
        Framing::Length(len) => {
            let done = raw.len() >= len;
            raw.truncate(len);
            (raw, done)
        }
        Framing::UntilClose => (raw, finished),
    };
    let truncated = !done || body.len() > MAX_REFUSED_BODY;
    body.truncate(MAX_REFUSED_BODY);
    (body, truncated)
}

/// Decodes as much of a chunked body as `raw` holds; `true` once the last chunk was seen.
fn decode_chunked(mut raw: &[u8]) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return (body, false);
        };
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return (body, false);
        };
        if size == 0 {
            return (body, true);
        }
        let data = &raw[line_end + 2..];
        if data.len() < size {
            body.extend_from_slice(data);
            return (body, false);
        }
        body.extend_from_slice(&data[..size]);
        raw = data.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn chunked_bodies_are_decoded_and_their_end_found() {
        assert_eq!(
            decode_chunked(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"),
            (b"hello world".to_vec(), true)
        );
        assert_eq!(decode_chunked(b"5\r\nhel"), (b"hel".to_vec(), false));
    }

    #[tokio::test]
    async fn content_length_bodies_are_read_to_their_length() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut b, b"den: origin not allowed...")
            .await
            .unwrap();
        let (body, truncated) = read_body(
            &mut a,
            &headers(&[("Content-Length", "29")]),
            b"forbid",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(body, b"forbidden: origin not allowed");
        assert!(!truncated);
        // The peer still holds the connection open: the length, not EOF, ended the read.
        drop(b);
    }

    #[tokio::test]
    async fn bodies_without_length_are_read_to_eof() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        tokio::io::AsyncWriteExt::write_all(&mut b, b" found")
            .await
            .unwrap();
        drop(b);
        let (body, truncated) = read_body(&mut a, &[], b"not", Duration::from_secs(5)).await;
        assert_eq!((body.as_slice(), truncated), (&b"not found"[..], false));
    }
}
