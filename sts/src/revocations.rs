//! Revocations in force at the STS: persisted in the state database, enforced on every exchange,
//! and published as a feed with a `since` cursor for the filters.

use std::sync::{Arc, Mutex, RwLock};

use actorchain_token::{RevocationEntry, RevocationFeed, RevocationKind, RevocationSet};

pub struct Revocations {
    conn: Mutex<rusqlite::Connection>,
    set: RwLock<Arc<RevocationSet>>,
    entries: RwLock<Vec<RevocationEntry>>,
}

fn kind_of(s: &str) -> rusqlite::Result<RevocationKind> {
    RevocationKind::parse(s).ok_or_else(|| rusqlite::Error::InvalidColumnType(1, "kind".into(), rusqlite::types::Type::Text))
}

impl Revocations {
    pub fn open(path: &std::path::Path) -> Result<Revocations, String> {
        let conn = crate::db::open(
            path,
            "CREATE TABLE IF NOT EXISTS revocations (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, value TEXT NOT NULL,
                 revoked_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);",
        )?;
        let entries: Vec<RevocationEntry> = {
            let mut stmt =
                conn.prepare("SELECT id, kind, value, revoked_at, expires_at FROM revocations ORDER BY id").map_err(|e| e.to_string())?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(RevocationEntry {
                        id: r.get::<_, i64>(0)? as u64,
                        kind: kind_of(&r.get::<_, String>(1)?)?,
                        value: r.get(2)?,
                        revoked_at: r.get::<_, i64>(3)? as u64,
                        expires_at: r.get::<_, i64>(4)? as u64,
                    })
                })
                .map_err(|e| e.to_string())?;
            rows.collect::<Result<_, _>>().map_err(|e| e.to_string())?
        };
        let mut set = RevocationSet::default();
        for e in &entries {
            set.insert(e.kind, &e.value);
        }
        Ok(Revocations { conn: Mutex::new(conn), set: RwLock::new(Arc::new(set)), entries: RwLock::new(entries) })
    }

    /// Records a revocation durably, then enforces it. Revoking what is already revoked changes
    /// nothing and returns the existing entry.
    pub fn revoke(&self, kind: RevocationKind, value: &str, now: u64, expires_at: u64) -> Result<RevocationEntry, String> {
        if let Some(e) = self.entries.read().expect("lock").iter().find(|e| e.kind == kind && e.value == value) {
            return Ok(e.clone());
        }
        let conn = self.conn.lock().expect("lock");
        conn.execute(
            "INSERT INTO revocations (kind, value, revoked_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![kind.as_str(), value, now as i64, expires_at as i64],
        )
        .map_err(|e| e.to_string())?;
        let entry = RevocationEntry { id: conn.last_insert_rowid() as u64, kind, value: value.to_string(), revoked_at: now, expires_at };
        let mut set = (**self.set.read().expect("lock")).clone();
        set.insert(kind, value);
        *self.set.write().expect("lock") = Arc::new(set);
        self.entries.write().expect("lock").push(entry.clone());
        Ok(entry)
    }

    pub fn set(&self) -> Arc<RevocationSet> {
        self.set.read().expect("lock").clone()
    }

    /// Entries after `since` that can still match a live token, and the cursor to ask from next.
    pub fn feed(&self, since: u64, now: u64) -> RevocationFeed {
        let entries = self.entries.read().expect("lock");
        RevocationFeed {
            cursor: entries.last().map_or(0, |e| e.id).max(since),
            entries: entries.iter().filter(|e| e.id > since && e.expires_at > now).cloned().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().expect("lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_dedups_and_feeds_from_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let r = Revocations::open(&path).unwrap();
        let a = r.revoke(RevocationKind::Session, "s1", 100, 500).unwrap();
        assert_eq!(r.revoke(RevocationKind::Session, "s1", 200, 900).unwrap(), a);
        let b = r.revoke(RevocationKind::Agent, "monitoring-agent", 150, 400).unwrap();
        assert!(r.set().contains(RevocationKind::Agent, "monitoring-agent"));
        let f = r.feed(0, 120);
        assert_eq!((f.cursor, f.entries.len()), (b.id, 2));
        assert_eq!(r.feed(a.id, 120).entries, vec![b.clone()]);
        // Aged out of the feed once every token it could match has expired, but still enforced.
        assert_eq!(r.feed(0, 450).entries, vec![a.clone()]);
        let reopened = Revocations::open(&path).unwrap();
        assert!(reopened.set().contains(RevocationKind::Agent, "monitoring-agent"));
        assert_eq!(reopened.feed(0, 0).cursor, b.id);
    }
}
