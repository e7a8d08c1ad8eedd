//! A complete development trust domain on disk: a CA and X.509-SVIDs for the demo workloads, a
//! JWT-SVID signing key and bundle, a person-token issuer, the on-call registry and an STS config.
//! The demo and the tests use it so they need nothing external.

use std::path::Path;

use actorchain_token::{sign_compact, Alg, KeySet};
use rcgen::{date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType};
use serde_json::json;

use crate::keys::{generate, StoredKey};

pub const TRUST_DOMAIN: &str = "actorchain.dev";
pub const STS_ISSUER: &str = "https://sts.actorchain.dev";
pub const IDP_ISSUER: &str = "https://idp.actorchain.dev";
/// A partner organisation's identity provider: its people have ids of their own, some equal to
/// ours (its `user1` is not our `user1`).
pub const PARTNER_ISSUER: &str = "https://idp.partner.example";

/// An identity provider of the dev trust domain: its issuer, and its files `<name>-key.json`
/// (private) and `<name>-jwks.json` (public).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Idp {
    pub issuer: &'static str,
    pub name: &'static str,
}

pub const IDP: Idp = Idp { issuer: IDP_ISSUER, name: "idp" };
pub const PARTNER_IDP: Idp = Idp { issuer: PARTNER_ISSUER, name: "partner-idp" };
pub const IDPS: [Idp; 2] = [IDP, PARTNER_IDP];
pub const STS_SPIFFE_ID: &str = "spiffe://actorchain.dev/workload/sts";
/// The demo workloads: each gets an X.509-SVID `svid/<name>.pem`.
pub const WORKLOADS: [&str; 7] = ["sts", "admin", "frontend", "oncall", "investigation", "monitoring", "mcp-server"];

pub fn workload_id(name: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/workload/{name}")
}

/// The registry for Uber's on-call scenario: a person starts with the on-call agent, which
/// delegates to the investigation agent, which calls the MCP gateway (and may ask monitoring).
pub fn registry_toml() -> String {
    format!(
        r#"# Agent registry: which agent may run on which workload, call which audience (with which of its
# scopes: least privilege per hop), hold which scopes.
[[agents]]
id = "oncall-agent"
workloads = ["{oncall}"]
audiences = ["investigation-agent"]
scopes = ["incidents:read", "incidents:write", "repo:read", "repo:write", "metrics:read"]
may_start_session = true
ttl_seconds = 300
max_depth = 4

[[agents]]
id = "investigation-agent"
workloads = ["{investigation}"]
# Tokens for the MCP gateway never carry repo:read; the monitoring agent may get all it holds.
audiences = [{{ audience = "mcp-gateway", scopes = ["incidents:read", "repo:write", "metrics:read"] }}, "monitoring-agent"]
scopes = ["incidents:read", "repo:read", "repo:write", "metrics:read"]
ttl_seconds = 120
max_depth = 4

[[agents]]
id = "monitoring-agent"
workloads = ["{monitoring}"]
audiences = ["mcp-gateway"]
scopes = ["metrics:read", "repo:write"]
# Runs scheduled checks on its own: may start a chain as itself, with no person behind it.
may_act_as_self = true
ttl_seconds = 120
max_depth = 4
"#,
        oncall = workload_id("oncall"),
        investigation = workload_id("investigation"),
        monitoring = workload_id("monitoring"),
    )
}

fn sts_toml() -> String {
    format!(
        r#"issuer = "{STS_ISSUER}"
listen = "127.0.0.1:8443"
admin_listen = "127.0.0.1:8444"
state_dir = "state"
registry = "registry.toml"
max_depth = 8
leeway_seconds = 30
# Who may revoke and query the ledger (over mTLS, with this SVID).
admin_ids = ["spiffe://{TRUST_DOMAIN}/workload/admin"]

[tls]
cert = "svid/sts.pem"
key = "svid/sts-key.pem"
# SPIRE's SPIFFE bundle (X.509 roots and JWT-SVID keys in one JWKS); a PEM file works too.
trust_bundle = "bundle.spiffe.json"
trust_domain = "{TRUST_DOMAIN}"

[jwt_svid]
bundle = "bundle.spiffe.json"
audience = "{STS_SPIFFE_ID}"

[signing]
alg = "EdDSA"
rotate_every_seconds = 86400
publish_lead_seconds = 600
# With a PostgreSQL database shared by replicas, the signing keys are sealed there under this key
# (every replica holds the same file); unused with SQLite.
key_encryption_key_file = "kek.key"

# The ledger's head is signed into state/checkpoints.jsonl this often (0: only on demand).
[ledger]
checkpoint_every_seconds = 300
# The lineage page at http://<admin_listen>/lineage (the admin listener has no authentication).
lineage_page = true

# A span per exchange to an OpenTelemetry collector (OTLP/HTTP), under the caller's traceparent:
#   [telemetry]
#   otlp_endpoint = "http://127.0.0.1:4318/v1/traces"

[[people]]
issuer = "{IDP_ISSUER}"
jwks_file = "idp-jwks.json"
pass_claims = ["task"]
# An issuer whose keys are published at a URL instead:
#   jwks_url = "https://idp.example/.well-known/jwks.json"
#   jwks_ca = "idp-ca.pem"

# A partner's IdP: its people are told apart from ours by issuer (its user1 is not our user1).
[[people]]
issuer = "{PARTNER_ISSUER}"
jwks_file = "partner-idp-jwks.json"
"#
    )
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn write(dir: &Path, name: &str, content: &str) -> Result<(), String> {
    std::fs::write(dir.join(name), content).map_err(|e| format!("{}: {e}", dir.join(name).display()))
}

fn validity(p: &mut CertificateParams) {
    p.not_before = date_time_ymd(2025, 1, 1);
    p.not_after = date_time_ymd(2035, 1, 1);
}

/// Writes the trust domain into `dir`. A complete one is kept unless `force`, so re-running is
/// harmless and tokens minted earlier stay verifiable; an incomplete one (from an older version)
/// is written anew.
pub fn init(dir: &Path, force: bool) -> Result<(), String> {
    let complete = [
        "sts.toml",
        "registry.toml",
        "bundle.pem",
        "bundle.spiffe.json",
        "idp-key.json",
        "partner-idp-key.json",
        "jwt-svid-key.json",
        "kek.key",
        "svid/postgres.pem",
    ]
    .iter()
    .all(|f| dir.join(f).exists())
        && WORKLOADS.iter().all(|w| dir.join(format!("svid/{w}.pem")).exists() && dir.join(format!("svid/{w}-key.pem")).exists());
    if complete && !force {
        return Ok(());
    }
    std::fs::create_dir_all(dir.join("svid")).map_err(err)?;
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.distinguished_name.push(DnType::CommonName, "actorchain dev trust domain");
    ca.subject_alt_names = vec![SanType::URI(format!("spiffe://{TRUST_DOMAIN}").try_into().map_err(err)?)];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    write(dir, "bundle.pem", &ca_cert.pem())?;
    crate::keys::write_secret(&dir.join("ca-key.pem"), &ca_key.serialize_pem()).map_err(err)?;

    for name in WORKLOADS {
        let key = KeyPair::generate().map_err(err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        p.is_ca = IsCa::ExplicitNoCa;
        p.distinguished_name.push(DnType::CommonName, name);
        // The SPIFFE ID is the identity; X.509-SVIDs may also carry DNS names, which plain TLS
        // clients (curl, the demo) check: `<name>.actorchain.dev`, and for the STS its addresses.
        p.subject_alt_names = vec![
            SanType::URI(workload_id(name).try_into().map_err(err)?),
            SanType::DnsName(format!("{name}.{TRUST_DOMAIN}").try_into().map_err(err)?),
        ];
        if name == "sts" {
            p.subject_alt_names.push(SanType::DnsName("localhost".try_into().map_err(err)?));
            p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().map_err(err)?));
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut p);
        let cert = p.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;
        write(dir, &format!("svid/{name}.pem"), &cert.pem())?;
        crate::keys::write_secret(&dir.join(format!("svid/{name}-key.pem")), &key.serialize_pem()).map_err(err)?;
    }

    // PostgreSQL's server certificate, for the replicas' database over TLS (verify-full).
    let key = KeyPair::generate().map_err(err)?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.distinguished_name.push(DnType::CommonName, "postgres");
    p.subject_alt_names =
        vec![SanType::DnsName("localhost".try_into().map_err(err)?), SanType::IpAddress("127.0.0.1".parse().map_err(err)?)];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut p);
    write(dir, "svid/postgres.pem", &p.signed_by(&key, &ca_cert, &ca_key).map_err(err)?.pem())?;
    crate::keys::write_secret(&dir.join("svid/postgres-key.pem"), &key.serialize_pem()).map_err(err)?;
    // Replicas sharing PostgreSQL seal the signing keys there under this key.
    crate::sealing::Kek::new_file(&dir.join("kek.key"))?;

    // SPIRE signs JWT-SVIDs with ES256 by default; the dev domain does the same.
    let jwt_svid = StoredKey::new(&generate(Alg::Es256), 0);
    jwt_svid.write(&dir.join("jwt-svid-key.json")).map_err(err)?;
    write(dir, "bundle.spiffe.json", &spiffe_bundle(&ca_cert, &ca_key, &jwt_svid)?)?;
    for idp in IDPS {
        let key = StoredKey::new(&generate(Alg::EdDsa), 0);
        key.write(&dir.join(format!("{}-key.json", idp.name))).map_err(err)?;
        write(dir, &format!("{}-jwks.json", idp.name), &public_jwks(&key, "sig")?)?;
    }
    write(dir, "registry.toml", &registry_toml())?;
    write(dir, "sts.toml", &sts_toml())
}

/// The trust domain's bundle in the SPIFFE format SPIRE publishes (`spire-server bundle show
/// -format spiffe`): the CA as an `x509-svid` key with its certificate in `x5c`, and the JWT-SVID
/// signing key as a `jwt-svid` key.
fn spiffe_bundle(ca: &rcgen::Certificate, ca_key: &KeyPair, jwt_svid: &StoredKey) -> Result<String, String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let point = ca_key.public_key_raw();
    if point.len() != 65 || point[0] != 4 {
        return Err("the dev CA key is not an uncompressed P-256 point".into());
    }
    let x509 = json!({
        "use": "x509-svid", "kty": "EC", "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        "x5c": [STANDARD.encode(ca.der())],
    });
    let mut doc: serde_json::Value = serde_json::from_str(&public_jwks(jwt_svid, "jwt-svid")?).map_err(err)?;
    doc["keys"].as_array_mut().ok_or("JWKS without keys")?.insert(0, x509);
    doc["spiffe_sequence"] = json!(1);
    doc["spiffe_refresh_hint"] = json!(300);
    Ok(doc.to_string())
}

fn public_jwks(key: &StoredKey, use_: &str) -> Result<String, String> {
    let mut set = KeySet::default();
    set.insert(key.kid.clone(), key.private_key()?.public()).map_err(err)?;
    let mut doc: serde_json::Value = serde_json::from_str(&set.to_jwks()).map_err(err)?;
    for k in doc["keys"].as_array_mut().into_iter().flatten() {
        k["use"] = json!(use_);
    }
    Ok(doc.to_string())
}

/// A person's token from the dev IdP, addressed to the agent they talk to.
pub fn person_token(dir: &Path, sub: &str, aud: &str, scope: &str, ttl: u64, task: Option<&str>, now: u64) -> Result<String, String> {
    person_token_from(dir, IDP, sub, aud, scope, ttl, task, now)
}

/// A person's token from one of the dev trust domain's IdPs.
#[allow(clippy::too_many_arguments)]
pub fn person_token_from(
    dir: &Path,
    idp: Idp,
    sub: &str,
    aud: &str,
    scope: &str,
    ttl: u64,
    task: Option<&str>,
    now: u64,
) -> Result<String, String> {
    let key = StoredKey::read(&dir.join(format!("{}-key.json", idp.name))).map_err(err)?;
    let mut claims = json!({
        "iss": idp.issuer, "sub": sub, "aud": aud, "scope": scope,
        "iat": now, "nbf": now, "exp": now + ttl, "jti": random_id(),
    });
    if let Some(t) = task {
        claims["task"] = json!(t);
    }
    Ok(sign_compact(&claims, &key.private_key()?, &key.kid, Some("JWT")))
}

/// A JWT-SVID for a demo workload, addressed to the STS.
pub fn jwt_svid(dir: &Path, workload: &str, aud: &str, ttl: u64, now: u64) -> Result<String, String> {
    let key = StoredKey::read(&dir.join("jwt-svid-key.json")).map_err(err)?;
    let claims = json!({ "sub": workload_id(workload), "aud": [aud], "iat": now, "exp": now + ttl });
    Ok(sign_compact(&claims, &key.private_key()?, &key.kid, Some("JWT")))
}

fn random_id() -> String {
    crate::keys::random::<12>().iter().map(|x| format!("{x:02x}")).collect()
}
