//! What the peers share: the listen address from the command line, one thread (the
//! benchmark pins the server to one core), and the size limit they all raise.

/// Limit on a message and a frame for every peer: large enough for the benchmark's 64 KiB
/// messages and for the Autobahn suite's 16 MiB ones.
pub const MAX_MESSAGE: usize = 64 << 20;

/// `ADDR` from the first argument (`127.0.0.1:PORT`), or 127.0.0.1:9001.
pub fn addr() -> String {
    std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_string())
}

/// A current-thread tokio runtime, as each crate's own examples use for a server on one core.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
