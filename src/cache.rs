//! The exchanged-token cache, shared by all workers through Envoy's shared data. Keys are hashes,
//! never raw tokens; an entry is used until a safety margin before its `exp`.

use actorchain_token::Handles;
use sha2::{Digest, Sha256};

pub const PREFIX: &str = "actorchain.xchg.";

/// Key for the token exchanged from `subject` for `audience` with at most `scope` (length-prefixed,
/// so no two different triples hash the same input).
pub fn exchange_key(subject: &str, audience: &str, scope: &str) -> String {
    let mut h = Sha256::new();
    for part in [subject, audience, scope] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let mut key = String::with_capacity(PREFIX.len() + 64);
    key.push_str(PREFIX);
    push_hex(&mut key, &h.finalize());
    key
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lower-case hex, without an allocation per byte (this is on the request path).
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// A document with the time it was fetched: `"<at>\n<document>"` (the shared JWKS).
pub fn stamp(at: u64, doc: &str) -> Vec<u8> {
    format!("{at}\n{doc}").into_bytes()
}

pub fn unstamp(bytes: &[u8]) -> Option<(u64, &str)> {
    let s = std::str::from_utf8(bytes).ok()?;
    let (at, doc) = s.split_once('\n')?;
    Some((at.parse().ok()?, doc)).filter(|(_, d)| !d.is_empty())
}

/// A token held in shared data (an exchanged token, or a subject recorded for the trace context),
/// with what revocation can match it by, so a hit is checked without parsing the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    pub exp: u64,
    /// When the token was issued: a person's or an agent's revocation covers tokens issued up to it.
    pub iat: u64,
    pub jti: &'a str,
    pub sid: &'a str,
    pub sub_iss: &'a str,
    pub sub: &'a str,
    /// Agents of the chain, comma-separated.
    pub agents: &'a str,
    pub token: &'a str,
}

/// The agents of an entry, from its comma-separated list.
pub type AgentIter<'a> = std::iter::Filter<std::str::Split<'a, char>, fn(&&str) -> bool>;

fn field(s: &str) -> String {
    // Identifiers from a person's IdP are arbitrary JSON strings; keep the layout unambiguous.
    s.replace(['\n', ','], " ")
}

impl<'a> Entry<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let (jti, sid, iss, sub) = (field(self.jti), field(self.sid), field(self.sub_iss), field(self.sub));
        format!("{} {}\n{jti}\n{sid}\n{iss}\n{sub}\n{}\n{}", self.exp, self.iat, self.agents, self.token).into_bytes()
    }

    pub fn decode(bytes: &'a [u8]) -> Option<Entry<'a>> {
        let mut p = std::str::from_utf8(bytes).ok()?.splitn(7, '\n');
        let (exp, iat) = p.next()?.split_once(' ')?;
        let e = Entry {
            exp: exp.parse().ok()?,
            iat: iat.parse().ok()?,
            jti: p.next()?,
            sid: p.next()?,
            sub_iss: p.next()?,
            sub: p.next()?,
            agents: p.next()?,
            token: p.next()?,
        };
        (!e.token.is_empty()).then_some(e)
    }

    pub fn handles(&self) -> Handles<'a, AgentIter<'a>> {
        let nonempty: fn(&&str) -> bool = |a| !a.is_empty();
        Handles {
            jti: Some(self.jti).filter(|j| !j.is_empty()),
            sid: Some(self.sid).filter(|s| !s.is_empty()),
            sub_iss: self.sub_iss,
            sub: self.sub,
            agents: self.agents.split(',').filter(nonempty),
            iat: self.iat,
        }
    }
}

/// Whether an entry may still be handed out at `now`.
pub fn fresh(exp: u64, now: u64, margin: u64) -> bool {
    exp > now.saturating_add(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_entries() {
        assert_ne!(exchange_key("ab", "c", ""), exchange_key("a", "bc", ""));
        assert_ne!(exchange_key("t", "a", "repo:write"), exchange_key("t", "a", ""));
        assert_eq!(exchange_key("t", "a", "").len(), PREFIX.len() + 64);
        assert!(!exchange_key("secret-token", "a", "").contains("secret"));
        assert_eq!(unstamp(&stamp(42, "doc")), Some((42, "doc")));
        assert_eq!(unstamp(b""), None);
        assert_eq!(unstamp(b"x\ndoc"), None);
        let e = Entry { exp: 9, iat: 3, jti: "j\n1", sid: "s", sub_iss: "https://idp", sub: "user1", agents: "a,b", token: "t.o.k" };
        let bytes = e.encode();
        let d = Entry::decode(&bytes).unwrap();
        assert_eq!((d.exp, d.iat, d.jti, d.sub_iss, d.agents, d.token), (9, 3, "j 1", "https://idp", "a,b", "t.o.k"));
        assert_eq!(d.handles().agents.collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(Entry::decode(b"9 3\nj\ns\ni\nu\na\n"), None);
        assert_eq!(Entry::decode(b"9\nj\ns\ni\nu\na\nt"), None);
        assert!(fresh(100, 80, 10));
        assert!(!fresh(100, 90, 10));
    }
}
