//! Following the STS's revocation feed: fetched by each worker's root context at least every
//! `revocation_refresh_ms` (sooner when an exchange was refused as revoked), shared with the other
//! workers through shared data, and pruned once every token an entry could match has expired.

use actorchain_token::{RevocationEntry, RevocationFeed, RevocationSet};

/// Shared-data key of the merged feed every worker adopts.
pub const SHARED_KEY: &str = "actorchain.revocations";

#[derive(Debug, Default)]
pub struct Revocations {
    pub set: RevocationSet,
    entries: Vec<RevocationEntry>,
    pub cursor: u64,
    pub adopted_cas: Option<u32>,
    pub last_attempt_ms: u64,
    pub in_flight: bool,
    /// Fetch at the next tick, whatever the schedule.
    pub wanted: bool,
    /// When the feed was last read successfully, for the lag metric.
    pub fetched_at: u64,
    /// Entries were added since the set was last built.
    changed: bool,
}

impl Revocations {
    pub fn should_fetch(&self, now_ms: u64, every_ms: u64) -> bool {
        !self.in_flight && (self.wanted || now_ms.saturating_sub(self.last_attempt_ms) >= every_ms)
    }

    /// Takes in what the STS sent after our cursor.
    pub fn merge(&mut self, feed: RevocationFeed, now: u64) {
        for e in feed.entries {
            if !self.entries.iter().any(|x| x.id == e.id) {
                self.entries.push(e);
                self.changed = true;
            }
        }
        self.cursor = self.cursor.max(feed.cursor);
        self.fetched_at = now;
        self.wanted = false;
        self.prune(now);
    }

    /// Forgets entries that can no longer match a live token, keeping the set small.
    pub fn prune(&mut self, now: u64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.expires_at > now);
        // Built again only when what it is built from changed (this runs on every tick).
        if self.entries.len() != before || self.changed {
            self.set = RevocationSet::from_entries(&self.entries);
            self.changed = false;
        }
    }

    /// The merged state, for the other workers.
    pub fn snapshot(&self) -> Vec<u8> {
        actorchain_token::to_json_vec(&RevocationFeed { cursor: self.cursor, entries: self.entries.clone() })
    }

    /// Adopts another worker's merged state if it is ahead of ours.
    pub fn adopt(&mut self, bytes: &[u8], now: u64) -> bool {
        match serde_json::from_slice::<RevocationFeed>(bytes) {
            Ok(feed) if feed.cursor >= self.cursor => {
                self.entries.clear();
                self.merge(feed, now);
                true
            }
            _ => false,
        }
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
    use actorchain_token::RevocationKind;

    use super::*;

    fn entry(id: u64, kind: RevocationKind, value: &str, expires_at: u64) -> RevocationEntry {
        RevocationEntry { id, kind, value: value.into(), revoked_at: 0, expires_at, lifts: None }
    }

    #[test]
    fn merges_prunes_and_shares() {
        let mut r = Revocations::default();
        assert!(r.should_fetch(1000, 1000));
        r.merge(
            RevocationFeed {
                cursor: 2,
                entries: vec![entry(1, RevocationKind::Session, "s1", 100), entry(2, RevocationKind::Agent, "a", 50)],
            },
            10,
        );
        assert!(r.set.contains(RevocationKind::Session, "s1"));
        assert_eq!(r.cursor, 2);
        r.merge(RevocationFeed { cursor: 3, entries: vec![entry(3, RevocationKind::Person, "user1", 100)] }, 60);
        assert!(!r.set.contains(RevocationKind::Agent, "a"), "aged out");
        assert_eq!(r.len(), 2);
        let mut other = Revocations::default();
        assert!(other.adopt(&r.snapshot(), 60));
        assert!(other.set.contains(RevocationKind::Person, "user1"));
        assert!(!other.adopt(br#"{"cursor":1,"entries":[]}"#, 60), "an older state is not adopted");
        r.last_attempt_ms = 5000;
        assert!(!r.should_fetch(5500, 1000));
        r.wanted = true;
        assert!(r.should_fetch(5500, 1000));
    }
}
