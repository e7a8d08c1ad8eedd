//! Envelope encryption of the signing keys that STS replicas share through PostgreSQL: each
//! private key is sealed (AES-256-GCM, a fresh nonce each time, the key's `kid` as associated
//! data) under a key-encryption key that only the replicas hold, in a file beside their TLS key.
//! The database holds ciphertext only: reading it, or a backup of it, yields no key that signs.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

/// The replicas' key-encryption key.
pub struct Kek(LessSafeKey);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// The key in `path`: 32 random bytes, base64url (as `new_file` writes it).
    pub fn load(path: &Path) -> Result<Kek, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes = B64.decode(text.trim()).map_err(|_| format!("{}: not base64url", path.display()))?;
        Kek::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Kek, String> {
        if bytes.len() != 32 {
            return Err("a key-encryption key is 32 bytes".into());
        }
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| "a key-encryption key is 32 bytes".to_string())?;
        Ok(Kek(LessSafeKey::new(key)))
    }

    /// Writes a fresh key to `path` (mode 0600).
    pub fn new_file(path: &Path) -> Result<(), String> {
        crate::keys::write_secret(path, &B64.encode(crate::keys::random::<32>())).map_err(|e| e.to_string())
    }

    /// `secret` sealed for key `kid`: base64url of nonce and ciphertext.
    pub fn seal(&self, kid: &str, secret: &[u8]) -> String {
        let nonce = crate::keys::random::<NONCE_LEN>();
        let mut sealed = secret.to_vec();
        // Sealing in place only fails for inputs far beyond any key's size.
        if self.0.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(kid.as_bytes()), &mut sealed).is_err() {
            return String::new();
        }
        let mut out = nonce.to_vec();
        out.extend(sealed);
        B64.encode(out)
    }

    /// The secret sealed for `kid`; an error if it was sealed under another key, for another
    /// kid, or altered.
    pub fn open(&self, kid: &str, sealed: &str) -> Result<Vec<u8>, String> {
        let bytes = B64.decode(sealed).map_err(|_| format!("key {kid}: sealed secret is not base64url"))?;
        if bytes.len() < NONCE_LEN {
            return Err(format!("key {kid}: sealed secret too short"));
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| format!("key {kid}: bad nonce"))?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut body)
            .map_err(|_| format!("key {kid}: cannot be unsealed with this key-encryption key"))?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_per_kid_and_refuses_another_key_or_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.key");
        Kek::new_file(&path).unwrap();
        let kek = Kek::load(&path).unwrap();
        let sealed = kek.seal("k1", b"secret bytes");
        assert_ne!(sealed, kek.seal("k1", b"secret bytes"), "a fresh nonce each time");
        assert!(!sealed.contains(&B64.encode(b"secret bytes")));
        assert_eq!(kek.open("k1", &sealed).unwrap(), b"secret bytes");
        assert!(kek.open("k2", &sealed).is_err(), "bound to its kid");
        assert!(Kek::from_bytes(&[7; 32]).unwrap().open("k1", &sealed).is_err(), "another key-encryption key");
        assert!(Kek::from_bytes(&[7; 16]).is_err());
    }
}
