//! The verified identity of a caller, and the headers that carry it to the app. The inbound
//! filter strips every header that could be read as one of these before it sets its own, so they
//! cannot be spoofed past it.

use actorchain_token::Handles;

/// The identity a verified token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub sub: String,
    /// The issuer that vouched for `sub`: the person's identity provider, or the STS for an agent
    /// acting as itself. `sub` means nothing without it.
    pub sub_iss: String,
    /// Agents oldest first; empty for a person's own token.
    pub agents: Vec<String>,
    /// `agents` comma-separated, as the app, the correlation record and traces get it: joined once
    /// per token, not per request.
    pub chain: String,
    pub scope: String,
    pub sid: Option<String>,
    pub jti: Option<String>,
    pub exp: u64,
    /// When the token was issued (0 when a person's token does not say), for revocations of a
    /// person or an agent as of a moment.
    pub iat: u64,
    /// SPIFFE ID of the workload the current actor was attested on; none for a person's token.
    pub actor_workload: Option<String>,
}

impl Verified {
    /// What a revocation can match this token by.
    pub fn handles(&self) -> Handles<'_, impl Iterator<Item = &str> + Clone> {
        Handles {
            jti: self.jti.as_deref(),
            sid: self.sid.as_deref(),
            sub_iss: &self.sub_iss,
            sub: &self.sub,
            agents: self.agents.iter().map(String::as_str),
            iat: self.iat,
        }
    }
}

pub const PREFIX: &str = "x-actorchain-";
/// The person (or system) who started the session.
pub const SUB: &str = "x-actorchain-sub";
/// The issuer that vouched for `x-actorchain-sub`.
pub const SUB_ISSUER: &str = "x-actorchain-sub-issuer";
/// The current actor: the agent that called.
pub const AGENT: &str = "x-actorchain-agent";
/// Every agent in the chain, oldest first, comma-separated.
pub const CHAIN: &str = "x-actorchain-chain";
pub const SCOPE: &str = "x-actorchain-scope";
pub const SESSION: &str = "x-actorchain-sid";
pub const TOKEN_ID: &str = "x-actorchain-jti";

/// Whether a header name would be read as one of ours: case folded, and `_` read as `-` the way
/// CGI/WSGI-style frameworks fold names (`X_Actorchain_Sub` is `x-actorchain-sub` to them).
pub fn is_identity_header(name: &str) -> bool {
    let fold = |b: u8| if b == b'_' { b'-' } else { b.to_ascii_lowercase() };
    name.len() >= PREFIX.len() && name.bytes().zip(PREFIX.bytes()).all(|(n, p)| fold(n) == p)
}

/// The headers that hand the verified identity to the app.
pub fn headers(who: &Verified) -> impl Iterator<Item = (&'static str, &str)> {
    [
        Some((SUB, who.sub.as_str())),
        Some((SUB_ISSUER, who.sub_iss.as_str())),
        Some((SCOPE, who.scope.as_str())),
        who.agents.last().map(|a| (AGENT, a.as_str())),
        (!who.agents.is_empty()).then_some((CHAIN, who.chain.as_str())),
        who.sid.as_deref().map(|s| (SESSION, s)),
        who.jti.as_deref().map(|j| (TOKEN_ID, j)),
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alike_names_are_identity_headers() {
        for n in ["x-actorchain-sub", "X-ActorChain-Sub", "x_actorchain_sub", "x-actorchain_sub", "X_ACTORCHAIN_CHAIN", "x-actorchain-"] {
            assert!(is_identity_header(n), "{n}");
        }
        for n in ["x-actorchain", "x-actorchainsub", "xx-actorchain-sub", "authorization", "x-request-id"] {
            assert!(!is_identity_header(n), "{n}");
        }
    }
}
