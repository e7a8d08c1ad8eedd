//! Signing keys: generation, persistence in the state directory, and rotation that publishes the
//! next key before it signs and keeps the old one until every token it signed has expired.

use std::path::Path;

use actorchain_token::{Alg, KeySet, PrivateKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One key as stored on disk (mode 0600). The same format serves the dev IdP and JWT-SVID keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub secret: String,
    /// First second this key may sign; it is published from the moment it exists.
    #[serde(default)]
    pub sign_from: u64,
    /// When set, the key leaves the published set at this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

/// A key as kept in a shared database: its secret sealed under the replicas' key-encryption key.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedKey {
    kid: String,
    alg: String,
    sealed: String,
    sign_from: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retire_at: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedFile {
    sealed_keys: Vec<SealedKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {0}: {1}")]
    Io(String, std::io::Error),
    #[error("key file {0}: {1}")]
    Format(String, String),
}

/// When to rotate and how long to overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    pub alg: Alg,
    pub rotate_every: u64,
    /// How long before it signs a new key is published: at least the verifiers' JWKS refresh.
    pub publish_lead: u64,
    /// How long a superseded key stays published: the longest token lifetime plus clock skew.
    pub retire_after: u64,
}

#[derive(Debug, Clone)]
struct RingKey {
    kid: String,
    key: PrivateKey,
    sign_from: u64,
    retire_at: Option<u64>,
}

/// The STS's signing keys, ordered by `sign_from`.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: Vec<RingKey>,
}

/// RFC 7638-style thumbprint of the public key, so a kid never collides across rotations.
pub fn kid_for(key: &PrivateKey) -> String {
    let jwk = actorchain_token::Jwk::from_public("", &key.public());
    let material = format!("{}|{}|{}", jwk.crv.unwrap_or_default(), jwk.x.unwrap_or_default(), jwk.y.unwrap_or_default());
    B64.encode(&Sha256::digest(material.as_bytes())[..12])
}

/// `N` bytes from the OS's CSPRNG, for keys and unguessable ids.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    #[allow(
        clippy::expect_used,
        reason = "the OS CSPRNG does not fail once the kernel has seeded it; nothing safe can be minted without it"
    )]
    getrandom::getrandom(&mut b).expect("the OS random source");
    b
}

/// A fresh key from the OS random source.
pub fn generate(alg: Alg) -> PrivateKey {
    loop {
        let seed = random::<32>();
        // A P-256 scalar outside [1, n-1] is astronomically rare; draw again.
        if let Ok(k) = PrivateKey::from_secret_bytes(alg, &seed) {
            return k;
        }
    }
}

impl StoredKey {
    pub fn new(key: &PrivateKey, sign_from: u64) -> StoredKey {
        StoredKey { kid: kid_for(key), alg: key.alg().as_str().into(), secret: B64.encode(key.secret_bytes()), sign_from, retire_at: None }
    }

    pub fn private_key(&self) -> Result<PrivateKey, String> {
        let alg = Alg::parse(&self.alg).map_err(|e| format!("key {}: {e}", self.kid))?;
        let bytes = B64.decode(&self.secret).map_err(|_| format!("key {}: secret is not base64url", self.kid))?;
        PrivateKey::from_secret_bytes(alg, &bytes).map_err(|e| format!("key {}: {e}", self.kid))
    }

    pub fn read(path: &Path) -> Result<StoredKey, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::Io(path.display().to_string(), e))?;
        serde_json::from_str(&text).map_err(|e| KeyError::Format(path.display().to_string(), e.to_string()))
    }

    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        write_secret(path, &actorchain_token::to_json_pretty(self))
    }
}

/// Where the signing keys live: a file for one STS, PostgreSQL for replicas that share them.
pub trait KeyStore: Send {
    /// Reads the ring (empty when none is stored yet), lets `change` update it, and stores the
    /// result when it says it changed — as one step no other writer can interleave with. The
    /// ring now in force.
    fn update(&mut self, change: &mut dyn FnMut(&mut KeyRing) -> bool) -> Result<KeyRing, String>;
}

/// The key file in the state directory (mode 0600), for a single STS: the only writer, so the
/// file is read once and written on each change, not re-read on every upkeep tick.
pub struct FileKeyStore {
    path: std::path::PathBuf,
    ring: Option<KeyRing>,
}

impl FileKeyStore {
    pub fn new(path: std::path::PathBuf) -> FileKeyStore {
        FileKeyStore { path, ring: None }
    }
}

impl KeyStore for FileKeyStore {
    fn update(&mut self, change: &mut dyn FnMut(&mut KeyRing) -> bool) -> Result<KeyRing, String> {
        let mut ring = match self.ring.take() {
            Some(r) => r,
            None => KeyRing::load(&self.path).map_err(|e| e.to_string())?.unwrap_or_default(),
        };
        let mut changed = ring.clone();
        if change(&mut changed) {
            // Persisted before it is used: a key that signed must survive a restart.
            changed.save(&self.path).map_err(|e| e.to_string())?;
            ring = changed;
        }
        self.ring = Some(ring.clone());
        Ok(ring)
    }
}

/// Writes a secret file atomically with owner-only permissions.
pub fn write_secret(path: &Path, content: &str) -> Result<(), KeyError> {
    use std::io::Write;
    let io = |e| KeyError::Io(path.display().to_string(), e);
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(content.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl KeyRing {
    /// The ring from its JSON form (`where_` names the source in errors).
    pub fn from_json(text: &str, where_: &str) -> Result<KeyRing, KeyError> {
        let fmt = |m: String| KeyError::Format(where_.to_string(), m);
        let file: KeyFile = serde_json::from_str(text).map_err(|e| fmt(e.to_string()))?;
        let mut keys = Vec::new();
        for s in file.keys {
            let key = s.private_key().map_err(fmt)?;
            if kid_for(&key) != s.kid {
                return Err(fmt(format!("kid {} does not match its key", s.kid)));
            }
            keys.push(RingKey { kid: s.kid, key, sign_from: s.sign_from, retire_at: s.retire_at });
        }
        keys.sort_by_key(|k| k.sign_from);
        Ok(KeyRing { keys })
    }

    /// The JSON form with every secret sealed under `kek`: for a store shared by replicas.
    pub fn to_sealed_json(&self, kek: &crate::sealing::Kek) -> String {
        let sealed_keys = self
            .keys
            .iter()
            .map(|k| SealedKey {
                kid: k.kid.clone(),
                alg: k.key.alg().as_str().into(),
                sealed: kek.seal(&k.kid, &k.key.secret_bytes()),
                sign_from: k.sign_from,
                retire_at: k.retire_at,
            })
            .collect();
        actorchain_token::to_json_pretty(&SealedFile { sealed_keys })
    }

    /// The ring from its sealed JSON form.
    pub fn from_sealed_json(text: &str, kek: &crate::sealing::Kek, where_: &str) -> Result<KeyRing, KeyError> {
        let fmt = |m: String| KeyError::Format(where_.to_string(), m);
        let file: SealedFile = serde_json::from_str(text).map_err(|e| fmt(e.to_string()))?;
        let stored = file
            .sealed_keys
            .into_iter()
            .map(|s| {
                let secret = kek.open(&s.kid, &s.sealed).map_err(fmt)?;
                Ok(StoredKey { kid: s.kid, alg: s.alg, secret: B64.encode(secret), sign_from: s.sign_from, retire_at: s.retire_at })
            })
            .collect::<Result<Vec<_>, KeyError>>()?;
        KeyRing::from_json(&actorchain_token::to_json(&KeyFile { keys: stored }), where_)
    }

    /// The JSON form, private keys included: for a store that keeps secrets.
    pub fn to_json(&self) -> String {
        let file = KeyFile {
            keys: self.keys.iter().map(|k| StoredKey { retire_at: k.retire_at, ..StoredKey::new(&k.key, k.sign_from) }).collect(),
        };
        actorchain_token::to_json_pretty(&file)
    }

    pub fn load(path: &Path) -> Result<Option<KeyRing>, KeyError> {
        match std::fs::read_to_string(path) {
            Ok(t) => KeyRing::from_json(&t, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyError::Io(path.display().to_string(), e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_secret(path, &self.to_json())
    }

    /// Brings the ring up to date at `now`: a first key, the next key `publish_lead` before it is
    /// due, retirement times for superseded keys, and removal of retired ones. True if it changed.
    pub fn maintain(&mut self, now: u64, policy: &RotationPolicy, mut fresh: impl FnMut() -> PrivateKey) -> bool {
        let mut changed = false;
        if self.keys.is_empty() {
            self.push(fresh(), now);
            changed = true;
        }
        let current = self.current_index(now).unwrap_or(0);
        let has_successor = current + 1 < self.keys.len();
        let cur_from = self.keys[current].sign_from;
        if !has_successor && now + policy.publish_lead >= cur_from + policy.rotate_every {
            self.push(fresh(), (cur_from + policy.rotate_every).max(now + policy.publish_lead));
            changed = true;
        }
        for i in 0..self.keys.len().saturating_sub(1) {
            let next_from = self.keys[i + 1].sign_from;
            if next_from <= now && self.keys[i].retire_at.is_none() {
                self.keys[i].retire_at = Some(next_from + policy.retire_after);
                changed = true;
            }
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.retire_at.is_none_or(|r| r > now));
        changed | (self.keys.len() != before)
    }

    fn push(&mut self, key: PrivateKey, sign_from: u64) {
        self.keys.push(RingKey { kid: kid_for(&key), key, sign_from, retire_at: None });
    }

    fn current_index(&self, now: u64) -> Option<usize> {
        self.keys.iter().rposition(|k| k.sign_from <= now)
    }

    /// The key that signs at `now`.
    pub fn signing(&self, now: u64) -> Option<(&str, &PrivateKey)> {
        self.current_index(now).map(|i| (self.keys[i].kid.as_str(), &self.keys[i].key))
    }

    /// Every key verifiers should know: the next one, the current one, and superseded ones whose
    /// tokens may still be alive.
    pub fn published(&self) -> KeySet {
        let mut set = KeySet::default();
        for k in &self.keys {
            // A kid is the key's thumbprint: one refused as a duplicate is the same key again.
            let _ = set.insert(k.kid.clone(), k.key.public());
        }
        set
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RotationPolicy = RotationPolicy { alg: Alg::EdDsa, rotate_every: 1000, publish_lead: 100, retire_after: 300 };

    #[test]
    fn rotation_publishes_before_signing_and_retires_after_expiry() {
        let mut ring = KeyRing::default();
        let gen = || generate(Alg::EdDsa);
        assert!(ring.maintain(0, &POLICY, gen));
        let (k1, _) = ring.signing(0).unwrap();
        let k1 = k1.to_string();
        assert!(!ring.maintain(500, &POLICY, gen));
        // 100 s before the rotation is due the next key is published but does not sign yet.
        assert!(ring.maintain(900, &POLICY, gen));
        assert_eq!(ring.published().len(), 2);
        assert_eq!(ring.signing(950).unwrap().0, k1);
        let k2 = ring.signing(1000).unwrap().0.to_string();
        assert_ne!(k1, k2);
        // Once superseded, the old key stays published until its last token has expired.
        ring.maintain(1000, &POLICY, gen);
        assert_eq!(ring.published().len(), 2);
        ring.maintain(1299, &POLICY, gen);
        assert!(ring.published().get(&k1).is_some());
        ring.maintain(1300, &POLICY, gen);
        assert!(ring.published().get(&k1).is_none());
        assert_eq!(ring.signing(1300).unwrap().0, k2);
    }

    #[test]
    fn persists_and_checks_kids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let mut ring = KeyRing::default();
        ring.maintain(0, &POLICY, || generate(Alg::Es256));
        ring.save(&path).unwrap();
        let back = KeyRing::load(&path).unwrap().unwrap();
        assert_eq!(back.published(), ring.published());
        let tampered = std::fs::read_to_string(&path).unwrap().replacen("\"kid\": \"", "\"kid\": \"x", 1);
        std::fs::write(&path, tampered).unwrap();
        assert!(KeyRing::load(&path).is_err());
        assert!(KeyRing::load(&dir.path().join("none.json")).unwrap().is_none());
    }
}
