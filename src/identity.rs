//! The headers that carry the verified identity to the app. The inbound filter strips every
//! header with this prefix that arrives from outside before it sets its own, so they cannot be
//! spoofed past it.

pub const PREFIX: &str = "x-actorchain-";
/// The person (or system) who started the session.
pub const SUB: &str = "x-actorchain-sub";
/// The current actor: the agent that called.
pub const AGENT: &str = "x-actorchain-agent";
/// Every agent in the chain, oldest first, comma-separated.
pub const CHAIN: &str = "x-actorchain-chain";
pub const SCOPE: &str = "x-actorchain-scope";
pub const SESSION: &str = "x-actorchain-sid";
pub const TOKEN_ID: &str = "x-actorchain-jti";

pub fn is_identity_header(name: &str) -> bool {
    name.len() >= PREFIX.len() && name[..PREFIX.len()].eq_ignore_ascii_case(PREFIX)
}
