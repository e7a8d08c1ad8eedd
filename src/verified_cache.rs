//! Tokens this worker has already verified, so a token presented again costs a hash and a lookup
//! instead of a signature check. Keyed by the whole token (SipHash with a per-process random key,
//! then full comparison), so a lookup can never return another token's identity, and cheaper in
//! wasm than a cryptographic digest. Bounded in entries and bytes; entries end with their token's
//! validity; the whole cache is dropped whenever the key set changes.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use crate::identity::Verified;

/// Most token bytes held, whatever the entry count: 4096 tokens of 1 KiB.
const MAX_BYTES: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct VerifiedCache {
    capacity: usize,
    bytes: usize,
    entries: HashMap<Rc<str>, Rc<Verified>>,
    /// Insertion order: the oldest entry goes first when the cache is full.
    order: VecDeque<Rc<str>>,
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> Self {
        VerifiedCache { capacity, ..Default::default() }
    }

    /// The identity of `token` if it was verified before and is still within its validity at
    /// `now` (the same `exp + leeway` rule the verifier applies).
    pub fn get(&mut self, token: &str, now: u64, leeway: u64) -> Option<Rc<Verified>> {
        let v = self.entries.get(token)?;
        if now >= v.exp.saturating_add(leeway) {
            // Left in `order`; eviction skips keys that are already gone.
            if let Some((k, _)) = self.entries.remove_entry(token) {
                self.bytes -= k.len();
            }
            return None;
        }
        Some(v.clone())
    }

    pub fn insert(&mut self, token: &str, who: &Rc<Verified>) {
        if self.capacity == 0 || token.len() > MAX_BYTES || self.entries.contains_key(token) {
            return;
        }
        // `order` may still name entries that expired; bounding it bounds their memory too.
        while self.entries.len() >= self.capacity || self.bytes + token.len() > MAX_BYTES || self.order.len() >= 2 * self.capacity {
            let Some(old) = self.order.pop_front() else { break };
            if let Some((k, _)) = self.entries.remove_entry(&old) {
                self.bytes -= k.len();
            }
        }
        let key: Rc<str> = Rc::from(token);
        self.bytes += key.len();
        self.order.push_back(key.clone());
        self.entries.insert(key, who.clone());
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(exp: u64) -> Rc<Verified> {
        Rc::new(Verified {
            sub: "user1".into(),
            sub_iss: "https://idp".into(),
            agents: vec!["a".into()],
            chain: "a".into(),
            scope: "s".into(),
            sid: None,
            jti: None,
            exp,
            iat: 0,
            actor_workload: None,
        })
    }

    #[test]
    fn bounded_and_honours_expiry() {
        let mut c = VerifiedCache::new(2);
        c.insert("t1", &who(100));
        c.insert("t2", &who(100));
        assert_eq!(c.get("t1", 50, 0), Some(who(100)));
        c.insert("t3", &who(100));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("t1", 50, 0), None, "the oldest entry made room");
        assert_eq!(c.get("t3", 100, 0), None, "expired at exp");
        assert_eq!(c.get("t2", 109, 10), Some(who(100)), "within leeway");
        c.clear();
        assert!(c.is_empty());
        let mut off = VerifiedCache::new(0);
        off.insert("t", &who(100));
        assert_eq!(off.get("t", 0, 0), None);
    }
}
