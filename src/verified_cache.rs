//! Tokens this worker has already verified, so a token presented again costs a hash and a lookup
//! instead of a signature check. Bounded; entries end with their token's validity; the whole cache
//! is dropped whenever the key set changes, so a key leaving the JWKS takes its tokens with it.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::inbound::Verified;

type Digest32 = [u8; 32];

#[derive(Debug, Default)]
pub struct VerifiedCache {
    capacity: usize,
    entries: HashMap<Digest32, Verified>,
    /// Insertion order: the oldest entry goes first when the cache is full.
    order: VecDeque<Digest32>,
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> Self {
        VerifiedCache { capacity, ..Default::default() }
    }

    /// The identity of `token` if it was verified before and is still within its validity at
    /// `now` (the same `exp + leeway` rule the verifier applies).
    pub fn get(&mut self, token: &str, now: u64, leeway: u64) -> Option<Verified> {
        if self.capacity == 0 {
            return None;
        }
        let d = digest(token);
        let v = self.entries.get(&d)?;
        if now >= v.exp.saturating_add(leeway) {
            self.entries.remove(&d);
            return None;
        }
        Some(v.clone())
    }

    pub fn insert(&mut self, token: &str, who: &Verified) {
        if self.capacity == 0 {
            return;
        }
        let d = digest(token);
        if self.entries.insert(d, who.clone()).is_none() {
            self.order.push_back(d);
        }
        while self.entries.len() > self.capacity || self.order.len() > self.capacity * 2 {
            match self.order.pop_front() {
                Some(old) if old != d => {
                    self.entries.remove(&old);
                }
                Some(_) => self.order.push_back(d),
                None => break,
            }
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
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

    fn who(exp: u64) -> Verified {
        Verified { sub: "user1".into(), agents: vec!["a".into()], scope: "s".into(), sid: None, jti: None, exp }
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
