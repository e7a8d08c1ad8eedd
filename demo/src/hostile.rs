//! Hostile inputs for the hardening tests, and the table of outcomes they write to `docs/`.
//!
//! Tokens are forged with the dev trust domain's real keys (read from its files), so a refusal
//! names the rule that caught the attack, not a missing signature.

use std::path::Path;

use actorchain_sts::dev;
use actorchain_sts::keys::{KeyRing, StoredKey};
use actorchain_token::{Alg, Jwk, PrivateKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Signs whatever header and payload text it is given.
pub struct Forge {
    pub sts_key: PrivateKey,
    pub sts_kid: String,
    pub svid_key: PrivateKey,
    pub svid_kid: String,
    /// A key nobody trusts, with a well-formed kid of its own.
    pub stranger: PrivateKey,
    pub now: u64,
}

fn stored(path: &Path) -> Result<(PrivateKey, String), String> {
    let k = StoredKey::read(path).map_err(|e| e.to_string())?;
    Ok((k.private_key()?, k.kid))
}

impl Forge {
    /// Reads the STS's current signing key and the JWT-SVID key from a running dev trust domain.
    pub fn read(dev_dir: &Path, now: u64) -> Result<Forge, String> {
        let ring = KeyRing::load(&dev_dir.join("state/signing-keys.json")).map_err(|e| e.to_string())?.ok_or("the STS has no keys yet")?;
        let (kid, key) = ring.signing(now).ok_or("the STS has no signing key now")?;
        let (svid_key, svid_kid) = stored(&dev_dir.join("jwt-svid-key.json"))?;
        let stranger =
            PrivateKey::from_secret_bytes(Alg::EdDsa, &Sha256::digest(b"actorchain hostile stranger")).map_err(|e| e.to_string())?;
        Ok(Forge { sts_key: key.clone(), sts_kid: kid.to_string(), svid_key, svid_kid, stranger, now })
    }

    /// The header an STS token carries.
    pub fn header(&self) -> Value {
        json!({"alg": self.sts_key.alg().as_str(), "kid": self.sts_kid, "typ": "at+jwt"})
    }

    /// Valid claims of a hop oncall-agent → investigation-agent for `sub` in session `sid`.
    pub fn claims(&self, sid: &str) -> Value {
        json!({
            "iss": dev::STS_ISSUER, "sub": "user1", "sub_id": {"format": "iss_sub", "iss": dev::IDP_ISSUER, "sub": "user1"},
            "aud": "investigation-agent", "client_id": "oncall-agent",
            "act": {"sub": "oncall-agent", "spiffe_id": dev::workload_id("oncall")},
            "scope": "incidents:read repo:read repo:write",
            "iat": self.now, "nbf": self.now, "exp": self.now + 300,
            "jti": format!("{sid}-jti"), "sid": sid,
        })
    }

    /// A JWT-SVID for `workload`, addressed to the STS.
    pub fn svid_claims(&self, workload: &str) -> Value {
        json!({"sub": dev::workload_id(workload), "aud": [dev::STS_SPIFFE_ID], "iat": self.now, "exp": self.now + 300})
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_text(&header.to_string(), &claims.to_string(), &self.sts_key)
    }

    /// Signs header and payload given as text, which may be JSON serde would never write.
    pub fn sign_text(&self, header: &str, payload: &str, key: &PrivateKey) -> String {
        let input = signing_input(header, payload);
        let sig = key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    }

    /// A token whose signature part is exactly `sig`.
    pub fn with_signature(&self, header: &Value, claims: &Value, sig: &[u8]) -> String {
        format!("{}.{}", signing_input(&header.to_string(), &claims.to_string()), B64.encode(sig))
    }

    /// The STS key's raw signature over `header` and `claims`.
    pub fn signature(&self, header: &Value, claims: &Value) -> Vec<u8> {
        self.sts_key.sign(signing_input(&header.to_string(), &claims.to_string()).as_bytes())
    }

    /// The stranger's public key as a JWK, for `jwk` header injection.
    pub fn stranger_jwk(&self) -> Value {
        serde_json::to_value(Jwk::from_public("stranger", &self.stranger.public())).unwrap_or_default()
    }

    /// HMAC-SHA256 keyed with the STS's public key bytes: the classic key-confusion forgery.
    pub fn hs256_with_public_key(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(&header.to_string(), &claims.to_string());
        let public = match self.sts_key.public() {
            actorchain_token::PublicKey::Ed25519(k) => k.to_bytes().to_vec(),
            actorchain_token::PublicKey::P256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
        };
        format!("{input}.{}", B64.encode(hmac_sha256(&public, input.as_bytes())))
    }
}

fn signing_input(header: &str, payload: &str) -> String {
    format!("{}.{}", B64.encode(header), B64.encode(payload))
}

/// RFC 2104 over SHA-256 (the key is shorter than a block here, but longer keys are hashed too).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The Ed25519 group order L, little-endian.
const ED25519_L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0x10,
];

/// The same signature with S replaced by S + L: equal modulo L, but not canonical (RFC 8032 §5.1.7).
pub fn non_canonical_s(sig: &[u8]) -> Vec<u8> {
    let mut out = sig.to_vec();
    let mut carry = 0u16;
    for (i, l) in ED25519_L.iter().enumerate() {
        let sum = u16::from(out[32 + i]) + u16::from(*l) + carry;
        out[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

/// The P-256 group order n, big-endian.
pub const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
    0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// An ECDSA (r, s) pair as DER, the X.509 encoding JOSE forbids (RFC 7518 §3.4 wants raw r||s);
/// any 64 bytes are taken as r||s.
pub fn der_signature(raw: &[u8]) -> Vec<u8> {
    actorchain_token::es256_signature_der(raw).unwrap_or_default()
}

/// One observed outcome of one case against one target.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub attack: String,
    pub target: &'static str,
    pub expected: String,
    pub observed: String,
}

impl Row {
    pub fn passed(&self) -> bool {
        self.expected == self.observed
    }
}

/// Renders the rows as the Markdown table the docs carry.
pub fn render(title: &str, intro: &str, rows: &[Row]) -> String {
    let mut out = format!("# {title}\n\n{intro}\n\n| case | attack or fault | target | expected | observed |\n|---|---|---|---|---|\n");
    for r in rows {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        out.push_str(&format!("| `{}` | {} | {} | {} | {} |\n", r.id, cell(&r.attack), r.target, cell(&r.expected), cell(&r.observed)));
    }
    out
}

/// Writes `content` to the doc at `path` when `ACTORCHAIN_WRITE_DOCS` is set; otherwise says
/// whether the committed doc is still what the tests observe.
pub fn check_doc(path: &Path, content: &str) -> Result<(), String> {
    if std::env::var_os("ACTORCHAIN_WRITE_DOCS").is_some() {
        return std::fs::write(path, content).map_err(|e| format!("{}: {e}", path.display()));
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed == content {
        Ok(())
    } else {
        Err(format!("{} is not what this run observed; `make hardening-docs` rewrites it", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            mac.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn non_canonical_s_is_s_plus_l() {
        let mut sig = vec![0u8; 64];
        sig[32] = 1;
        let out = non_canonical_s(&sig);
        assert_eq!(out[32], 0xee);
        assert_eq!(out[63], 0x10);
    }

    #[test]
    fn der_pads_high_bits() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80;
        raw[63] = 1;
        let der = der_signature(&raw);
        assert_eq!(&der[..5], &[0x30, 38, 0x02, 33, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 1, 1]);
    }
}
