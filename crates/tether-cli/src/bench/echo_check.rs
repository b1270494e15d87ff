//! Checking echoes frame by frame, in place in the read buffer: opcode, length and every
//! byte against the payload sent, across fragments.

use tether_proto::frame::{FrameHeader, OpCode};

/// What one frame from the server means for the run.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// A whole echo arrived and matches.
    Echoed,
    /// A whole echo arrived and differs from what was sent (the connection goes on).
    Wrong(String),
    /// Part of a fragmented echo, checked so far.
    Fragment,
    /// A ping: answer with a pong carrying its payload.
    Ping,
    /// A pong or other frame to ignore.
    Ignored,
    /// The server closed the connection, with this status code if any.
    Closed(Option<u16>),
    /// The stream cannot be followed any more.
    Broken(String),
}

/// The checker of one connection's echoes.
#[derive(Debug)]
pub struct EchoCheck {
    expected: Vec<u8>,
    opcode: OpCode,
    /// Bytes of the current (fragmented) echo checked so far; `None` between messages.
    in_message: Option<usize>,
    /// Whether a fragment of the current echo differed.
    mismatch: Option<String>,
}

impl EchoCheck {
    /// A checker expecting every echo to be `expected`, sent as `opcode`.
    pub fn new(opcode: OpCode, expected: Vec<u8>) -> EchoCheck {
        EchoCheck {
            expected,
            opcode,
            in_message: None,
            mismatch: None,
        }
    }

    /// The payload every message carries.
    pub fn expected(&self) -> &[u8] {
        &self.expected
    }

    /// Checks a header before its payload is there: a frame that cannot be part of an
    /// echo is refused at once, so the read buffer never has to hold more than one echo.
    pub fn check_header(&self, header: &FrameHeader) -> Result<(), String> {
        // RFC 6455 §5.1: "A server MUST NOT mask any frames that it sends to the client."
        if header.mask.is_some() {
            return Err("the server sent a masked frame (RFC 6455 §5.1)".into());
        }
        // RFC 6455 §5.2: RSV bits "MUST be 0 unless an extension is negotiated".
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err("the server set RSV bits with no extension negotiated".into());
        }
        if header.opcode.is_control() {
            return Ok(());
        }
        let so_far = self.in_message.unwrap_or(0);
        let room = (self.expected.len() - so_far) as u64;
        if header.payload_len > room {
            return Err(format!(
                "an echo longer than the {} bytes sent ({} bytes and more)",
                self.expected.len(),
                so_far as u64 + header.payload_len
            ));
        }
        Ok(())
    }

    /// Takes one complete frame (header already checked, `payload` unmasked as sent).
    pub fn frame(&mut self, header: &FrameHeader, payload: &[u8]) -> Reply {
        match header.opcode {
            OpCode::Ping => return Reply::Ping,
            OpCode::Pong => return Reply::Ignored,
            OpCode::Close => {
                let code = payload.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                return Reply::Closed(code);
            }
            OpCode::Continuation if self.in_message.is_none() => {
                return Reply::Broken("a continuation frame outside a message".into());
            }
            OpCode::Text | OpCode::Binary if self.in_message.is_some() => {
                return Reply::Broken("a new message inside a fragmented one".into());
            }
            OpCode::Text | OpCode::Binary if header.opcode != self.opcode => {
                self.mismatch = Some(format!(
                    "a {} echo of a {} message",
                    header.opcode, self.opcode
                ));
            }
            _ => {}
        }
        let start = self.in_message.unwrap_or(0);
        let end = start + payload.len();
        if self.mismatch.is_none() && payload != &self.expected[start..end] {
            let at = payload
                .iter()
                .zip(&self.expected[start..end])
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            self.mismatch = Some(format!("the echo differs at byte {}", start + at));
        }
        if !header.fin {
            self.in_message = Some(end);
            return Reply::Fragment;
        }
        self.in_message = None;
        if end != self.expected.len() && self.mismatch.is_none() {
            self.mismatch = Some(format!(
                "an echo of {end} bytes for {} sent",
                self.expected.len()
            ));
        }
        match self.mismatch.take() {
            Some(wrong) => Reply::Wrong(wrong),
            None => Reply::Echoed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, fin: bool, len: usize) -> FrameHeader {
        FrameHeader {
            fin,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
            payload_len: len as u64,
        }
    }

    #[test]
    fn exact_echoes_pass_and_a_changed_byte_does_not() {
        let mut check = EchoCheck::new(OpCode::Binary, b"abcdef".to_vec());
        let h = header(OpCode::Binary, true, 6);
        assert_eq!(check.check_header(&h), Ok(()));
        assert_eq!(check.frame(&h, b"abcdef"), Reply::Echoed);
        assert_eq!(
            check.frame(&h, b"abcXef"),
            Reply::Wrong("the echo differs at byte 3".into())
        );
        assert_eq!(check.frame(&h, b"abcdef"), Reply::Echoed, "goes on after");
        let short = header(OpCode::Binary, true, 5);
        assert!(matches!(check.frame(&short, b"abcde"), Reply::Wrong(_)));
        let text = header(OpCode::Text, true, 6);
        assert!(matches!(check.frame(&text, b"abcdef"), Reply::Wrong(_)));
    }

    #[test]
    fn fragments_are_checked_in_order() {
        let mut check = EchoCheck::new(OpCode::Text, b"abcdef".to_vec());
        let first = header(OpCode::Text, false, 2);
        assert_eq!(check.frame(&first, b"ab"), Reply::Fragment);
        let middle = header(OpCode::Continuation, false, 2);
        assert_eq!(check.check_header(&middle), Ok(()));
        assert_eq!(check.frame(&middle, b"cd"), Reply::Fragment);
        let too_long = header(OpCode::Continuation, true, 3);
        assert!(check.check_header(&too_long).is_err());
        let last = header(OpCode::Continuation, true, 2);
        assert_eq!(check.frame(&last, b"ef"), Reply::Echoed);
        assert!(matches!(check.frame(&last, b"ef"), Reply::Broken(_)));
    }

    #[test]
    fn control_frames_and_bad_headers() {
        let mut check = EchoCheck::new(OpCode::Binary, vec![1; 4]);
        assert_eq!(
            check.frame(&header(OpCode::Ping, true, 0), b""),
            Reply::Ping
        );
        assert_eq!(
            check.frame(&header(OpCode::Close, true, 2), &1001u16.to_be_bytes()),
            Reply::Closed(Some(1001))
        );
        let mut masked = header(OpCode::Binary, true, 4);
        masked.mask = Some([1, 2, 3, 4]);
        assert!(check.check_header(&masked).unwrap_err().contains("§5.1"));
        let mut rsv = header(OpCode::Binary, true, 4);
        rsv.rsv1 = true;
        assert!(check.check_header(&rsv).is_err());
    }
}
