//! Signed checkpoints of the audit ledger. The hash chain alone shows an edit only to someone who
//! trusts the chain's last link; whoever can write the database can recompute every link, or cut
//! the newest records off. A checkpoint is the STS's signature over the ledger's head (how many
//! records, the last one's hash) at one moment: an auditor who keeps it can later tell whether the
//! records it covers are still exactly those, and still all there.
//!
//! The ledger key (Ed25519) is the STS's own, kept in its state directory (never in the database)
//! and published at `/.well-known/ledger-keys.json`; a checkpoint file carries the public key it
//! was signed with, so it can be checked offline, and an auditor pins the published set.

use std::path::Path;

use actorchain_token::{Alg, KeySet, PrivateKey, TypRule, Unverified};
use serde::{Deserialize, Serialize};

use crate::keys::{self, StoredKey};
use crate::ledger::{self, Row};

/// The JWS `typ` of a checkpoint: never taken for an access token, and the reverse.
pub const TYP_CHECKPOINT: &str = "actorchain-ledger-checkpoint+jwt";

/// What a checkpoint vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    /// The STS that signed it.
    pub iss: String,
    /// Records in the ledger when it was signed.
    pub count: u64,
    /// The hash of record `count` (the genesis hash for an empty ledger).
    pub head: String,
    pub iat: u64,
}

/// A checkpoint as exported to a file: the signed head and the public keys to check it with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointFile {
    pub checkpoint: String,
    pub keys: serde_json::Value,
}

/// The STS's ledger key.
pub struct LedgerKey {
    kid: String,
    key: PrivateKey,
}

impl LedgerKey {
    /// The key in `path`, created on first use (mode 0600).
    pub fn load_or_create(path: &Path) -> Result<LedgerKey, String> {
        let stored = if path.exists() {
            StoredKey::read(path).map_err(|e| e.to_string())?
        } else {
            let s = StoredKey::new(&keys::generate(Alg::EdDsa), 0);
            s.write(path).map_err(|e| e.to_string())?;
            s
        };
        Ok(LedgerKey { kid: stored.kid.clone(), key: stored.private_key()? })
    }

    /// The public half, as a key set.
    pub fn published(&self) -> KeySet {
        let mut set = KeySet::default();
        // One key: it cannot collide with itself.
        let _ = set.insert(self.kid.clone(), self.key.public());
        set
    }

    /// Signs the head of `rows` (the whole ledger, in order) as of `now`.
    pub fn sign(&self, issuer: &str, count: u64, head: &str, now: u64) -> CheckpointFile {
        let h = Head { iss: issuer.to_string(), count, head: head.to_string(), iat: now };
        let checkpoint = actorchain_token::sign_compact(&h, &self.key, &self.kid, Some(TYP_CHECKPOINT));
        let keys = serde_json::from_str(&self.published().to_jwks()).unwrap_or_default();
        CheckpointFile { checkpoint, keys }
    }
}

/// What checking a ledger against a checkpoint found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint file unreadable: {0}")]
    Unreadable(String),
    #[error("checkpoint signature invalid (not signed by the key it names)")]
    Signature,
    #[error("checkpoint signed by a key not in the pinned set")]
    KeyNotPinned,
    #[error("record {seq}: {what}")]
    Chain { seq: u64, what: &'static str },
    #[error("{missing} records removed from the tail: the checkpoint covers {count}, the ledger holds {held}")]
    Truncated { count: u64, held: u64, missing: u64 },
    #[error("records up to {count} are not the ones the checkpoint covers (edited and relinked, reordered or replaced)")]
    Rewritten { count: u64 },
}

/// Checks `rows` (the whole ledger, in order) against a checkpoint file: its signature (by a key in
/// `pinned` when given), the chain's links, that every record it covers is still there, and that
/// record `count` still has the hash it had. The head it vouched for when all is well.
pub fn verify(rows: &[Row], file: &str, pinned: Option<&KeySet>) -> Result<Head, CheckpointError> {
    let f: CheckpointFile = serde_json::from_str(file).map_err(|e| CheckpointError::Unreadable(e.to_string()))?;
    let keys = KeySet::from_jwks(f.keys.to_string().as_bytes()).map_err(|e| CheckpointError::Unreadable(e.to_string()))?;
    let u = Unverified::parse(&f.checkpoint, TypRule::Exactly(TYP_CHECKPOINT)).map_err(|e| CheckpointError::Unreadable(e.to_string()))?;
    u.verify_signature(&keys).map_err(|_| CheckpointError::Signature)?;
    if let Some(pinned) = pinned {
        let kid = u.header().kid.as_str();
        if pinned.get(kid) != keys.get(kid) {
            return Err(CheckpointError::KeyNotPinned);
        }
    }
    let head: Head = u.claims().map_err(|e| CheckpointError::Unreadable(e.to_string()))?;
    ledger::verify(rows).map_err(|t| CheckpointError::Chain { seq: t.seq, what: t.what })?;
    let held = rows.len() as u64;
    if held < head.count {
        return Err(CheckpointError::Truncated { count: head.count, held, missing: head.count - held });
    }
    let at = match head.count {
        0 => ledger::GENESIS,
        n => rows[(n - 1) as usize].hash.as_str(),
    };
    if at != head.head {
        return Err(CheckpointError::Rewritten { count: head.count });
    }
    Ok(head)
}

/// The kid a checkpoint file says it was signed with (for showing; `verify` checks it).
pub fn signer(file: &str) -> String {
    serde_json::from_str::<CheckpointFile>(file)
        .ok()
        .and_then(|f| Unverified::peek(&f.checkpoint).ok().map(|u| u.header().kid.clone()))
        .unwrap_or_default()
}

/// Appends a checkpoint to the file that keeps them, one JSON line each.
pub fn keep(path: &Path, file: &CheckpointFile) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    writeln!(f, "{}", actorchain_token::to_json(file)).and_then(|_| f.sync_data()).map_err(|e| format!("{}: {e}", path.display()))
}

/// The head of `rows`: how many, and the last one's hash.
pub fn head_of(rows: &[Row]) -> (u64, String) {
    rows.last().map_or((0, ledger::GENESIS.to_string()), |r| (r.seq, r.hash.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::AuditRecord;

    fn rows(n: u64) -> Vec<Row> {
        let recs: Vec<AuditRecord> =
            (1..=n).map(|i| AuditRecord { ts: i, decision: "granted", reason: "granted", ..Default::default() }).collect();
        ledger::link(None, &recs.iter().map(ledger::Entry::from).collect::<Vec<_>>())
    }

    #[test]
    fn a_checkpoint_names_truncation_rewriting_and_forgery() {
        let dir = tempfile::tempdir().unwrap();
        let key = LedgerKey::load_or_create(&dir.path().join("ledger-key.json")).unwrap();
        // The same key after a restart.
        assert_eq!(LedgerKey::load_or_create(&dir.path().join("ledger-key.json")).unwrap().kid, key.kid);
        let ledger = rows(10);
        let (count, head) = head_of(&ledger[..7]);
        let file = actorchain_token::to_json(&key.sign("https://sts", count, &head, 100));
        // Later records do not matter; the covered ones are intact.
        assert_eq!(verify(&ledger, &file, Some(&key.published())).map(|h| h.count), Ok(7));
        assert_eq!(verify(&ledger[..5], &file, None), Err(CheckpointError::Truncated { count: 7, held: 5, missing: 2 }));
        // An edit relinked from there on passes the chain check, not the checkpoint.
        let mut recs: Vec<AuditRecord> =
            (1..=10).map(|i| AuditRecord { ts: i, decision: "granted", reason: "granted", ..Default::default() }).collect();
        recs[2].decision = "refused";
        let relinked = ledger::link(None, &recs.iter().map(ledger::Entry::from).collect::<Vec<_>>());
        assert_eq!(ledger::verify(&relinked), Ok(10));
        assert_eq!(verify(&relinked, &file, None), Err(CheckpointError::Rewritten { count: 7 }));
        // An edit not relinked is named by the chain.
        let mut edited = ledger.clone();
        edited[3].body = edited[3].body.replace("granted", "refused");
        assert_eq!(verify(&edited, &file, None), Err(CheckpointError::Chain { seq: 4, what: "record edited" }));
        // A checkpoint signed by another key is not the STS's, and a forged head fails its signature.
        let other = LedgerKey::load_or_create(&dir.path().join("other.json")).unwrap();
        let forged = actorchain_token::to_json(&other.sign("https://sts", 5, &ledger[4].hash, 100));
        assert_eq!(verify(&ledger[..5], &forged, Some(&key.published())), Err(CheckpointError::KeyNotPinned));
        let mut tampered: CheckpointFile = serde_json::from_str(&file).unwrap();
        let (h, rest) = tampered.checkpoint.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let body = Head { iss: "https://sts".into(), count: 5, head: ledger[4].hash.clone(), iat: 100 };
        tampered.checkpoint = format!(
            "{h}.{}.{sig}",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, actorchain_token::to_json(&body))
        );
        assert_eq!(verify(&ledger[..5], &actorchain_token::to_json(&tampered), None), Err(CheckpointError::Signature));
    }
}
