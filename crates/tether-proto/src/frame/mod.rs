//! The base framing protocol (RFC 6455 §5.2): opcodes and frame headers.

mod header;
mod opcode;

pub use header::{FrameHeader, MAX_HEADER_LEN};
pub use opcode::OpCode;
