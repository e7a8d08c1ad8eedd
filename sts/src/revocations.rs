//! Revocations in force at the STS: persisted in the state database, enforced on every exchange,
//! and published as a feed with a `since` cursor for the filters.

use std::sync::{Arc, Mutex, RwLock};

use actorchain_token::{RevocationEntry, RevocationFeed, RevocationKind, RevocationSet};

use crate::sync::{Locked, ReadWrite};

/// A revocation, or the lift of one, to store: with who asked for it and why.
#[derive(Debug, Clone, Copy)]
pub struct NewRevocation<'a> {
    pub kind: RevocationKind,
    pub value: &'a str,
    pub revoked_at: u64,
    pub expires_at: u64,
    pub lifts: Option<u64>,
    /// The SPIFFE ID of the admin or the token's holder.
    pub by: &'a str,
    pub why: &'a str,
}

/// Where revocations are kept: SQLite embedded (one STS), or PostgreSQL shared by replicas.
pub trait RevocationStore: Send {
    /// Stores one revocation (or lift) durably; its id. Ids become visible in increasing order
    /// (writers are serialized), so a reader that has seen id n has seen every id below it.
    fn insert(&mut self, r: &NewRevocation<'_>) -> Result<u64, String>;
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
        let mut entries = self.entries.writing();
        for e in fresh {
            // A concurrent refresh may have taken these in already.
            if e.id > entries.last().map_or(0, |l| l.id) {
                entries.push(e);
            }
        }
        *self.set.writing() = Arc::new(RevocationSet::from_entries(entries.iter()));
        Ok(())
    }

    /// Whether entry `id` is a revocation in force: stored, not a lift, not lifted.
    fn in_force(entries: &[RevocationEntry], id: u64) -> bool {
        entries.iter().any(|e| e.id == id && e.lifts.is_none()) && !entries.iter().any(|e| e.lifts == Some(id))
    }

    /// Records a revocation durably, then enforces it; `Ok((entry, true))` when it is new. A token
    /// or a session already revoked stays as it is (the existing entry); a person or an agent
    /// revoked again is revoked as of now.
    pub fn revoke(&self, r: &NewRevocation<'_>) -> Result<(RevocationEntry, bool), String> {
        let existing = |entries: &[RevocationEntry]| {
            entries.iter().rev().find(|e| e.kind == r.kind && e.value == r.value && Self::in_force(entries, e.id)).cloned()
        };
        if let Some(e) = existing(&self.entries.reading()).filter(|_| !r.kind.as_of_a_moment()) {
            return Ok((e, false));
        }
        let id = self.store.locked().insert(r)?;
        self.stored(id)
    }

    /// Lifts revocation `id`: recorded like a revocation, and what it revoked is valid again.
    /// `Ok((lift, true))` when it is new; lifting it again returns the first lift.
    pub fn lift(&self, id: u64, now: u64, by: &str, why: &str) -> Result<Option<(RevocationEntry, bool)>, String> {
        let (target, done) = {
            let entries = self.entries.reading();
            let target = entries.iter().find(|e| e.id == id && e.lifts.is_none()).cloned();
            (target, entries.iter().find(|e| e.lifts == Some(id)).cloned())
        };
        let Some(target) = target else { return Ok(None) };
        if let Some(lift) = done {
            return Ok(Some((lift, false)));
        }
        let r = NewRevocation {
            kind: target.kind,
            value: &target.value,
            revoked_at: now,
            expires_at: target.expires_at,
            lifts: Some(id),
            by,
            why,
        };
        let stored = self.store.locked().insert(&r)?;
        self.stored(stored).map(Some)
    }

    fn stored(&self, id: u64) -> Result<(RevocationEntry, bool), String> {
        self.refresh()?;
        let found = self.entries.reading().iter().find(|e| e.id == id).cloned();
        found.map(|e| (e, true)).ok_or_else(|| "the revocation was stored but could not be read back".to_string())
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
        // Who and why, and lifts, came later: a database from before gains the columns.
        let has_lifts: bool = conn
            .query_row("SELECT COUNT(*) FROM pragma_table_info('revocations') WHERE name = 'lifts'", [], |r| r.get::<_, i64>(0))
            .map(|n| n > 0)
            .map_err(|e| e.to_string())?;
        if !has_lifts {
            conn.execute_batch(
                "ALTER TABLE revocations ADD COLUMN lifts INTEGER;
                 ALTER TABLE revocations ADD COLUMN by_whom TEXT NOT NULL DEFAULT '';
                 ALTER TABLE revocations ADD COLUMN why TEXT NOT NULL DEFAULT '';",
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(SqliteRevocations { conn })
    }
}

impl RevocationStore for SqliteRevocations {
    fn insert(&mut self, r: &NewRevocation<'_>) -> Result<u64, String> {
        self.conn
            .execute(
                "INSERT INTO revocations (kind, value, revoked_at, expires_at, lifts, by_whom, why) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![
                    r.kind.as_str(),
                    r.value,
                    r.revoked_at as i64,
                    r.expires_at as i64,
                    r.lifts.map(|l| l as i64),
                    r.by,
                    r.why
                ],
            )
            .map_err(|e| e.to_string())?;
        Ok(self.conn.last_insert_rowid() as u64)
    }

    fn since(&mut self, id: u64) -> Result<Vec<RevocationEntry>, String> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, kind, value, revoked_at, expires_at, lifts FROM revocations WHERE id > ?1 ORDER BY id")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([id as i64], |r| {
                Ok(RevocationEntry {
                    id: r.get::<_, i64>(0)? as u64,
                    kind: kind_of(&r.get::<_, String>(1)?)?,
                    value: r.get(2)?,
                    revoked_at: r.get::<_, i64>(3)? as u64,
                    expires_at: r.get::<_, i64>(4)? as u64,
                    lifts: r.get::<_, Option<i64>>(5)?.map(|l| l as u64),
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<_, _>>().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(kind: RevocationKind, value: &str, now: u64, expires_at: u64) -> NewRevocation<'_> {
        NewRevocation { kind, value, revoked_at: now, expires_at, lifts: None, by: "spiffe://td/admin", why: "test" }
    }

    #[test]
    fn persists_dedups_lifts_and_feeds_from_a_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let r = Revocations::open(Box::new(SqliteRevocations::open(&path).unwrap())).unwrap();
        let (a, new) = r.revoke(&ask(RevocationKind::Session, "s1", 100, 500)).unwrap();
        assert!(new);
        assert_eq!(r.revoke(&ask(RevocationKind::Session, "s1", 200, 900)).unwrap(), (a.clone(), false));
        let (b, _) = r.revoke(&ask(RevocationKind::Agent, "monitoring-agent", 150, 400)).unwrap();
        assert!(r.set().contains(RevocationKind::Agent, "monitoring-agent"));
        let f = r.feed(0, 120);
        assert_eq!((f.cursor, f.entries.len()), (b.id, 2));
        assert_eq!(r.feed(a.id, 120).entries, vec![b.clone()]);
        // Aged out of the feed once every token it could match has expired, but still enforced.
        assert_eq!(r.feed(0, 450).entries, vec![a.clone()]);
        // A person revoked twice: two entries, the later moment counts.
        let (p1, _) = r.revoke(&ask(RevocationKind::Person, "https://idp user1", 160, 900)).unwrap();
        let (p2, new) = r.revoke(&ask(RevocationKind::Person, "https://idp user1", 170, 900)).unwrap();
        assert!(new && p2.id > p1.id);
        // Lifted: out of force, the lift itself in the feed; lifting again changes nothing; an
        // unknown id is no lift.
        let (lift, new) = r.lift(b.id, 180, "spiffe://td/admin", "false alarm").unwrap().unwrap();
        assert!(new && lift.lifts == Some(b.id) && lift.expires_at == b.expires_at);
        assert!(!r.set().contains(RevocationKind::Agent, "monitoring-agent"));
        assert_eq!(r.lift(b.id, 190, "spiffe://td/admin", "again").unwrap(), Some((lift.clone(), false)));
        assert_eq!(r.lift(9999, 190, "spiffe://td/admin", "none").unwrap(), None);
        assert!(r.feed(p2.id, 185).entries.contains(&lift));
        // A lifted agent revoked again is a new revocation.
        assert!(r.revoke(&ask(RevocationKind::Agent, "monitoring-agent", 200, 400)).unwrap().1);
        let reopened = Revocations::open(Box::new(SqliteRevocations::open(&path).unwrap())).unwrap();
        assert!(reopened.set().contains(RevocationKind::Agent, "monitoring-agent"));
        assert_eq!(reopened.set(), r.set());
    }

    #[test]
    fn a_database_from_before_who_and_why_gains_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE revocations (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, value TEXT NOT NULL,
                 revoked_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
             INSERT INTO revocations (kind, value, revoked_at, expires_at) VALUES ('session', 's0', 1, 9999999999);",
        )
        .unwrap();
        drop(old);
        let r = Revocations::open(Box::new(SqliteRevocations::open(&path).unwrap())).unwrap();
        assert!(r.set().contains(RevocationKind::Session, "s0"));
        assert!(r.revoke(&ask(RevocationKind::Session, "s1", 5, 500)).unwrap().1);
    }
}
