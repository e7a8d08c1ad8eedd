//! The exchanged-token cache, shared by all workers through Envoy's shared data. Keys are hashes,
//! never raw tokens; an entry is used until a safety margin before its `exp`.

use sha2::{Digest, Sha256};

pub const PREFIX: &str = "actorchain.xchg.";

/// Key for the token exchanged from `subject` for `audience` (length-prefixed, so no two
/// different pairs hash the same input).
pub fn exchange_key(subject: &str, audience: &str) -> String {
    let mut h = Sha256::new();
    for part in [subject, audience] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let mut key = String::with_capacity(PREFIX.len() + 64);
    key.push_str(PREFIX);
    for b in h.finalize() {
        key.push(char::from_digit((b >> 4) as u32, 16).expect("nibble"));
        key.push(char::from_digit((b & 15) as u32, 16).expect("nibble"));
    }
    key
}

/// A cached token with its expiry: `"<exp>\n<token>"`. The same layout serves recorded subjects.
pub fn encode(exp: u64, token: &str) -> Vec<u8> {
    format!("{exp}\n{token}").into_bytes()
}

pub fn decode(bytes: &[u8]) -> Option<(u64, &str)> {
    let s = std::str::from_utf8(bytes).ok()?;
    let (exp, token) = s.split_once('\n')?;
    Some((exp.parse().ok()?, token)).filter(|(_, t)| !t.is_empty())
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
        assert_ne!(exchange_key("ab", "c"), exchange_key("a", "bc"));
        assert_eq!(exchange_key("t", "a").len(), PREFIX.len() + 64);
        assert!(!exchange_key("secret-token", "a").contains("secret"));
        assert_eq!(decode(&encode(42, "tok")), Some((42, "tok")));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"x\ntok"), None);
        assert_eq!(decode(b"5\n"), None);
        assert!(fresh(100, 80, 10));
        assert!(!fresh(100, 90, 10));
    }
}
