//! Which end of the connection an engine plays.

/// The role of an endpoint, which decides masking (RFC 6455 §5.1) and which side of each
/// permessage-deflate parameter applies (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The endpoint that opened the connection: masks every frame it sends.
    Client,
    /// The endpoint that accepted the connection: never masks, requires masked frames.
    Server,
}

impl Role {
    /// The other end's role.
    pub fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}
