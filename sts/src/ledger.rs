//! The audit ledger: every exchange decision, granted or refused, recorded durably before the STS
//! answers, in a hash chain that shows the first record edited, removed or reordered behind the
//! STS's back. Writes are group-committed by one writer thread so throughput holds.

use std::collections::HashSet;
use std::sync::mpsc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::exchange::AuditRecord;

/// A record to append: its JSON body, and the columns it is found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ts: u64,
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub chain: Vec<String>,
    pub body: String,
}

impl From<&AuditRecord> for Entry {
    /// One of the STS's own decisions (an exchange, a revocation).
    fn from(rec: &AuditRecord) -> Entry {
        Entry { ts: rec.ts, sid: rec.sid.clone(), sub: rec.sub.clone(), chain: rec.chain.clone(), body: actorchain_token::to_json(rec) }
    }
}

impl Entry {
    /// A decision a sidecar reported, attributed to the workload that sent it.
    pub fn reported(r: &actorchain_token::wire::Report, workload: &str) -> Entry {
        let body = actorchain_token::wire::Report { workload: Some(workload.to_string()), ..r.clone() };
        Entry {
            ts: r.ts,
            sid: r.sid.clone(),
            sub: r.sub.clone(),
            chain: r.chain.clone().unwrap_or_default(),
            body: actorchain_token::to_json(&body),
        }
    }
}

/// One stored record: its place in the chain, the decision as JSON, and the chain hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    pub seq: u64,
    pub body: String,
    pub prev_hash: String,
    pub hash: String,
}

/// Which records a query wants. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub sid: Option<String>,
    pub sub: Option<String>,
    /// The issuer that vouched for `sub` (records carry it as `sub_iss`).
    pub issuer: Option<String>,
    pub agent: Option<String>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    /// Only among the ledger's newest this many records (a bound on what a query reads).
    pub newest: Option<u64>,
}

/// Where the ledger lives: SQLite embedded (one STS), or PostgreSQL shared by several replicas.
pub trait LedgerStore: Send {
    /// Appends the records as the chain's next links, atomically and durably: all or none. The
    /// store reads the chain's head and writes in one transaction that no other writer (thread,
    /// process or replica) can interleave with, so there is one chain however many write.
    fn append(&mut self, records: &[Entry]) -> Result<(), String>;
    fn rows(&mut self, filter: &Filter) -> Result<Vec<Row>, String>;
    /// The last record's sequence number and hash (`None` for an empty ledger).
    fn head(&mut self) -> Result<Option<(u64, String)>, String>;
}

/// The rows `f` selects, the issuer of their subject included.
pub fn select(store: &mut dyn LedgerStore, f: &Filter) -> Result<Vec<Row>, String> {
    let mut rows = store.rows(f)?;
    if let Some(iss) = &f.issuer {
        rows.retain(|r| serde_json::from_str::<serde_json::Value>(&r.body).is_ok_and(|b| b["sub_iss"].as_str() == Some(iss.as_str())));
    }
    Ok(rows)
}

/// The rows that continue the chain at `head` (sequence number and hash) with `records`.
pub fn link(head: Option<(u64, String)>, records: &[Entry]) -> Vec<Row> {
    let (mut seq, mut prev) = head.unwrap_or((0, GENESIS.to_string()));
    records
        .iter()
        .map(|rec| {
            seq += 1;
            let hash = link_hash(&prev, seq, &rec.body);
            Row { seq, body: rec.body.clone(), prev_hash: std::mem::replace(&mut prev, hash.clone()), hash }
        })
        .collect()
}

/// The genesis link of every chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn link_hash(prev_hash: &str, seq: u64, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(seq.to_string().as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What `verify` found wrong first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    pub seq: u64,
    pub what: &'static str,
}

/// Walks the whole chain. `Ok(n)`: n records, all linked and unaltered.
pub fn verify(rows: &[Row]) -> Result<u64, Tamper> {
    let mut prev = GENESIS.to_string();
    for (i, r) in rows.iter().enumerate() {
        let expected = i as u64 + 1;
        if r.seq != expected {
            return Err(Tamper { seq: expected, what: "record missing (removed)" });
        }
        if r.prev_hash != prev {
            return Err(Tamper { seq: r.seq, what: "record does not follow its predecessor (removed or reordered)" });
        }
        if link_hash(&r.prev_hash, r.seq, &r.body) != r.hash {
            return Err(Tamper { seq: r.seq, what: "record edited" });
        }
        prev = r.hash.clone();
    }
    Ok(rows.len() as u64)
}

type Job = (Entry, oneshot::Sender<Result<(), String>>);

/// The writer. `record` resolves once the decision is durable.
pub struct Ledger {
    tx: mpsc::Sender<Job>,
}

/// Most decisions committed in one transaction.
const MAX_BATCH: usize = 512;

impl Ledger {
    pub fn start(mut store: Box<dyn LedgerStore>) -> Result<Ledger, String> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    let records: Vec<Entry> = jobs.iter().map(|(r, _)| r.clone()).collect();
                    let result = store.append(&records);
                    for (_, ack) in jobs {
                        let _ = ack.send(result.clone());
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Ledger { tx })
    }

    /// Durably records one decision; the caller answers only after this succeeds.
    pub async fn record(&self, rec: AuditRecord) -> Result<(), String> {
        self.append(vec![Entry::from(&rec)]).await
    }

    /// Durably records entries, in order; resolves once all are durable.
    pub async fn append(&self, entries: Vec<Entry>) -> Result<(), String> {
        let mut acks = Vec::with_capacity(entries.len());
        for e in entries {
            let (ack, done) = oneshot::channel();
            self.tx.send((e, ack)).map_err(|_| "ledger writer stopped".to_string())?;
            acks.push(done);
        }
        for done in acks {
            done.await.map_err(|_| "ledger writer stopped".to_string())??;
        }
        Ok(())
    }
}

/// SQLite in WAL mode with full synchronous commits: a decision acknowledged is on disk.
pub struct SqliteLedger {
    conn: rusqlite::Connection,
}

impl SqliteLedger {
    pub fn open(path: &std::path::Path) -> Result<SqliteLedger, String> {
        let conn = crate::db::open(
            path,
            "CREATE TABLE IF NOT EXISTS ledger (
                 seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, sid TEXT, sub TEXT, chain TEXT NOT NULL,
                 body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS ledger_sid ON ledger(sid);
             CREATE INDEX IF NOT EXISTS ledger_sub ON ledger(sub);
             CREATE INDEX IF NOT EXISTS ledger_ts ON ledger(ts);",
        )?;
        Ok(SqliteLedger { conn })
    }
}

impl LedgerStore for SqliteLedger {
    fn append(&mut self, records: &[Entry]) -> Result<(), String> {
        // IMMEDIATE: the write lock is taken before the head is read.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| e.to_string())?;
        let head = sqlite_head(&tx)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO ledger (seq, ts, sid, sub, chain, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| e.to_string())?;
            for (row, rec) in link(head, records).iter().zip(records) {
                let chain = actorchain_token::to_json(&rec.chain);
                stmt.execute(rusqlite::params![row.seq as i64, rec.ts as i64, rec.sid, rec.sub, chain, row.body, row.prev_hash, row.hash])
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    fn rows(&mut self, f: &Filter) -> Result<Vec<Row>, String> {
        let agent = f.agent.as_ref().map(actorchain_token::to_json);
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, body, prev_hash, hash FROM ledger
                 WHERE (?1 IS NULL OR sid = ?1) AND (?2 IS NULL OR sub = ?2) AND (?3 IS NULL OR instr(chain, ?3) > 0)
                   AND (?4 IS NULL OR ts >= ?4) AND (?5 IS NULL OR ts <= ?5)
                   AND (?6 IS NULL OR seq > (SELECT COALESCE(MAX(seq), 0) FROM ledger) - ?6)
                 ORDER BY seq",
            )
            .map_err(|e| e.to_string())?;
        let newest = f.newest.map(|n| n as i64);
        let rows = stmt
            .query_map(rusqlite::params![f.sid, f.sub, agent, f.since.map(|v| v as i64), f.until.map(|v| v as i64), newest], |r| {
                Ok(Row { seq: r.get::<_, i64>(0)? as u64, body: r.get(1)?, prev_hash: r.get(2)?, hash: r.get(3)? })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
    }

    fn head(&mut self) -> Result<Option<(u64, String)>, String> {
        sqlite_head(&self.conn)
    }
}

fn sqlite_head(conn: &rusqlite::Connection) -> Result<Option<(u64, String)>, String> {
    use rusqlite::OptionalExtension;
    conn.query_row("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
        .optional()
        .map_err(|e| e.to_string())
}

/// RFC 3339 UTC for a Unix time (civil-from-days, proleptic Gregorian).
pub fn rfc3339(ts: u64) -> String {
    let (days, secs) = ((ts / 86_400) as i64, ts % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// The delegation tree of a session as text, one record a line, each under the token it is about:
/// an exchange under the token it was exchanged from, a sidecar's report (a request accepted or
/// refused, a tool call, a call served from cache) under the token it judged or used:
/// `user1 (https://idp) -> oncall-agent => investigation-agent  granted (granted)  at ...`,
/// `  [mcp-server] inbound allowed (rule) tools/call create_pr  rule create-pr  at ...`.
pub fn session_tree(rows: &[Row]) -> String {
    let recs: Vec<serde_json::Value> = rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
    let minted: HashSet<&str> = recs.iter().filter(|r| !is_report(r)).filter_map(|r| r["jti"].as_str()).collect();
    // Under which token a record goes: an exchange under its parent, a report under the token it
    // is about; a report about a token not minted in this session goes at the top.
    let parent = |r: &serde_json::Value| -> Option<String> {
        if is_report(r) {
            r["jti"].as_str().filter(|j| minted.contains(j)).map(String::from)
        } else {
            r["parent_jti"].as_str().map(String::from)
        }
    };
    let mut out = String::new();
    subtree(&recs, &parent, None, 0, &mut out);
    out
}

/// Whether a ledger record is a sidecar's report (the STS's own have no direction).
fn is_report(r: &serde_json::Value) -> bool {
    r["direction"].is_string()
}

/// The records under token `under` (the top when `None`), in ledger order, each followed by its own.
fn subtree(
    recs: &[serde_json::Value],
    parent: &dyn Fn(&serde_json::Value) -> Option<String>,
    under: Option<&str>,
    depth: usize,
    out: &mut String,
) {
    for r in recs.iter().filter(|r| parent(r).as_deref() == under) {
        out.push_str(&"  ".repeat(depth));
        out.push_str(&tree_line(r));
        out.push('\n');
        if let Some(jti) = r["jti"].as_str().filter(|_| !is_report(r)) {
            subtree(recs, parent, Some(jti), depth + 1, out);
        }
    }
}

/// One record of a session tree.
fn tree_line(r: &serde_json::Value) -> String {
    let text = |k: &str| r[k].as_str().unwrap_or("?");
    let at = rfc3339(r["ts"].as_u64().unwrap_or(0));
    if is_report(r) {
        // A sidecar's report: which workload said it, and what it decided about what.
        let workload = r["workload"].as_str().and_then(|w| w.rsplit('/').next()).unwrap_or("?");
        let mut line = format!("[{workload}] {} {} ({})", text("direction"), text("decision"), text("reason"));
        for (k, label) in [("method", ""), ("name", ""), ("audience", "to "), ("rule", "rule ")] {
            if let Some(v) = r[k].as_str().filter(|v| !v.is_empty()) {
                line.push_str(&format!(" {label}{v}"));
            }
        }
        if let Some(n) = r["count"].as_u64() {
            line.push_str(&format!(" x{n}"));
        }
        return format!("{line}  at {at}");
    }
    if let Some(by) = r["by"].as_str() {
        // A revocation or its lift: what, on whose word, why.
        return format!(
            "{} {} ({}) by {by}: {}  at {at}",
            text("decision"),
            text("revoked"),
            text("reason"),
            r["why"].as_str().unwrap_or("")
        );
    }
    // The person as their issuer names them: two IdPs' `user1` are two people.
    let sub = text("sub");
    let mut path = vec![r["sub_iss"].as_str().map_or_else(|| sub.to_string(), |iss| format!("{sub} ({iss})"))];
    path.extend(r["chain"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(String::from)));
    format!(
        "{} => {}  {} ({})  at {at}  exp {}  scope [{}]",
        path.join(" -> "),
        text("audience"),
        text("decision"),
        text("reason"),
        r["exp"].as_u64().map_or("-".to_string(), rfc3339),
        r["scope"].as_str().unwrap_or(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> AuditRecord {
        AuditRecord { ts: i, decision: "granted", reason: "granted", jti: Some(format!("j{i}")), ..Default::default() }
    }

    #[test]
    fn formats_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_815_836), "2026-11-27T21:43:56Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[tokio::test]
    async fn chains_commits_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let ledger = Ledger::start(Box::new(SqliteLedger::open(&path).unwrap())).unwrap();
        let mut waits = Vec::new();
        for i in 1..=20 {
            waits.push(ledger.record(rec(i)));
        }
        for w in waits {
            w.await.unwrap();
        }
        let mut store = SqliteLedger::open(&path).unwrap();
        let rows = store.rows(&Filter::default()).unwrap();
        assert_eq!(verify(&rows), Ok(20));
        // Continues the same chain after a restart.
        drop(ledger);
        let again = Ledger::start(Box::new(SqliteLedger::open(&path).unwrap())).unwrap();
        again.record(rec(21)).await.unwrap();
        let rows = store.rows(&Filter::default()).unwrap();
        assert_eq!(verify(&rows), Ok(21));
        let newest = store.rows(&Filter { newest: Some(5), ..Default::default() }).unwrap();
        assert_eq!(newest.iter().map(|r| r.seq).collect::<Vec<_>>(), [17, 18, 19, 20, 21]);

        let mut edited = rows.clone();
        edited[6].body = edited[6].body.replace("granted", "refused");
        assert_eq!(verify(&edited), Err(Tamper { seq: 7, what: "record edited" }));
        let mut removed = rows.clone();
        removed.remove(3);
        assert_eq!(verify(&removed).unwrap_err().seq, 4);
        let mut swapped = rows.clone();
        swapped.swap(9, 10);
        assert_eq!(verify(&swapped).unwrap_err().seq, 10);
    }
}
