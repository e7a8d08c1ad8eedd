//! The STS's shared state: configuration, registry, trust material, signing keys, ledger and
//! revocations, each swapped whole on reload so a request sees one consistent version of each.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actorchain_token::wire::{GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE};
use actorchain_token::{KeySet, TimeWindow};

use crate::audit::AuditLog;
use crate::checkpoint::{self, CheckpointFile, LedgerKey};
use crate::config::{Config, Database};
use crate::exchange::{PersonSource, SvidTrust};
use crate::https_client::Connection;
use crate::keys::{generate, FileKeyStore, KeyRing, KeyStore, RotationPolicy};
use crate::ledger::{Ledger, LedgerStore, SqliteLedger};
use crate::metrics::Metrics;
use crate::pg::{PgKeys, PgLedger, PgRegistry, PgRevocations};
use crate::registry::Registry;
use crate::revocations::{Revocations, SqliteRevocations};
use crate::sealing::Kek;
use crate::svid;
use crate::sync::{Locked, ReadWrite};
use crate::telemetry::Telemetry;

pub(crate) struct KeyState {
    pub(crate) ring: KeyRing,
    pub(crate) published: KeySet,
    jwks: String,
}

/// Everything a request reads. Each piece is swapped whole on reload, so a request sees one
/// consistent version of each.
pub struct Sts {
    pub(crate) cfg: Config,
    alg: actorchain_token::Alg,
    pub(crate) registry: RwLock<Arc<Registry>>,
    /// With PostgreSQL, the registry is read from it (and the text last taken in).
    registry_db: Option<Mutex<(PgRegistry, String)>>,
    pub(crate) people: RwLock<Arc<Vec<PersonSource>>>,
    pub(crate) svid: RwLock<Arc<SvidTrust>>,
    pub(crate) keys: RwLock<Arc<KeyState>>,
    /// Where keys are kept and rotated: a file, or the database shared by replicas.
    key_store: Mutex<Box<dyn KeyStore>>,
    mtimes: Mutex<HashMap<PathBuf, SystemTime>>,
    /// Keys of people's issuers configured by URL, as last fetched.
    fetched_jwks: RwLock<HashMap<String, KeySet>>,
    pub metrics: Metrics,
    pub audit: AuditLog,
    pub(crate) ledger: Ledger,
    pub(crate) ledger_reader: Mutex<Box<dyn LedgerStore>>,
    pub revocations: Revocations,
    pub telemetry: Telemetry,
    pub(crate) ledger_key: LedgerKey,
    /// When the last periodic checkpoint was signed.
    last_checkpoint: Mutex<u64>,
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn read_keyset(path: &Path) -> Result<KeySet, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    KeySet::from_jwks(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Sts {
    /// Loads configuration, registry, trust material and keys; creates or rotates keys as needed.
    pub fn open(cfg: Config) -> Result<Arc<Sts>, String> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|e| format!("{}: {e}", cfg.state_dir.display()))?;
        let alg = cfg.signing_alg()?;
        let (registry, registry_db) = match cfg.database() {
            Database::Sqlite(_) => (Registry::load(&cfg.registry).map_err(|e| e.to_string())?, None),
            Database::Postgres(url) => {
                // The file seeds an empty database; afterwards the database is the registry.
                let mut db = PgRegistry::open(&url)?;
                if let Ok(text) = std::fs::read_to_string(&cfg.registry) {
                    db.put(&text, true).map_err(|e| format!("{}: {e}", cfg.registry.display()))?;
                }
                let text = db.get()?.ok_or("no registry in the database and no registry file to seed it")?;
                (Registry::parse(&text).map_err(|e| format!("registry in the database: {e}"))?, Some(Mutex::new((db, text))))
            }
        };
        let people = load_people(&cfg, &HashMap::new())?;
        let svid = load_svid_trust(&cfg)?;
        let mut key_store: Box<dyn KeyStore> = match cfg.database() {
            Database::Sqlite(_) => Box::new(FileKeyStore::new(cfg.keys_file())),
            Database::Postgres(url) => {
                let file = cfg
                    .signing
                    .key_encryption_key_file
                    .as_ref()
                    .ok_or("signing.key_encryption_key_file: required with PostgreSQL (the signing keys are sealed under it there)")?;
                Box::new(PgKeys::open(&url, Kek::load(file)?)?)
            }
        };
        let ring = key_store.update(&mut |_| false)?;
        if ring.is_empty() && !cfg.signing.auto_rotate {
            return Err("no signing keys stored and signing.auto_rotate is off".into());
        }
        let mut mtimes = HashMap::new();
        for p in watched_files(&cfg) {
            if let Some(t) = mtime(&p) {
                mtimes.insert(p, t);
            }
        }
        let audit = match &cfg.audit_log {
            Some(p) => AuditLog::file(p).map_err(|e| format!("{}: {e}", p.display()))?,
            None => AuditLog::stdout(),
        };
        let db = cfg.database();
        let ledger = Ledger::start(open_ledger(&db)?)?;
        let revocations = Revocations::open(match &db {
            Database::Sqlite(p) => Box::new(SqliteRevocations::open(p)?),
            Database::Postgres(url) => Box::new(PgRevocations::open(url)?),
        })?;
        let telemetry = match &cfg.telemetry {
            Some(t) => Telemetry::start(t)?,
            None => Telemetry::off(),
        };
        let ledger_key = LedgerKey::load_or_create(&cfg.ledger_key_file())?;
        let sts = Sts {
            telemetry,
            ledger_key,
            last_checkpoint: Mutex::new(unix_now()),
            ledger_reader: Mutex::new(open_ledger(&db)?),
            ledger,
            revocations,
            audit,
            alg,
            registry: RwLock::new(Arc::new(registry)),
            registry_db,
            people: RwLock::new(Arc::new(people)),
            svid: RwLock::new(Arc::new(svid)),
            keys: RwLock::new(Arc::new(key_state(ring))),
            key_store: Mutex::new(key_store),
            mtimes: Mutex::new(mtimes),
            fetched_jwks: RwLock::new(HashMap::new()),
            metrics: Metrics::default(),
            cfg,
        };
        sts.maintain_keys(unix_now())?;
        sts.metrics.registry_agents.store(sts.registry.reading().len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(Arc::new(sts))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    fn policy(&self) -> RotationPolicy {
        RotationPolicy {
            alg: self.alg,
            rotate_every: self.cfg.signing.rotate_every_seconds,
            publish_lead: self.cfg.signing.publish_lead_seconds,
            retire_after: self.cfg.retire_after(),
        }
    }

    /// Rotates keys as the policy says (one replica at a time, through the key store) and takes in
    /// what the store holds, so a key another replica added is published here too.
    fn maintain_keys(&self, now: u64) -> Result<(), String> {
        let (policy, rotate) = (self.policy(), self.cfg.signing.auto_rotate);
        let ring = self.key_store.locked().update(&mut |ring| rotate && ring.maintain(now, &policy, || generate(self.alg)))?;
        let sorted = |r: &KeyRing| {
            let mut kids: Vec<String> = r.published().kids().map(String::from).collect();
            kids.sort();
            kids
        };
        let kids = sorted(&ring);
        if sorted(&self.keys.reading().ring) != kids {
            // The store has it before anyone signs with it: a key that signed survives a restart.
            self.audit.emit("keys", &serde_json::json!({ "ts": now, "published": kids }));
            *self.keys.writing() = Arc::new(key_state(ring));
        }
        let n = self.keys.reading().ring.len();
        self.metrics.signing_keys.store(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Puts a newly loaded registry in force, or keeps the last good one when it is invalid.
    fn take_registry(&self, loaded: Result<Registry, String>, source: &str, now: u64) -> bool {
        match loaded {
            Ok(r) => {
                self.metrics.registry_agents.store(r.len() as u64, std::sync::atomic::Ordering::Relaxed);
                *self.registry.writing() = Arc::new(r);
                self.metrics.registry_reload("ok");
                self.audit.emit("reload", &serde_json::json!({ "ts": now, "file": source, "result": "ok" }));
                true
            }
            Err(e) => {
                self.metrics.registry_reload("error");
                self.audit.emit("reload", &serde_json::json!({ "ts": now, "file": source, "result": "kept previous", "error": e }));
                false
            }
        }
    }

    /// Takes in the registry stored in the database when it changed (another replica or an
    /// operator stored it); an invalid one is never stored, but a failed read keeps the last.
    fn refresh_registry_from_db(&self, db: &Mutex<(PgRegistry, String)>, now: u64) {
        let mut db = db.locked();
        match db.0.get() {
            Ok(Some(text)) if text != db.1 => {
                if self.take_registry(Registry::parse(&text), "registry (database)", now) {
                    db.1 = text;
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.take_registry(Err(e), "registry (database)", now);
            }
        }
    }

    /// Signs the ledger's head as of `now` and keeps the checkpoint in the state directory.
    pub fn checkpoint(&self, now: u64) -> Result<CheckpointFile, String> {
        let (count, head) = self.ledger_reader.locked().head()?.unwrap_or_else(|| (0, crate::ledger::GENESIS.to_string()));
        let file = self.ledger_key.sign(&self.cfg.issuer, count, &head, now);
        checkpoint::keep(&self.cfg.checkpoints_file(), &file)?;
        self.audit.emit("checkpoint", &serde_json::json!({ "ts": now, "count": count, "head": head }));
        Ok(file)
    }

    fn periodic_checkpoint(&self, now: u64) {
        let every = self.cfg.ledger.checkpoint_every_seconds;
        {
            let mut last = self.last_checkpoint.locked();
            if every == 0 || now < *last + every {
                return;
            }
            *last = now;
        }
        if let Err(e) = self.checkpoint(now) {
            self.audit.emit("checkpoint", &serde_json::json!({ "ts": now, "error": e }));
        }
    }

    /// Periodic upkeep: reloads files that changed (keeping the old version when the new one is
    /// invalid), rotates keys and signs ledger checkpoints when due. `force` reloads regardless of
    /// modification times (SIGHUP).
    pub fn refresh(&self, now: u64, force: bool) {
        self.periodic_checkpoint(now);
        let changed: Vec<PathBuf> = {
            let mut seen = self.mtimes.locked();
            watched_files(&self.cfg)
                .into_iter()
                .filter(|p| {
                    let t = mtime(p);
                    let differs = force || t != seen.get(p).copied();
                    if let Some(t) = t {
                        seen.insert(p.clone(), t);
                    }
                    differs
                })
                .collect()
        };
        if let Some(db) = &self.registry_db {
            self.refresh_registry_from_db(db, now);
        } else if changed.contains(&self.cfg.registry) {
            self.take_registry(Registry::load(&self.cfg.registry).map_err(|e| e.to_string()), "registry", now);
        }
        if changed.iter().any(|p| *p != self.cfg.registry) {
            let people = load_people(&self.cfg, &self.fetched_jwks.reading());
            match (people, load_svid_trust(&self.cfg)) {
                (Ok(p), Ok(s)) => {
                    *self.people.writing() = Arc::new(p);
                    *self.svid.writing() = Arc::new(s);
                }
                (Err(e), _) | (_, Err(e)) => {
                    self.audit.emit("reload", &serde_json::json!({ "ts": now, "file": "trust", "result": "kept previous", "error": e }));
                }
            }
        }
        if let Err(e) = self.maintain_keys(now) {
            self.audit.emit("keys", &serde_json::json!({ "ts": now, "error": e }));
        }
        // Other replicas' revocations (a no-op for a lone STS, which holds them all already).
        if let Err(e) = self.revocations.refresh() {
            self.audit.emit("revocations", &serde_json::json!({ "ts": now, "error": e }));
        }
    }

    /// Whether a key may sign now (readiness).
    pub fn can_sign(&self, now: u64) -> bool {
        self.keys.reading().ring.signing(now).is_some()
    }

    pub fn jwks(&self) -> String {
        self.keys.reading().jwks.clone()
    }

    pub fn metadata(&self) -> String {
        let iss = self.cfg.issuer.trim_end_matches('/');
        serde_json::json!({
            "issuer": self.cfg.issuer,
            "token_endpoint": format!("{iss}/token"),
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "grant_types_supported": [GRANT_TOKEN_EXCHANGE, GRANT_CLIENT_CREDENTIALS],
            "token_endpoint_auth_methods_supported": ["tls_client_auth"],
            "tls_client_certificate_bound_access_tokens": false,
            "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256"],
            "scopes_supported": [],
            "response_types_supported": [],
        })
        .to_string()
    }
}

/// The ledger store `db` names (each caller gets its own connection).
pub fn open_ledger(db: &Database) -> Result<Box<dyn LedgerStore>, String> {
    Ok(match db {
        Database::Sqlite(p) => Box::new(SqliteLedger::open(p)?),
        Database::Postgres(url) => Box::new(PgLedger::open(url)?),
    })
}

fn key_state(ring: KeyRing) -> KeyState {
    let published = ring.published();
    KeyState { jwks: published.to_jwks(), published, ring }
}

fn watched_files(cfg: &Config) -> Vec<PathBuf> {
    let mut v = vec![cfg.registry.clone()];
    v.extend(cfg.jwt_svid.as_ref().map(|j| j.bundle.clone()));
    v.extend(cfg.people.iter().filter_map(|p| p.jwks_file.clone()));
    v
}

/// People's issuers with their keys: from files now, from URLs as last fetched (none before).
fn load_people(cfg: &Config, fetched: &HashMap<String, KeySet>) -> Result<Vec<PersonSource>, String> {
    cfg.people
        .iter()
        .map(|p| {
            let keys = match &p.jwks_file {
                Some(f) => read_keyset(f)?,
                None => fetched.get(&p.issuer).cloned().unwrap_or_default(),
            };
            Ok(PersonSource {
                issuer: actorchain_token::PersonIssuer { issuer: p.issuer.clone(), keys, typ: p.typ.clone() },
                pass_claims: p.pass_claims.clone(),
            })
        })
        .collect()
}

async fn fetch_jwks(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<KeySet, String> {
    let (host, port, path) = crate::config::parse_https_url(url).ok_or("not an https URL")?;
    let addr = tokio::net::lookup_host((host.as_str(), port)).await.map_err(|e| e.to_string())?.next().ok_or("no address")?;
    let mut conn = tokio::time::timeout(Duration::from_secs(5), Connection::connect(addr, &host, tls)).await.map_err(|_| "timed out")??;
    let r = tokio::time::timeout(Duration::from_secs(5), conn.request("GET", &path, &[("accept", "application/json")], Vec::new()))
        .await
        .map_err(|_| "timed out")??;
    if r.status != 200 {
        return Err(format!("status {}", r.status));
    }
    KeySet::from_jwks(r.body.as_bytes()).map_err(|e| e.to_string())
}

/// Keeps the JWKS of every issuer configured by URL fresh: at start (retrying every 5 s until it
/// works), then every `jwks_refresh_seconds`. A failed or poisoned fetch keeps the keys it had.
pub async fn follow_jwks_urls(sts: Arc<Sts>) {
    for p in sts.cfg.people.iter().filter(|p| p.jwks_url.is_some()).cloned() {
        let sts = sts.clone();
        tokio::spawn(async move {
            let url = p.jwks_url.clone().unwrap_or_default();
            let bundle = p.jwks_ca.clone().unwrap_or_else(|| sts.cfg.tls.trust_bundle.clone());
            loop {
                let tls = svid::load_bundle(&bundle)
                    .map_err(|e| e.to_string())
                    .and_then(|b| svid::client_config(&b, None).map_err(|e| e.to_string()));
                let result = match tls {
                    Ok(tls) => fetch_jwks(&url, Arc::new(tls)).await,
                    Err(e) => Err(e),
                };
                let wait = match result {
                    Ok(keys) => {
                        let mut fetched = sts.fetched_jwks.writing();
                        fetched.insert(p.issuer.clone(), keys);
                        match load_people(&sts.cfg, &fetched) {
                            Ok(people) => *sts.people.writing() = Arc::new(people),
                            Err(e) => sts.audit.emit("jwks", &serde_json::json!({ "issuer": p.issuer, "error": e })),
                        }
                        sts.audit.emit("jwks", &serde_json::json!({ "ts": unix_now(), "issuer": p.issuer, "result": "fetched" }));
                        Duration::from_secs(p.jwks_refresh_seconds)
                    }
                    Err(e) => {
                        sts.audit.emit(
                            "jwks",
                            &serde_json::json!({ "ts": unix_now(), "issuer": p.issuer, "url": url, "result": "kept previous", "error": e }),
                        );
                        Duration::from_secs(5)
                    }
                };
                tokio::time::sleep(wait).await;
            }
        });
    }
}

fn load_svid_trust(cfg: &Config) -> Result<SvidTrust, String> {
    Ok(SvidTrust {
        trust_domain: cfg.tls.trust_domain.clone(),
        keys: cfg.jwt_svid.as_ref().map(|j| read_keyset(&j.bundle)).transpose()?.unwrap_or_default(),
        audience: cfg.jwt_svid.as_ref().map(|j| j.audience.clone()).unwrap_or_default(),
        window: TimeWindow { leeway_secs: cfg.leeway_seconds },
    })
}
