use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::{Algorithm, AlgorithmSignature};

use crate::TokenError;

/// The algorithm allow-list. Nothing else parses: no `none`, no HMAC, no RSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    EdDsa,
    Es256,
}

impl Alg {
    /// Exact, case-sensitive match as RFC 7515 requires; "none", "NONE", "HS256"... are refused.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        match s {
            "EdDSA" => Ok(Alg::EdDsa),
            "ES256" => Ok(Alg::Es256),
            _ => Err(TokenError::AlgNotAllowed),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDsa => "EdDSA",
            Alg::Es256 => "ES256",
        }
    }
}

/// A verification key. Each key has exactly one algorithm, fixed by its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    Ed25519(ed25519_dalek::VerifyingKey),
    P256(p256::ecdsa::VerifyingKey),
}

impl PublicKey {
    pub fn alg(&self) -> Alg {
        match self {
            PublicKey::Ed25519(_) => Alg::EdDsa,
            PublicKey::P256(_) => Alg::Es256,
        }
    }

    /// Verifies a raw JWS signature. Lengths are checked exactly; ECDSA r and s must be in
    /// [1, n-1] (p256 refuses the rest) and Ed25519 S must be canonical (dalek 2 refuses the rest).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Ed25519(k) => {
                signature.len() == 64
                    && match <Ed25519 as Algorithm>::Signature::try_from_slice(signature) {
                        Ok(sig) => Ed25519.verify_signature(&sig, k, message),
                        Err(_) => false,
                    }
            }
            PublicKey::P256(k) => {
                signature.len() == 64
                    && match <Es256 as Algorithm>::Signature::try_from_slice(signature) {
                        Ok(sig) => Es256.verify_signature(&sig, k, message),
                        Err(_) => false,
                    }
            }
        }
    }
}

/// DER `SubjectPublicKeyInfo` of a P-256 key, up to its point: id-ecPublicKey, prime256v1, and
/// the BIT STRING header for an uncompressed point (RFC 5480).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01,
    0x07, 0x03, 0x42, 0x00,
];

impl PublicKey {
    /// The key as DER `SubjectPublicKeyInfo`, for a verifier outside this crate (Envoy's crypto);
    /// `None` for Ed25519, which such verifiers are not given.
    pub fn p256_spki_der(&self) -> Option<Vec<u8>> {
        match self {
            PublicKey::P256(k) => {
                let mut der = P256_SPKI_PREFIX.to_vec();
                der.extend_from_slice(k.to_encoded_point(false).as_bytes());
                Some(der)
            }
            PublicKey::Ed25519(_) => None,
        }
    }
}

/// A JWS ES256 signature (r ‖ s, 32 bytes each) as the DER `ECDSA-Sig-Value` other verifiers
/// take; `None` unless it is exactly 64 bytes. Zero or out-of-range values are not refused here:
/// they stay zero or out of range, and every ECDSA verifier refuses them.
pub fn es256_signature_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.len() != 64 {
        return None;
    }
    let int = |v: &[u8]| {
        let v = &v[v.iter().position(|b| *b != 0).unwrap_or(v.len() - 1)..];
        let pad = v[0] & 0x80 != 0;
        let mut out = vec![0x02, (v.len() + pad as usize) as u8];
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    };
    let (r, s) = (int(&raw[..32]), int(&raw[32..]));
    let mut der = vec![0x30, (r.len() + s.len()) as u8];
    der.extend(r);
    der.extend(s);
    Some(der)
}

/// Who checks a signature once the token crate has chosen the key: the crate itself
/// (`InModule`), or a host whose crypto is faster than ours where we run (Envoy's BoringSSL, for
/// ES256 inside a wasm VM). Either way the key, the message and the verdict are the same.
pub trait SignatureCheck {
    fn check(&self, kid: &str, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool;
}

/// This crate's own verification.
pub struct InModule;

impl SignatureCheck for InModule {
    fn check(&self, _kid: &str, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        key.verify(message, signature)
    }
}

/// A signing key, held only by the STS (and the dev tools that play a person's IdP or SPIRE).
#[derive(Clone)]
pub enum PrivateKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "PrivateKey({})", self.alg().as_str())
    }
}

impl PrivateKey {
    pub fn alg(&self) -> Alg {
        match self {
            PrivateKey::Ed25519(_) => Alg::EdDsa,
            PrivateKey::P256(_) => Alg::Es256,
        }
    }

    pub fn public(&self) -> PublicKey {
        match self {
            PrivateKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            PrivateKey::P256(k) => PublicKey::P256(*k.verifying_key()),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            PrivateKey::Ed25519(k) => Ed25519.sign(k, message).as_bytes().into_owned(),
            PrivateKey::P256(k) => Es256.sign(k, message).as_bytes().into_owned(),
        }
    }

    /// The secret scalar/seed, for persisting keys in the STS state directory.
    pub fn secret_bytes(&self) -> Vec<u8> {
        match self {
            PrivateKey::Ed25519(k) => k.to_bytes().to_vec(),
            PrivateKey::P256(k) => k.to_bytes().to_vec(),
        }
    }

    pub fn from_secret_bytes(alg: Alg, bytes: &[u8]) -> Result<Self, TokenError> {
        match alg {
            Alg::EdDsa => {
                let seed: [u8; 32] = bytes.try_into().map_err(|_| TokenError::BadKey)?;
                Ok(PrivateKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)))
            }
            Alg::Es256 => p256::ecdsa::SigningKey::from_slice(bytes).map(PrivateKey::P256).map_err(|_| TokenError::BadKey),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_signatures_become_minimal_der_integers() {
        let mut raw = [0u8; 64];
        raw[31] = 1; // r = 1
        raw[32] = 0x80; // s has its top bit set: a leading zero keeps it positive
        let der = es256_signature_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 3 + 35, 0x02, 1, 1]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 35);
        assert!(es256_signature_der(&raw[..63]).is_none());
        // Zero stays zero (one 0 byte), for the verifier to refuse.
        assert_eq!(&es256_signature_der(&[0u8; 64]).unwrap(), &[0x30, 6, 0x02, 1, 0, 0x02, 1, 0]);
    }

    #[test]
    fn p256_keys_have_a_subject_public_key_info() {
        let k = PrivateKey::from_secret_bytes(Alg::Es256, &[7; 32]).unwrap().public();
        let der = k.p256_spki_der().unwrap();
        assert_eq!(der.len(), 91);
        assert_eq!(der[26], 0x04);
        let ed = PrivateKey::from_secret_bytes(Alg::EdDsa, &[7; 32]).unwrap().public();
        assert!(ed.p256_spki_der().is_none());
    }
}
