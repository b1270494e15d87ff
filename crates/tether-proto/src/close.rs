//! Close codes and close frames (RFC 6455 §5.5.1, §7.4).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::Utf8Bytes;

/// A close status code (RFC 6455 §7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure; the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint cannot accept this type of data.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present (never sent on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection was lost without a close frame (never sent on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: message data inconsistent with its type (e.g. invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message is too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (temporary overload).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway or proxy got an invalid response from upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// Whether this code may appear in a close frame on the wire.
    ///
    /// RFC 6455 §7.4.1 reserves 1004 and forbids sending 1005, 1006 and 1015; §7.4.2 leaves
    /// 0-999 unused and 1016-2999 to future RFCs. 1012-1014 are registered with IANA.
    /// 3000-4999 belong to libraries, frameworks and applications.
    pub fn is_allowed_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The body of a close frame: a status code and a UTF-8 reason of at most 123 bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// Why the connection is closing, for people; may be empty.
    pub reason: Utf8Bytes,
}

impl CloseFrame {
    /// Largest reason that fits a control frame: 125 bytes less the 2-byte code.
    pub const MAX_REASON_LEN: usize = 123;

    /// A close frame with `code` and `reason`.
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<Utf8Bytes>) -> Self {
        CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }
    }

    /// The frame's payload: the code in network byte order, then the reason.
    pub fn to_payload(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(2 + self.reason.len());
        out.put_u16(self.code.0);
        out.extend_from_slice(self.reason.as_bytes());
        out.freeze()
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.code, self.reason.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6455 §7.4: codes that must never be sent, and the unassigned ranges.
    #[test]
    fn rfc6455_7_4_codes_allowed_on_wire() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert!(CloseCode(code).is_allowed_on_wire(), "{code}");
        }
        for code in [3000, 3999, 4000, 4999] {
            assert!(CloseCode(code).is_allowed_on_wire(), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(code).is_allowed_on_wire(), "{code}");
        }
    }

    #[test]
    fn payload_is_code_then_reason() {
        let f = CloseFrame::new(1001, "bye");
        assert_eq!(&f.to_payload()[..], b"\x03\xe9bye");
        assert_eq!(f.to_string(), "1001 (bye)");
    }
}
