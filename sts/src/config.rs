//! The STS configuration file (TOML). Relative paths are resolved against the file's folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use actorchain_token::{Alg, DEFAULT_MAX_DEPTH, MAX_DEPTH_CEILING};
use serde::Deserialize;

use crate::registry::MAX_TTL_SECS;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `iss` of every minted token and the RFC 8414 issuer identifier.
    pub issuer: String,
    pub listen: SocketAddr,
    /// Health and metrics; keep it on loopback or a private interface.
    pub admin_listen: SocketAddr,
    pub state_dir: PathBuf,
    pub registry: PathBuf,
    /// Decision log destination; stdout when absent.
    pub audit_log: Option<PathBuf>,
    /// The ledger and revocations: a SQLite file (default `actorchain.db` in the state directory),
    /// or a `postgres://` URL shared by several STS replicas.
    pub database: Option<PathBuf>,
    /// SPIFFE IDs allowed to use the admin endpoints (revocation, ledger queries) over mTLS.
    #[serde(default)]
    pub admin_ids: Vec<String>,
    #[serde(default = "default_max_depth")]
    pub max_depth: usize,
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    pub tls: TlsConfig,
    /// Where SPIRE publishes JWT-SVID keys; without it, workloads authenticate with their
    /// X.509-SVID only (Istio issues no JWT-SVIDs).
    pub jwt_svid: Option<JwtSvidConfig>,
    #[serde(default)]
    pub signing: SigningConfig,
    #[serde(default)]
    pub people: Vec<PersonIssuerConfig>,
    /// OpenTelemetry spans for exchanges; none are made without it.
    pub telemetry: Option<TelemetryConfig>,
    #[serde(default)]
    pub ledger: LedgerConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// How often the STS signs the ledger's head into `checkpoints.jsonl` in the state directory
    /// (0: only on demand, `POST /admin/ledger/checkpoint`).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every_seconds: u64,
    /// Serve the lineage page (`/lineage`) on the admin listener, which has no authentication:
    /// only where that listener is on loopback or a private interface.
    #[serde(default)]
    pub lineage_page: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig { checkpoint_every_seconds: default_checkpoint_every(), lineage_page: false }
    }
}

fn default_checkpoint_every() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces` (plain HTTP:
    /// the collector agent on the node or in the pod, as OpenTelemetry deploys it).
    pub otlp_endpoint: String,
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// How long a finished span may wait to be sent with others.
    #[serde(default = "default_export_delay")]
    pub export_delay_ms: u64,
}

fn default_service_name() -> String {
    "actorchain-sts".into()
}
fn default_export_delay() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// X.509 trust bundle (PEM) that workload SVIDs must chain to.
    pub trust_bundle: PathBuf,
    pub trust_domain: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSvidConfig {
    /// JWKS of the trust domain's JWT-SVID signing keys, as SPIRE publishes it.
    pub bundle: PathBuf,
    /// `aud` a JWT-SVID must carry to authenticate here.
    pub audience: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    #[serde(default = "default_alg")]
    pub alg: String,
    #[serde(default = "default_rotate")]
    pub rotate_every_seconds: u64,
    #[serde(default = "default_lead")]
    pub publish_lead_seconds: u64,
    /// Key file; defaults to `signing-keys.json` in the state directory.
    pub keys_file: Option<PathBuf>,
    /// When false the STS never writes the key file: keys and rotation are the operator's.
    #[serde(default = "yes")]
    pub auto_rotate: bool,
    /// With PostgreSQL: the replicas' key-encryption key (32 random bytes, base64url), under
    /// which the signing keys they share are sealed in the database. Required there.
    pub key_encryption_key_file: Option<PathBuf>,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            alg: default_alg(),
            rotate_every_seconds: default_rotate(),
            publish_lead_seconds: default_lead(),
            keys_file: None,
            auto_rotate: true,
            key_encryption_key_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonIssuerConfig {
    pub issuer: String,
    /// The issuer's JWKS from a file (reloaded when it changes)...
    pub jwks_file: Option<PathBuf>,
    /// ...or from an `https://` URL, fetched at start and every `jwks_refresh_seconds`.
    pub jwks_url: Option<String>,
    /// CA bundle (PEM) for `jwks_url`; the workload trust bundle when absent.
    pub jwks_ca: Option<PathBuf>,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    pub typ: Option<String>,
    #[serde(default)]
    pub pass_claims: Vec<String>,
}

fn default_jwks_refresh() -> u64 {
    300
}
fn default_max_depth() -> usize {
    DEFAULT_MAX_DEPTH
}
fn default_leeway() -> u64 {
    30
}
fn default_alg() -> String {
    "EdDSA".into()
}
fn default_rotate() -> u64 {
    86_400
}
fn default_lead() -> u64 {
    600
}
fn yes() -> bool {
    true
}

/// Where the ledger and revocations live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// Embedded, for one STS.
    Sqlite(PathBuf),
    /// A `postgres://` URL: shared by several STS replicas.
    Postgres(String),
}

impl Database {
    fn is_url(p: &Path) -> bool {
        p.to_str().is_some_and(|s| s.starts_with("postgres://") || s.starts_with("postgresql://"))
    }

    /// A `--db` argument: a URL or a SQLite file.
    pub fn from_arg(arg: &Path) -> Database {
        if Database::is_url(arg) {
            Database::Postgres(arg.display().to_string())
        } else {
            Database::Sqlite(arg.to_path_buf())
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        abs(&mut cfg.state_dir);
        abs(&mut cfg.registry);
        if let Some(a) = cfg.audit_log.as_mut() {
            abs(a);
        }
        if let Some(d) = cfg.database.as_mut().filter(|d| !Database::is_url(d)) {
            abs(d);
        }
        abs(&mut cfg.tls.cert);
        abs(&mut cfg.tls.key);
        abs(&mut cfg.tls.trust_bundle);
        if let Some(j) = cfg.jwt_svid.as_mut() {
            abs(&mut j.bundle);
        }
        if let Some(k) = cfg.signing.keys_file.as_mut() {
            abs(k);
        }
        if let Some(k) = cfg.signing.key_encryption_key_file.as_mut() {
            abs(k);
        }
        for p in &mut cfg.people {
            if let Some(f) = p.jwks_file.as_mut() {
                abs(f);
            }
            if let Some(f) = p.jwks_ca.as_mut() {
                abs(f);
            }
        }
        cfg.validate().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_DEPTH_CEILING).contains(&self.max_depth) {
            return Err(format!("max_depth: must be between 1 and {MAX_DEPTH_CEILING}"));
        }
        if self.leeway_seconds > 300 {
            return Err("leeway_seconds: at most 300".into());
        }
        self.signing_alg()?;
        if self.signing.rotate_every_seconds <= self.signing.publish_lead_seconds {
            return Err("signing.rotate_every_seconds: must exceed signing.publish_lead_seconds".into());
        }
        for (i, id) in self.admin_ids.iter().enumerate() {
            if !actorchain_token::is_spiffe_id(id) {
                return Err(format!("admin_ids[{i}]: {id:?} is not a SPIFFE ID"));
            }
        }
        for (i, p) in self.people.iter().enumerate() {
            // The STS's own issuer vouches for agents acting as themselves; a person's IdP never may.
            if p.issuer == self.issuer || !actorchain_token::is_issuer_id(&p.issuer) {
                return Err(format!("people[{i}].issuer: must differ from the STS issuer and be 1-1024 printable ASCII, no spaces"));
            }
            match (&p.jwks_file, &p.jwks_url) {
                (Some(_), None) => {}
                (None, Some(u)) if parse_https_url(u).is_some() => {}
                (None, Some(_)) => return Err(format!("people[{i}].jwks_url: must be https://host[:port]/path")),
                _ => return Err(format!("people[{i}]: give exactly one of jwks_file and jwks_url")),
            }
            if !(10..=86_400).contains(&p.jwks_refresh_seconds) {
                return Err(format!("people[{i}].jwks_refresh_seconds: must be between 10 and 86400"));
            }
        }
        if let Some(t) = &self.telemetry {
            let rest = t.otlp_endpoint.strip_prefix("http://").unwrap_or("");
            if rest.is_empty() || rest.starts_with('/') || rest.contains('@') {
                return Err("telemetry.otlp_endpoint: must be http://host:port/path".into());
            }
            if !(10..=60_000).contains(&t.export_delay_ms) {
                return Err("telemetry.export_delay_ms: must be between 10 and 60000".into());
            }
        }
        Ok(())
    }

    pub fn signing_alg(&self) -> Result<Alg, String> {
        Alg::parse(&self.signing.alg).map_err(|_| "signing.alg: must be EdDSA or ES256".to_string())
    }

    pub fn database(&self) -> Database {
        match &self.database {
            Some(d) if Database::is_url(d) => Database::Postgres(d.display().to_string()),
            Some(d) => Database::Sqlite(d.clone()),
            None => Database::Sqlite(self.state_dir.join("actorchain.db")),
        }
    }

    /// The key that signs ledger checkpoints; never in the database.
    pub fn ledger_key_file(&self) -> PathBuf {
        self.state_dir.join("ledger-key.json")
    }

    /// Where the periodic checkpoints are kept, one JSON line each.
    pub fn checkpoints_file(&self) -> PathBuf {
        self.state_dir.join("checkpoints.jsonl")
    }

    pub fn keys_file(&self) -> PathBuf {
        self.signing.keys_file.clone().unwrap_or_else(|| self.state_dir.join("signing-keys.json"))
    }

    /// A superseded key stays published this long: the longest token plus skew.
    pub fn retire_after(&self) -> u64 {
        MAX_TTL_SECS + self.leeway_seconds
    }
}

/// `https://host[:port]/path` → (host, port, path).
pub fn parse_https_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("https://")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 443),
    };
    (!host.is_empty() && !host.contains('@')).then(|| (host.to_string(), port, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jwks_urls() {
        assert_eq!(parse_https_url("https://idp.example/keys"), Some(("idp.example".into(), 443, "/keys".into())));
        assert_eq!(
            parse_https_url("https://127.0.0.1:8443/.well-known/jwks.json"),
            Some(("127.0.0.1".into(), 8443, "/.well-known/jwks.json".into()))
        );
        assert_eq!(parse_https_url("https://idp.example"), Some(("idp.example".into(), 443, "/".into())));
        assert_eq!(parse_https_url("http://idp.example/keys"), None);
        assert_eq!(parse_https_url("https://user@idp.example/keys"), None);
        assert_eq!(parse_https_url("https://idp.example:x/keys"), None);
    }
}
