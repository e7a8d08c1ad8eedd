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
