//! PostgreSQL: the ledger and revocations shared by several STS replicas. Every writer takes a
//! transaction-scoped advisory lock first, so the ledger stays one hash chain and revocation ids
//! become visible in the order they were assigned, whichever replica writes.

use actorchain_token::{RevocationEntry, RevocationKind};
use postgres::{Client, NoTls};

use crate::keys::{KeyRing, KeyStore};
use crate::ledger::{link, Entry, Filter, LedgerStore, Row};
use crate::revocations::{NewRevocation, RevocationStore};
use crate::sealing::Kek;

/// Advisory lock keys ("actorchain" ledger / revocations / schema).
const LEDGER_LOCK: i64 = 0x6163_7463_6c65_6467;
const REVOCATIONS_LOCK: i64 = 0x6163_7463_7265_766b;
const SCHEMA_LOCK: i64 = 0x6163_7463_7363_686d;
const KEYS_LOCK: i64 = 0x6163_7463_6b65_7973;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS ledger (
        seq BIGINT PRIMARY KEY, ts BIGINT NOT NULL, sid TEXT, sub TEXT, chain TEXT NOT NULL,
        body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS ledger_sid ON ledger(sid);
    CREATE INDEX IF NOT EXISTS ledger_sub ON ledger(sub);
    CREATE INDEX IF NOT EXISTS ledger_ts ON ledger(ts);
    CREATE TABLE IF NOT EXISTS registry (id INT PRIMARY KEY CHECK (id = 1), toml TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS signing_keys (id INT PRIMARY KEY CHECK (id = 1), ring TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS revocations (
        id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, value TEXT NOT NULL,
        revoked_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
    ALTER TABLE revocations ADD COLUMN IF NOT EXISTS lifts BIGINT,
        ADD COLUMN IF NOT EXISTS by_whom TEXT NOT NULL DEFAULT '', ADD COLUMN IF NOT EXISTS why TEXT NOT NULL DEFAULT '';";

/// Runs a blocking database call. The synchronous client drives its own small runtime, which may
/// not start on a thread of the STS's async runtime: such a thread is handed over to blocking work
/// for the call first (the ledger writer's own thread needs no such thing).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn err(e: postgres::Error) -> String {
    // The server's message when there is one (constraint, permission), not just "db error"; else
    // the whole cause ("error performing TLS handshake: invalid peer certificate: UnknownIssuer").
    if let Some(d) = e.as_db_error() {
        return format!("{}: {}", d.code().code(), d.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Where and how the STS reaches PostgreSQL: the URL as the driver takes it, and the CA that must
/// have signed the server's certificate when the connection is TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub ca: Option<std::path::PathBuf>,
}

/// Reads libpq's `sslmode` and `sslrootcert` from the URL. `sslmode=verify-full` with
/// `sslrootcert=<CA file>`: TLS, the server's certificate checked against that CA and the host
/// name. Without TLS the server must be on this machine: credentials and every token's metadata
/// travel on this connection. The weaker modes (`prefer`, `require`, `verify-ca`) are refused:
/// none of them checks whom the STS is talking to.
pub fn target(url: &str) -> Result<Target, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut mode, mut ca, mut rest) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_string()),
            Some(("sslrootcert", v)) => ca = Some(std::path::PathBuf::from(v)),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) };
    let shown = redact(&url);
    match mode.as_deref() {
        Some("verify-full") => match ca {
            Some(ca) => Ok(Target { url, ca: Some(ca) }),
            None => Err(format!("{shown}: sslmode=verify-full needs sslrootcert=<the CA file that signed the server's certificate>")),
        },
        None | Some("disable") => {
            let cfg: postgres::Config = url.parse().map_err(|e| format!("{shown}: {e}"))?;
            let local = cfg.get_hosts().iter().all(|h| match h {
                postgres::config::Host::Tcp(name) => matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1"),
                postgres::config::Host::Unix(_) => true,
            });
            if local {
                Ok(Target { url, ca: None })
            } else {
                Err(format!("{shown}: PostgreSQL on another machine needs TLS: add sslmode=verify-full&sslrootcert=<CA file>"))
            }
        }
        Some(other) => {
            Err(format!("{shown}: sslmode={other} does not check the server's name; use sslmode=verify-full&sslrootcert=<CA file>"))
        }
    }
}

/// Connects and makes sure the tables exist (replicas starting together create them once).
pub fn connect(url: &str) -> Result<Client, String> {
    blocking(|| connect_now(url))
}

fn connect_now(url: &str) -> Result<Client, String> {
    let t = target(url)?;
    let shown = redact(&t.url);
    let mut client = match &t.ca {
        Some(ca) => {
            let roots = crate::svid::load_bundle(ca).map_err(|e| e.to_string())?;
            let mut tls = crate::svid::client_config(&roots, None).map_err(|e| e.to_string())?;
            // PostgreSQL's own negotiation: no HTTP ALPN.
            tls.alpn_protocols.clear();
            Client::connect(&t.url, tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        }
        None => Client::connect(&t.url, NoTls),
    }
    .map_err(|e| format!("{shown}: {}", err(e)))?;
    let mut tx = client.transaction().map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK]).map_err(err)?;
    tx.batch_execute(SCHEMA).map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(client)
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

pub struct PgLedger {
    client: Client,
}

impl PgLedger {
    pub fn open(url: &str) -> Result<PgLedger, String> {
        Ok(PgLedger { client: connect(url)? })
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl LedgerStore for PgLedger {
    fn append(&mut self, records: &[Entry]) -> Result<(), String> {
        blocking(|| self.append_now(records))
    }

    fn rows(&mut self, f: &Filter) -> Result<Vec<Row>, String> {
        blocking(|| self.rows_now(f))
    }

    fn head(&mut self) -> Result<Option<(u64, String)>, String> {
        blocking(|| pg_head(&mut self.client))
    }
}

fn pg_head(client: &mut impl postgres::GenericClient) -> Result<Option<(u64, String)>, String> {
    Ok(client
        .query_opt("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1", &[])
        .map_err(err)?
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1))))
}

impl PgLedger {
    fn append_now(&mut self, records: &[Entry]) -> Result<(), String> {
        let mut tx = self.client.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LEDGER_LOCK]).map_err(err)?;
        let head = pg_head(&mut tx)?;
        let stmt = tx
            .prepare("INSERT INTO ledger (seq, ts, sid, sub, chain, body, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
            .map_err(err)?;
        for (row, rec) in link(head, records).iter().zip(records) {
            let chain = actorchain_token::to_json(&rec.chain);
            tx.execute(&stmt, &[&i(row.seq), &i(rec.ts), &rec.sid, &rec.sub, &chain, &row.body, &row.prev_hash, &row.hash]).map_err(err)?;
        }
        // Durable before the caller answers: synchronous_commit is on unless the server says otherwise.
        tx.commit().map_err(err)
    }

    fn rows_now(&mut self, f: &Filter) -> Result<Vec<Row>, String> {
        let agent = f.agent.as_ref().map(actorchain_token::to_json);
        let (since, until) = (f.since.map(i), f.until.map(i));
        let rows = self
            .client
            .query(
                "SELECT seq, body, prev_hash, hash FROM ledger
                 WHERE ($1::TEXT IS NULL OR sid = $1) AND ($2::TEXT IS NULL OR sub = $2)
                   AND ($3::TEXT IS NULL OR strpos(chain, $3) > 0)
                   AND ($4::BIGINT IS NULL OR ts >= $4) AND ($5::BIGINT IS NULL OR ts <= $5)
                   AND ($6::BIGINT IS NULL OR seq > (SELECT COALESCE(MAX(seq), 0) FROM ledger) - $6)
                 ORDER BY seq",
                &[&f.sid, &f.sub, &agent, &since, &until, &f.newest.map(i)],
            )
            .map_err(err)?;
        Ok(rows.iter().map(|r| Row { seq: r.get::<_, i64>(0) as u64, body: r.get(1), prev_hash: r.get(2), hash: r.get(3) }).collect())
    }
}

pub struct PgRevocations {
    client: Client,
}

impl PgRevocations {
    pub fn open(url: &str) -> Result<PgRevocations, String> {
        Ok(PgRevocations { client: connect(url)? })
    }
}

impl RevocationStore for PgRevocations {
    fn insert(&mut self, r: &NewRevocation<'_>) -> Result<u64, String> {
        blocking(|| self.insert_now(r))
    }

    fn since(&mut self, id: u64) -> Result<Vec<RevocationEntry>, String> {
        blocking(|| self.since_now(id))
    }
}

impl PgRevocations {
    fn insert_now(&mut self, r: &NewRevocation<'_>) -> Result<u64, String> {
        let mut tx = self.client.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REVOCATIONS_LOCK]).map_err(err)?;
        let row = tx
            .query_one(
                "INSERT INTO revocations (kind, value, revoked_at, expires_at, lifts, by_whom, why)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&r.kind.as_str(), &r.value, &i(r.revoked_at), &i(r.expires_at), &r.lifts.map(i), &r.by, &r.why],
            )
            .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn since_now(&mut self, id: u64) -> Result<Vec<RevocationEntry>, String> {
        let rows = self
            .client
            .query("SELECT id, kind, value, revoked_at, expires_at, lifts FROM revocations WHERE id > $1 ORDER BY id", &[&i(id)])
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                let kind: String = r.get(1);
                Ok(RevocationEntry {
                    id: r.get::<_, i64>(0) as u64,
                    kind: RevocationKind::parse(&kind).ok_or_else(|| format!("revocations: unknown kind {kind:?}"))?,
                    value: r.get(2),
                    revoked_at: r.get::<_, i64>(3) as u64,
                    expires_at: r.get::<_, i64>(4) as u64,
                    lifts: r.get::<_, Option<i64>>(5).map(|l| l as u64),
                })
            })
            .collect()
    }
}

/// The agent registry, one for all replicas: stored as its TOML text, validated before it is
/// stored, read by every replica each second.
pub struct PgRegistry {
    client: Client,
}

impl PgRegistry {
    pub fn open(url: &str) -> Result<PgRegistry, String> {
        Ok(PgRegistry { client: connect(url)? })
    }

    /// The stored registry text, if any.
    pub fn get(&mut self) -> Result<Option<String>, String> {
        blocking(|| Ok(self.client.query_opt("SELECT toml FROM registry WHERE id = 1", &[]).map_err(err)?.map(|r| r.get(0))))
    }

    /// Replaces the registry, if `text` is a valid one; `only_if_empty` stores it only when none is
    /// stored yet (a replica seeding the database from its file). Says whether it stored.
    pub fn put(&mut self, text: &str, only_if_empty: bool) -> Result<bool, String> {
        crate::registry::Registry::parse(text)?;
        let sql = if only_if_empty {
            "INSERT INTO registry (id, toml) VALUES (1, $1) ON CONFLICT (id) DO NOTHING"
        } else {
            "INSERT INTO registry (id, toml) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET toml = EXCLUDED.toml"
        };
        blocking(|| Ok(self.client.execute(sql, &[&text]).map_err(err)? == 1))
    }
}

/// The signing keys, one ring for all replicas, each private key sealed under the replicas'
/// key-encryption key (`sealing.rs`): the database never holds one in the clear.
pub struct PgKeys {
    client: Client,
    kek: Kek,
}

impl PgKeys {
    pub fn open(url: &str, kek: Kek) -> Result<PgKeys, String> {
        Ok(PgKeys { client: connect(url)?, kek })
    }

    fn update_now(&mut self, change: &mut dyn FnMut(&mut KeyRing) -> bool) -> Result<KeyRing, String> {
        let mut tx = self.client.transaction().map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&KEYS_LOCK]).map_err(err)?;
        let stored: Option<String> = tx.query_opt("SELECT ring FROM signing_keys WHERE id = 1", &[]).map_err(err)?.map(|r| r.get(0));
        // A ring stored in the clear (before keys were sealed) is taken in and sealed at once.
        let clear = stored.as_deref().is_some_and(|t| !t.contains("\"sealed_keys\""));
        let mut ring = match &stored {
            Some(text) if clear => KeyRing::from_json(text, "signing_keys").map_err(|e| e.to_string())?,
            Some(text) => KeyRing::from_sealed_json(text, &self.kek, "signing_keys").map_err(|e| e.to_string())?,
            None => KeyRing::default(),
        };
        if change(&mut ring) || clear {
            tx.execute(
                "INSERT INTO signing_keys (id, ring) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET ring = EXCLUDED.ring",
                &[&ring.to_sealed_json(&self.kek)],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(ring)
    }
}

impl KeyStore for PgKeys {
    fn update(&mut self, change: &mut dyn FnMut(&mut KeyRing) -> bool) -> Result<KeyRing, String> {
        blocking(|| self.update_now(change))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_is_verify_full_or_the_server_is_on_this_machine() {
        use super::target;
        let t =
            target("postgres://sts:pw@db.example:5432/actorchain?sslmode=verify-full&sslrootcert=/etc/ca.pem&connect_timeout=5").unwrap();
        assert_eq!(t.url, "postgres://sts:pw@db.example:5432/actorchain?connect_timeout=5");
        assert_eq!(t.ca.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(target("postgres://sts@127.0.0.1:5432/actorchain").unwrap().ca, None);
        assert_eq!(target("postgres://sts@localhost/actorchain?sslmode=disable").unwrap().ca, None);
        for (url, says) in [
            ("postgres://sts:pw@db.example/actorchain", "needs TLS"),
            ("postgres://sts@db.example/actorchain?sslmode=require", "sslmode=require does not check"),
            ("postgres://sts@127.0.0.1/actorchain?sslmode=prefer", "sslmode=prefer does not check"),
            ("postgres://sts@db.example/actorchain?sslmode=verify-ca&sslrootcert=/ca.pem", "sslmode=verify-ca"),
            ("postgres://sts@db.example/actorchain?sslmode=verify-full", "needs sslrootcert"),
        ] {
            let e = target(url).unwrap_err();
            assert!(e.contains(says) && !e.contains(":pw@"), "{url}: {e}");
        }
    }

    #[test]
    fn urls_in_messages_hide_the_password() {
        assert_eq!(super::redact("postgres://sts:s3cret@db:5432/actorchain"), "postgres://sts:***@db:5432/actorchain");
        assert_eq!(super::redact("postgres://db/actorchain"), "postgres://db/actorchain");
    }
}
