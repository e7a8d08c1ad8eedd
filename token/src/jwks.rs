use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Alg, PublicKey, TokenError};

/// Largest JWKS document accepted from anywhere.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Most keys one set may hold.
pub const MAX_KEYS: usize = 32;

/// One JWK as published (public members only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    /// Present only to refuse it: a private key has no place in a published set.
    #[serde(default, skip_serializing)]
    pub d: Option<serde_json::Value>,
}

impl Jwk {
    pub fn from_public(kid: &str, key: &PublicKey) -> Jwk {
        let (kty, crv, x, y) = match key {
            PublicKey::Ed25519(k) => ("OKP", "Ed25519", B64.encode(k.as_bytes()), None),
            PublicKey::P256(k) => {
                // SEC1 uncompressed: 0x04, then x and y, 32 bytes each.
                let point = k.to_encoded_point(false);
                let (x, y) = point.as_bytes().get(1..).unwrap_or_default().split_at(32.min(point.len().saturating_sub(1)));
                let (x, y) = (B64.encode(x), B64.encode(y));
                ("EC", "P-256", x, Some(y))
            }
        };
        Jwk {
            kty: kty.into(),
            crv: Some(crv.into()),
            x: Some(x),
            y,
            kid: Some(kid.into()),
            alg: Some(key.alg().as_str().into()),
            use_: Some("sig".into()),
            d: None,
        }
    }

    /// `Ok(None)` for a key of a type or use this verifier does not handle (an RSA key in an IdP's
    /// set, an X.509-SVID key in a SPIFFE bundle): skipped, so tokens under it fail as unknown kid.
    fn to_public(&self) -> Result<Option<PublicKey>, TokenError> {
        if !matches!(self.use_.as_deref(), None | Some("sig") | Some("jwt-svid")) {
            return Ok(None);
        }
        if self.d.is_some() {
            return Err(TokenError::BadKey);
        }
        let coord = |v: &Option<String>| -> Result<Vec<u8>, TokenError> {
            B64.decode(v.as_deref().ok_or(TokenError::BadKey)?).map_err(|_| TokenError::BadKey)
        };
        let key = match (self.kty.as_str(), self.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => {
                let x: [u8; 32] = coord(&self.x)?.try_into().map_err(|_| TokenError::BadKey)?;
                let k = ed25519_dalek::VerifyingKey::from_bytes(&x).map_err(|_| TokenError::BadKey)?;
                // Small-order keys make forgeries trivial; a trusted set never has one.
                if k.is_weak() {
                    return Err(TokenError::BadKey);
                }
                PublicKey::Ed25519(k)
            }
            ("EC", Some("P-256")) => {
                let (x, y) = (coord(&self.x)?, coord(&self.y)?);
                if x.len() != 32 || y.len() != 32 {
                    return Err(TokenError::BadKey);
                }
                let point = p256::EncodedPoint::from_affine_coordinates(x.as_slice().into(), y.as_slice().into(), false);
                // Refuses points that are not on the curve.
                PublicKey::P256(p256::ecdsa::VerifyingKey::from_encoded_point(&point).map_err(|_| TokenError::BadKey)?)
            }
            _ => return Ok(None),
        };
        if let Some(alg) = &self.alg {
            if Alg::parse(alg)? != key.alg() {
                return Err(TokenError::AlgKeyMismatch);
            }
        }
        Ok(Some(key))
    }
}

#[derive(Deserialize)]
struct JwksDoc {
    keys: Vec<Jwk>,
}

#[derive(Serialize)]
struct JwksOut<'a> {
    keys: &'a [Jwk],
}

/// Trusted verification keys by `kid`. Built once per JWKS fetch or key rotation, then only read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: HashMap<String, PublicKey>,
}

impl KeySet {
    /// Parses a JWKS document. All or nothing: one malformed key of a supported type, a point off
    /// the curve or a duplicated kid poisons the whole document and the caller keeps its old set.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, TokenError> {
        if json.len() > MAX_JWKS_BYTES {
            return Err(TokenError::Oversized);
        }
        crate::check_json_depth(json, 4)?;
        let doc: JwksDoc = serde_json::from_slice(json).map_err(|_| TokenError::BadJson)?;
        if doc.keys.len() > MAX_KEYS {
            return Err(TokenError::Oversized);
        }
        let mut set = KeySet::default();
        for jwk in &doc.keys {
            let Some(key) = jwk.to_public()? else { continue };
            let kid = jwk.kid.clone().ok_or(TokenError::MissingKid)?;
            set.insert(kid, key)?;
        }
        Ok(set)
    }

    pub fn insert(&mut self, kid: String, key: PublicKey) -> Result<(), TokenError> {
        if kid.is_empty() || self.keys.contains_key(&kid) {
            return Err(TokenError::DuplicateKid);
        }
        self.keys.insert(kid, key);
        Ok(())
    }

    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &PublicKey)> {
        self.keys.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The JWKS document for this set, keys in kid order so the output is stable.
    pub fn to_jwks(&self) -> String {
        let mut kids: Vec<&String> = self.keys.keys().collect();
        kids.sort();
        let jwks: Vec<Jwk> = kids.into_iter().map(|k| Jwk::from_public(k, &self.keys[k])).collect();
        crate::to_json(&JwksOut { keys: &jwks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;

    fn ed(seed: u8) -> PublicKey {
        PrivateKey::from_secret_bytes(Alg::EdDsa, &[seed; 32]).unwrap().public()
    }

    #[test]
    fn round_trips_both_key_types() {
        let mut set = KeySet::default();
        set.insert("a".into(), ed(1)).unwrap();
        set.insert("b".into(), PrivateKey::from_secret_bytes(Alg::Es256, &[7; 32]).unwrap().public()).unwrap();
        let back = KeySet::from_jwks(set.to_jwks().as_bytes()).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn poisoned_sets_are_refused_whole() {
        let k = Jwk::from_public("a", &ed(1));
        let doc = |keys: Vec<Jwk>| serde_json::to_vec(&JwksOut { keys: &keys }).unwrap();
        assert_eq!(KeySet::from_jwks(&doc(vec![k.clone(), k.clone()])), Err(TokenError::DuplicateKid));
        let mut off_curve = Jwk::from_public("e", &PrivateKey::from_secret_bytes(Alg::Es256, &[7; 32]).unwrap().public());
        off_curve.y = Some(B64.encode([1u8; 32]));
        assert_eq!(KeySet::from_jwks(&doc(vec![k.clone(), off_curve])), Err(TokenError::BadKey));
        let mut wrong_alg = k.clone();
        wrong_alg.alg = Some("ES256".into());
        assert_eq!(KeySet::from_jwks(&doc(vec![wrong_alg])), Err(TokenError::AlgKeyMismatch));
        let mut weak = k.clone();
        weak.x = Some(B64.encode([0u8; 32]));
        assert!(KeySet::from_jwks(&doc(vec![weak])).is_err());
        let mut private = k.clone();
        private.d = Some(serde_json::json!("secret"));
        let with_d = serde_json::to_vec(&serde_json::json!({"keys":[{"kty":"OKP","crv":"Ed25519","x":k.x,"kid":"a","d":"x"}]})).unwrap();
        assert_eq!(KeySet::from_jwks(&with_d), Err(TokenError::BadKey));
    }

    #[test]
    fn skips_foreign_key_types() {
        let doc = br#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"r"}]}"#;
        assert!(KeySet::from_jwks(doc).unwrap().is_empty());
    }
}
