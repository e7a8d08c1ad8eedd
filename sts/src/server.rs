//! The running STS: shared state, the HTTPS token endpoint and the admin listener.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actorchain_token::wire::{ExchangeResponse, GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE};
use actorchain_token::{sign_compact, KeySet, RevocationEntry, RevocationKind, TimeWindow, TYP_ACCESS_TOKEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::audit::AuditLog;
use crate::config::{Config, Database};
use crate::error::{ExchangeError, OAuthCode};
use crate::exchange::{authenticate, decide, AuditRecord, PersonSource, SvidTrust, Verifiers};
use crate::form::{parse_token_request, MAX_FORM_BYTES};
use crate::https_client::Connection;
use crate::keys::{generate, FileKeyStore, KeyRing, KeyStore, RotationPolicy};
use crate::ledger::{session_tree, Filter, Ledger, LedgerStore, SqliteLedger};
use crate::metrics::Metrics;
use crate::pg::{PgKeys, PgLedger, PgRegistry, PgRevocations};
use crate::registry::Registry;
use crate::revocations::{Revocations, SqliteRevocations};
use crate::svid;
use crate::sync::{Locked, ReadWrite};

type Body = Full<Bytes>;

/// Who the TLS layer says is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// No client certificate: only a JWT-SVID actor token can authenticate this caller.
    Anonymous,
    Workload(String),
    /// A certificate that chains to the bundle but is not a usable X.509-SVID.
    Invalid(String),
}

struct KeyState {
    ring: KeyRing,
    published: KeySet,
    jwks: String,
}

/// Everything a request reads. Each piece is swapped whole on reload, so a request sees one
/// consistent version of each.
pub struct Sts {
    cfg: Config,
    alg: actorchain_token::Alg,
    registry: RwLock<Arc<Registry>>,
    /// With PostgreSQL, the registry is read from it (and the text last taken in).
    registry_db: Option<Mutex<(PgRegistry, String)>>,
    people: RwLock<Arc<Vec<PersonSource>>>,
    svid: RwLock<Arc<SvidTrust>>,
    keys: RwLock<Arc<KeyState>>,
    /// Where keys are kept and rotated: a file, or the database shared by replicas.
    key_store: Mutex<Box<dyn KeyStore>>,
    mtimes: Mutex<HashMap<PathBuf, SystemTime>>,
    /// Keys of people's issuers configured by URL, as last fetched.
    fetched_jwks: RwLock<HashMap<String, KeySet>>,
    pub metrics: Metrics,
    pub audit: AuditLog,
    ledger: Ledger,
    ledger_reader: Mutex<Box<dyn LedgerStore>>,
    pub revocations: Revocations,
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
            Database::Postgres(url) => Box::new(PgKeys::open(&url)?),
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
        let sts = Sts {
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

    /// Takes in the registry stored in the database when it changed (another replica or an
    /// operator stored it); an invalid one is never stored, but a failed read keeps the last.
    fn refresh_registry_from_db(&self, db: &Mutex<(PgRegistry, String)>, now: u64) {
        let mut db = db.locked();
        let text = match db.0.get() {
            Ok(Some(t)) if t != db.1 => t,
            Ok(_) => return,
            Err(e) => {
                self.audit.emit(
                    "reload",
                    &serde_json::json!({ "ts": now, "file": "registry (database)", "result": "kept previous", "error": e }),
                );
                return;
            }
        };
        match Registry::parse(&text) {
            Ok(r) => {
                self.metrics.registry_agents.store(r.len() as u64, std::sync::atomic::Ordering::Relaxed);
                *self.registry.writing() = Arc::new(r);
                self.metrics.registry_reload("ok");
                self.audit.emit("reload", &serde_json::json!({ "ts": now, "file": "registry (database)", "result": "ok" }));
                db.1 = text;
            }
            Err(e) => {
                self.metrics.registry_reload("error");
                self.audit.emit(
                    "reload",
                    &serde_json::json!({ "ts": now, "file": "registry (database)", "result": "kept previous", "error": e }),
                );
            }
        }
    }

    /// Periodic upkeep: reloads files that changed (keeping the old version when the new one is
    /// invalid) and rotates keys. `force` reloads regardless of modification times (SIGHUP).
    pub fn refresh(&self, now: u64, force: bool) {
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
            match Registry::load(&self.cfg.registry) {
                Ok(r) => {
                    self.metrics.registry_agents.store(r.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    *self.registry.writing() = Arc::new(r);
                    self.metrics.registry_reload("ok");
                    self.audit.emit("reload", &serde_json::json!({ "ts": now, "file": "registry", "result": "ok" }));
                }
                Err(e) => {
                    self.metrics.registry_reload("error");
                    self.audit.emit(
                        "reload",
                        &serde_json::json!({ "ts": now, "file": "registry", "result": "kept previous", "error": e.to_string() }),
                    );
                }
            }
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

    /// One exchange, start to finish: parse, authenticate, decide, sign, record in the ledger,
    /// audit. Returns the HTTP status and JSON body; nothing is answered before the decision is
    /// durable. Used by the HTTP handler and by in-process benchmarks.
    pub async fn exchange(&self, body: &[u8], peer: &Peer, now: u64) -> (u16, String) {
        let started = Instant::now();
        let mut rec = AuditRecord { ts: now, ..Default::default() };
        let outcome = self.exchange_inner(body, peer, now, &mut rec);
        let (mut status, mut body, mut reason) = match outcome {
            Ok(body) => (200, body, "granted"),
            Err(e) => (e.status(), e.body(), e.reason),
        };
        rec.decision = if status == 200 { "granted" } else { "refused" };
        rec.reason = reason;
        if let Err(why) = self.ledger.record(rec.clone()).await {
            // A grant that cannot be recorded is not handed out.
            let e = ExchangeError::new(OAuthCode::ServerError, "ledger_unavailable", "the decision could not be recorded; try again");
            self.audit.emit("ledger", &serde_json::json!({ "ts": now, "error": why }));
            (status, body, reason) = (e.status(), e.body(), e.reason);
            rec.decision = "refused";
            rec.reason = reason;
        }
        self.audit.emit("decision", &rec);
        self.metrics.decision(rec.decision, reason, started.elapsed());
        (status, body)
    }

    fn exchange_inner(&self, body: &[u8], peer: &Peer, now: u64, rec: &mut AuditRecord) -> Result<String, ExchangeError> {
        let req = parse_token_request(body)?;
        rec.client_id = Some(req.client_id.clone());
        let svid = self.svid.reading().clone();
        let peer_id = match peer {
            Peer::Anonymous => None,
            Peer::Workload(id) => Some(id.as_str()),
            Peer::Invalid(why) => return Err(ExchangeError::new(OAuthCode::InvalidClient, "workload_svid_invalid", why.clone())),
        };
        let workload = authenticate(peer_id, req.actor_token.as_deref(), &svid, now)?;
        let registry = self.registry.reading().clone();
        let people = self.people.reading().clone();
        let keys = self.keys.reading().clone();
        let revoked = self.revocations.set();
        let v = Verifiers {
            issuer: &self.cfg.issuer,
            own_keys: &keys.published,
            people: &people,
            window: TimeWindow { leeway_secs: self.cfg.leeway_seconds },
            max_depth: self.cfg.max_depth,
            revoked: &revoked,
        };
        let grant = decide(&registry, &v, &req, &workload, now, new_jti(), rec)?;
        let (kid, key) = keys
            .ring
            .signing(now)
            .ok_or_else(|| ExchangeError::new(OAuthCode::ServerError, "no_signing_key", "the STS has no key that may sign now"))?;
        let token = sign_compact(&grant.claims, key, kid, Some(TYP_ACCESS_TOKEN));
        let answer = ExchangeResponse {
            access_token: token,
            issued_token_type: req.issued_token_type.to_string(),
            token_type: "Bearer".to_string(),
            expires_in: grant.claims.exp - now,
            scope: grant.claims.scope,
        };
        Ok(actorchain_token::to_json(&answer))
    }
}

impl Sts {
    fn is_admin(&self, peer: &Peer) -> bool {
        matches!(peer, Peer::Workload(id) if self.cfg.admin_ids.contains(id))
    }

    /// Revokes a token, a session, an agent or a person. Entries stay in the feed until every
    /// token they could match has expired: a token's own `exp`, or the longest lifetime the STS
    /// mints for the others (it refuses new tokens for them from now on).
    pub fn revoke(&self, kind: RevocationKind, value: &str, token_exp: Option<u64>, now: u64) -> Result<RevocationEntry, String> {
        let expires_at = token_exp.unwrap_or(now + crate::registry::MAX_TTL_SECS) + self.cfg.leeway_seconds;
        let entry = self.revocations.revoke(kind, value, now, expires_at)?;
        self.metrics.revocation(kind.as_str());
        self.audit.emit("revocation", &entry);
        Ok(entry)
    }

    /// RFC 7009: revokes one of this STS's tokens. Anything that is not one (unknown, garbled,
    /// foreign) is answered the same way, so the endpoint is no oracle.
    fn revoke_token(&self, body: &[u8], now: u64) -> Result<(), String> {
        let Some(token) = form_urlencoded::parse(body).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()) else {
            return Ok(());
        };
        let keys = self.keys.reading().clone();
        let Ok(u) = actorchain_token::Unverified::parse(&token, actorchain_token::TypRule::Exactly(TYP_ACCESS_TOKEN)) else {
            return Ok(());
        };
        let Ok(claims) = u.claims::<actorchain_token::Claims>() else { return Ok(()) };
        if claims.iss != self.cfg.issuer || u.verify_signature(&keys.published).is_err() {
            return Ok(());
        }
        self.revoke(RevocationKind::Token, &claims.jti, Some(claims.exp), now).map(|_| ())
    }

    fn ledger_query(&self, query: &str) -> Result<serde_json::Value, String> {
        let mut f = Filter::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "sid" => f.sid = Some(v.into_owned()),
                "sub" => f.sub = Some(v.into_owned()),
                "issuer" => f.issuer = Some(v.into_owned()),
                "agent" => f.agent = Some(v.into_owned()),
                "since" => f.since = Some(v.parse().map_err(|_| "since: seconds since the epoch")?),
                "until" => f.until = Some(v.parse().map_err(|_| "until: seconds since the epoch")?),
                other => return Err(format!("unknown query parameter {other}")),
            }
        }
        let rows = crate::ledger::select(&mut **self.ledger_reader.locked(), &f)?;
        let records: Vec<serde_json::Value> = rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
        let mut out = serde_json::json!({ "records": records });
        if f.sid.is_some() {
            out["tree"] = serde_json::Value::String(session_tree(&rows));
        }
        Ok(out)
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

fn new_jti() -> String {
    B64.encode(crate::keys::random::<16>())
}

fn json(status: u16, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn no_store(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

async fn handle(sts: &Sts, req: Request<Incoming>, peer: &Peer) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/token") => {
            let form =
                req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
                    v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
                });
            if !form {
                let e = ExchangeError::new(OAuthCode::InvalidRequest, "content_type_unsupported", "send application/x-www-form-urlencoded")
                    .with_status(415);
                return no_store(json(e.status(), e.body()));
            }
            let body = match Limited::new(req.into_body(), MAX_FORM_BYTES).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    let e = ExchangeError::new(
                        OAuthCode::InvalidRequest,
                        "body_too_large",
                        format!("request body exceeds {MAX_FORM_BYTES} bytes"),
                    )
                    .with_status(413);
                    return no_store(json(e.status(), e.body()));
                }
            };
            let (status, body) = sts.exchange(&body, peer, unix_now()).await;
            no_store(json(status, body))
        }
        (_, "/token") => {
            let e = ExchangeError::new(OAuthCode::InvalidRequest, "method_not_allowed", "use POST").with_status(405);
            let mut r = no_store(json(e.status(), e.body()));
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
            r
        }
        (&Method::POST, "/revoke") if sts.is_admin(peer) => {
            let body = Limited::new(req.into_body(), MAX_FORM_BYTES).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            match sts.revoke_token(&body, unix_now()) {
                Ok(()) => no_store(json(200, "{}".into())),
                Err(e) => json(500, serde_json::json!({"error": "server_error", "error_description": e}).to_string()),
            }
        }
        (&Method::POST, "/admin/revocations") if sts.is_admin(peer) => {
            let body = Limited::new(req.into_body(), MAX_FORM_BYTES).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Ask {
                kind: String,
                value: String,
                /// For a person: the issuer that vouched for them (two IdPs' `user1` are two people).
                issuer: Option<String>,
            }
            let ask = match serde_json::from_slice::<Ask>(&body) {
                Ok(a) => a,
                Err(e) => {
                    return json(400, serde_json::json!({"error": "invalid_request", "error_description": e.to_string()}).to_string())
                }
            };
            let Some(kind) = RevocationKind::parse(&ask.kind) else {
                return json(
                    400,
                    r#"{"error":"invalid_request","error_description":"kind must be token, session, agent or person"}"#.into(),
                );
            };
            if !actorchain_token::is_principal_id(&ask.value) {
                return json(
                    400,
                    r#"{"error":"invalid_request","error_description":"value must be 1-256 printable ASCII characters"}"#.into(),
                );
            }
            let value = match (kind, ask.issuer) {
                (RevocationKind::Person, Some(iss)) if actorchain_token::is_issuer_id(&iss) => {
                    actorchain_token::person_handle(&iss, &ask.value)
                }
                (RevocationKind::Person, _) => {
                    return json(
                        400,
                        r#"{"error":"invalid_request","error_description":"a person is named by issuer and value (the subject)"}"#.into(),
                    )
                }
                (_, None) => ask.value,
                (_, Some(_)) => {
                    return json(400, r#"{"error":"invalid_request","error_description":"issuer names a person's issuer only"}"#.into())
                }
            };
            match sts.revoke(kind, &value, None, unix_now()) {
                Ok(e) => json(200, actorchain_token::to_json(&e)),
                Err(e) => json(500, serde_json::json!({"error": "server_error", "error_description": e}).to_string()),
            }
        }
        (&Method::GET, "/admin/ledger") if sts.is_admin(peer) => match sts.ledger_query(req.uri().query().unwrap_or("")) {
            Ok(v) => json(200, v.to_string()),
            Err(e) => json(400, serde_json::json!({"error": "invalid_request", "error_description": e}).to_string()),
        },
        (_, "/revoke") | (_, "/admin/revocations") | (_, "/admin/ledger") => {
            json(403, r#"{"error":"access_denied","error_description":"admin endpoints need an admin SVID named in admin_ids"}"#.into())
        }
        (&Method::GET, "/revocations") if matches!(peer, Peer::Workload(_)) => {
            let since = req
                .uri()
                .query()
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "since").and_then(|(_, v)| v.parse().ok()))
                .unwrap_or(0);
            let mut r = json(200, actorchain_token::to_json(&sts.revocations.feed(since, unix_now())));
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        (_, "/revocations") => json(401, r#"{"error":"invalid_client","error_description":"present a workload SVID"}"#.into()),
        (&Method::GET, "/.well-known/jwks.json") => {
            let mut r = json(200, sts.jwks());
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
            r
        }
        (&Method::GET, "/.well-known/oauth-authorization-server") => json(200, sts.metadata()),
        _ => json(404, r#"{"error":"not_found"}"#.into()),
    }
}

fn peer_of(conn: &rustls::ServerConnection, trust_domain: &str) -> Peer {
    match conn.peer_certificates().and_then(|c| c.first()) {
        None => Peer::Anonymous,
        Some(leaf) => match svid::spiffe_id_of(leaf, trust_domain) {
            Ok(id) => Peer::Workload(id),
            Err(why) => Peer::Invalid(why),
        },
    }
}

/// Serves the token endpoint over TLS until the process ends.
pub async fn serve(sts: Arc<Sts>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let _ = tcp.set_nodelay(true);
        let (acceptor, sts) = (acceptor.clone(), sts.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else { return };
            let peer = Arc::new(peer_of(stream.get_ref().1, &sts.cfg.tls.trust_domain));
            let svc = service_fn(move |req| {
                let (sts, peer) = (sts.clone(), peer.clone());
                async move { Ok::<_, Infallible>(handle(&sts, req, &peer).await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Serves health, readiness and metrics over plain HTTP.
pub async fn serve_admin(sts: Arc<Sts>, listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let sts = sts.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let sts = sts.clone();
                async move {
                    let r = match req.uri().path() {
                        "/healthz" => json(200, r#"{"status":"ok"}"#.into()),
                        "/readyz" if sts.keys.reading().ring.signing(unix_now()).is_some() => json(200, r#"{"status":"ready"}"#.into()),
                        "/readyz" => json(503, r#"{"status":"no signing key"}"#.into()),
                        "/metrics" => {
                            let mut r = Response::new(Full::new(Bytes::from(sts.metrics.render())));
                            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
                            r
                        }
                        _ => json(404, r#"{"error":"not_found"}"#.into()),
                    };
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}
