//! Messages: what an application sends and receives.

use std::fmt;

use bytes::Bytes;

use crate::close::CloseFrame;

/// Bytes that are known to be valid UTF-8: the payload of a text message.
///
/// Cloning is cheap (a reference count). Received text is validated once by the engine;
/// [`Utf8Bytes::as_str`] checks again with SIMD validation rather than trusting that with
/// `unsafe` code. Parsers that take bytes (JSON, for one) can use [`Utf8Bytes::as_bytes`].
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Utf8Bytes(Bytes::new())
    }

    /// From a static string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// Checks that `bytes` is UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, Bytes> {
        if simdutf8::basic::from_utf8(&bytes).is_ok() {
            Ok(Utf8Bytes(bytes))
        } else {
            Err(bytes)
        }
    }

    /// Wraps bytes the engine has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        Utf8Bytes(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        simdutf8::basic::from_utf8(&self.0).expect("Utf8Bytes holds only valid UTF-8")
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(s: Utf8Bytes) -> Self {
        s.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

/// A WebSocket message, or a control frame, as sent or received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping, with up to 125 bytes of application data.
    Ping(Bytes),
    /// A pong, with up to 125 bytes of application data.
    Pong(Bytes),
    /// A close frame; `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Message {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(data: impl Into<Bytes>) -> Message {
        Message::Binary(data.into())
    }

    /// Whether this is a text or binary message rather than a control frame.
    pub fn is_data(&self) -> bool {
        matches!(self, Message::Text(_) | Message::Binary(_))
    }

    /// The payload bytes (for a close, the reason).
    pub fn payload(&self) -> &[u8] {
        match self {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b,
            Message::Close(Some(f)) => f.reason.as_bytes(),
            Message::Close(None) => &[],
        }
    }
}
