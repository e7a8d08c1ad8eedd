//! Revocations in force at the STS: persisted in the state database, enforced on every exchange,
//! and published as a feed with a `since` cursor for the filters.

use std::sync::{Arc, Mutex, RwLock};

use actorchain_token::{RevocationEntry, RevocationFeed, RevocationKind, RevocationSet};

use crate::sync::{Locked, ReadWrite};

/// Where revocations are kept: SQLite embedded (one STS), or PostgreSQL shared by replicas.
pub trait RevocationStore: Send {
    /// Stores one revocation durably; its id. Ids become visible in increasing order (writers are
    /// serialized), so a reader that has seen id n has seen every id below it.
    fn insert(&mut self, kind: RevocationKind, value: &str, revoked_at: u64, expires_at: u64) -> Result<u64, String>;
    /// Every revocation with an id above `id`, in id order.
    fn since(&mut self, id: u64) -> Result<Vec<RevocationEntry>, String>;
}

pub struct Revocations {
    store: Mutex<Box<dyn RevocationStore>>,
    set: RwLock<Arc<RevocationSet>>,
    entries: RwLock<Vec<RevocationEntry>>,
}

impl Revocations {
    pub fn open(store: Box<dyn RevocationStore>) -> Result<Revocations, String> {
        let r = Revocations { store: Mutex::new(store), set: RwLock::default(), entries: RwLock::default() };
        r.refresh()?;
        Ok(r)
    }

    /// Takes in what other replicas recorded since the last look (nothing new for a lone STS).
    pub fn refresh(&self) -> Result<(), String> {
        let last = self.entries.reading().last().map_or(0, |e| e.id);
        let fresh = self.store.locked().since(last)?;
        if fresh.is_empty() {
            return Ok(());
        }
        let mut set = (**self.set.reading()).clone();
        let mut entries = self.entries.writing();
        for e in fresh {
            // A concurrent refresh may have taken these in already.
            if e.id > entries.last().map_or(0, |l| l.id) {
                set.insert(e.kind, &e.value);
                entries.push(e);
            }
        }
        *self.set.writing() = Arc::new(set);
        Ok(())
    }

    /// Records a revocation durably, then enforces it. Revoking what is already revoked changes
    /// nothing and returns the existing entry.
    pub fn revoke(&self, kind: RevocationKind, value: &str, now: u64, expires_at: u64) -> Result<RevocationEntry, String> {
        let existing = |entries: &[RevocationEntry]| entries.iter().find(|e| e.kind == kind && e.value == value).cloned();
        if let Some(e) = existing(&self.entries.reading()) {
            return Ok(e);
        }
        self.store.locked().insert(kind, value, now, expires_at)?;
        self.refresh()?;
        existing(&self.entries.reading()).ok_or_else(|| "the revocation was stored but could not be read back".to_string())
    }

    pub fn set(&self) -> Arc<RevocationSet> {
        self.set.reading().clone()
    }

    /// Entries after `since` that can still match a live token, and the cursor to ask from next.
    pub fn feed(&self, since: u64, now: u64) -> RevocationFeed {
        let entries = self.entries.reading();
        RevocationFeed {
            cursor: entries.last().map_or(0, |e| e.id).max(since),
            entries: entries.iter().filter(|e| e.id > since && e.expires_at > now).cloned().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.reading().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Revocations in the STS's SQLite database.
pub struct SqliteRevocations {
    conn: rusqlite::Connection,
}

fn kind_of(s: &str) -> rusqlite::Result<RevocationKind> {
    RevocationKind::parse(s).ok_or_else(|| rusqlite::Error::InvalidColumnType(1, "kind".into(), rusqlite::types::Type::Text))
}

impl SqliteRevocations {
    pub fn open(path: &std::path::Path) -> Result<SqliteRevocations, String> {
        let conn = crate::db::open(
            path,
            "CREATE TABLE IF NOT EXISTS revocations (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, value TEXT NOT NULL,
                 revoked_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);",
        )?;
        Ok(SqliteRevocations { conn })
    }
}

impl RevocationStore for SqliteRevocations {
    fn insert(&mut self, kind: RevocationKind, value: &str, revoked_at: u64, expires_at: u64) -> Result<u64, String> {
        self.conn
            .execute(
                "INSERT INTO revocations (kind, value, revoked_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![kind.as_str(), value, revoked_at as i64, expires_at as i64],
            )
            .map_err(|e| e.to_string())?;
        Ok(self.conn.last_insert_rowid() as u64)
    }

    fn since(&mut self, id: u64) -> Result<Vec<RevocationEntry>, String> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, kind, value, revoked_at, expires_at FROM revocations WHERE id > ?1 ORDER BY id")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([id as i64], |r| {
                Ok(RevocationEntry {
                    id: r.get::<_, i64>(0)? as u64,
                    kind: kind_of(&r.get::<_, String>(1)?)?,
                    value: r.get(2)?,
                    revoked_at: r.get::<_, i64>(3)? as u64,
                    expires_at: r.get::<_, i64>(4)? as u64,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_dedups_and_feeds_from_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let r = Revocations::open(Box::new(SqliteRevocations::open(&path).unwrap())).unwrap();
        let a = r.revoke(RevocationKind::Session, "s1", 100, 500).unwrap();
        assert_eq!(r.revoke(RevocationKind::Session, "s1", 200, 900).unwrap(), a);
        let b = r.revoke(RevocationKind::Agent, "monitoring-agent", 150, 400).unwrap();
        assert!(r.set().contains(RevocationKind::Agent, "monitoring-agent"));
        let f = r.feed(0, 120);
        assert_eq!((f.cursor, f.entries.len()), (b.id, 2));
        assert_eq!(r.feed(a.id, 120).entries, vec![b.clone()]);
        // Aged out of the feed once every token it could match has expired, but still enforced.
        assert_eq!(r.feed(0, 450).entries, vec![a.clone()]);
        let reopened = Revocations::open(Box::new(SqliteRevocations::open(&path).unwrap())).unwrap();
        assert!(reopened.set().contains(RevocationKind::Agent, "monitoring-agent"));
        assert_eq!(reopened.feed(0, 0).cursor, b.id);
    }
}
