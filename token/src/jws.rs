use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::header::TypRule;
use crate::{check_json_depth, Header, InModule, KeySet, PrivateKey, SignatureCheck, TokenError, MAX_JSON_DEPTH};

/// Largest compact token accepted. A depth-16 chain with long SPIFFE IDs fits well inside.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// A parsed but not yet verified JWS. Only `verify_signature` turns it into something to trust.
#[derive(Debug)]
pub struct Unverified<'a> {
    header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> Unverified<'a> {
    /// Framing and header checks, no signature yet. `typ` is the rule for this kind of token.
    pub fn parse(token: &'a str, typ: TypRule<'_>) -> Result<Self, TokenError> {
        let u = Self::peek(token)?;
        u.header.check_typ(typ)?;
        Ok(u)
    }

    /// Every framing and header check except `typ`, for a verifier that must read `iss` to know
    /// which kind of token this is. It must then call `check_typ` before trusting anything.
    pub fn peek(token: &'a str) -> Result<Self, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Oversized);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        if h.is_empty() || p.is_empty() {
            return Err(TokenError::Malformed);
        }
        let header_json = B64.decode(h).map_err(|_| TokenError::BadBase64)?;
        check_json_depth(&header_json, 2)?;
        // The header is judged first, so `alg: none` with an empty signature is named as such.
        let header = Header::parse(&header_json)?;
        if s.is_empty() {
            return Err(TokenError::Malformed);
        }
        let payload = B64.decode(p).map_err(|_| TokenError::BadBase64)?;
        check_json_depth(&payload, MAX_JSON_DEPTH)?;
        let signature = B64.decode(s).map_err(|_| TokenError::BadBase64)?;
        Ok(Unverified { header, signing_input: &token[..h.len() + 1 + p.len()], payload, signature })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn check_typ(&self, typ: TypRule<'_>) -> Result<(), TokenError> {
        self.header.check_typ(typ)
    }

    /// The payload as `T`, which decides how strict the shape is (actorchain `Claims` refuse
    /// unknown and duplicate members).
    pub fn claims<T: DeserializeOwned>(&self) -> Result<T, TokenError> {
        serde_json::from_slice(&self.payload).map_err(|_| TokenError::BadClaims)
    }

    pub fn verify_signature(&self, keys: &KeySet) -> Result<(), TokenError> {
        self.verify_signature_with(keys, &InModule)
    }

    /// As `verify_signature`, the key chosen here, the signature checked by `check`.
    pub fn verify_signature_with(&self, keys: &KeySet, check: &dyn SignatureCheck) -> Result<(), TokenError> {
        let key = keys.get(&self.header.kid).ok_or(TokenError::UnknownKid)?;
        if key.alg() != self.header.alg {
            return Err(TokenError::AlgKeyMismatch);
        }
        if check.check(&self.header.kid, key, self.signing_input.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

/// Signs `claims` as a compact JWS with the given `typ` and `kid`.
pub fn sign_compact(claims: &impl Serialize, key: &PrivateKey, kid: &str, typ: Option<&str>) -> String {
    #[derive(Serialize)]
    struct Out<'a> {
        alg: &'a str,
        kid: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        typ: Option<&'a str>,
    }
    let header = crate::to_json_vec(&Out { alg: key.alg().as_str(), kid, typ });
    let payload = crate::to_json_vec(claims);
    sign_parts(&header, &payload, key)
}

fn sign_parts(header: &[u8], payload: &[u8], key: &PrivateKey) -> String {
    let mut out = String::with_capacity(64 + payload.len() * 4 / 3 + 90);
    B64.encode_string(header, &mut out);
    out.push('.');
    B64.encode_string(payload, &mut out);
    let sig = key.sign(out.as_bytes());
    out.push('.');
    B64.encode_string(&sig, &mut out);
    out
}

/// Signs a payload given as raw JSON text, for tests that need JSON serde would never produce.
#[cfg(test)]
pub(crate) mod tests_support {
    pub fn sign_raw(payload_json: &str, key: &crate::PrivateKey, kid: &str) -> String {
        let header = format!(r#"{{"alg":"{}","kid":"{kid}","typ":"JWT"}}"#, key.alg().as_str());
        super::sign_parts(header.as_bytes(), payload_json.as_bytes(), key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Alg, TYP_ACCESS_TOKEN};

    const AT: TypRule<'static> = TypRule::Exactly(TYP_ACCESS_TOKEN);

    fn keyset(kid: &str, k: &PrivateKey) -> KeySet {
        let mut s = KeySet::default();
        s.insert(kid.into(), k.public()).unwrap();
        s
    }

    #[test]
    fn signs_and_verifies_both_algorithms() {
        for alg in [Alg::EdDsa, Alg::Es256] {
            let k = PrivateKey::from_secret_bytes(alg, &[3; 32]).unwrap();
            let t = sign_compact(&serde_json::json!({"a":1}), &k, "k1", Some(TYP_ACCESS_TOKEN));
            let u = Unverified::parse(&t, AT).unwrap();
            assert_eq!(u.header().alg, alg);
            u.verify_signature(&keyset("k1", &k)).unwrap();
            let other = PrivateKey::from_secret_bytes(alg, &[4; 32]).unwrap();
            assert_eq!(u.verify_signature(&keyset("k1", &other)), Err(TokenError::BadSignature));
            assert_eq!(u.verify_signature(&keyset("k2", &k)), Err(TokenError::UnknownKid));
        }
    }

    #[test]
    fn alg_must_match_the_key() {
        let ed = PrivateKey::from_secret_bytes(Alg::EdDsa, &[3; 32]).unwrap();
        let ec = PrivateKey::from_secret_bytes(Alg::Es256, &[3; 32]).unwrap();
        let t = sign_compact(&serde_json::json!({}), &ec, "k1", Some(TYP_ACCESS_TOKEN));
        let u = Unverified::parse(&t, AT).unwrap();
        assert_eq!(u.verify_signature(&keyset("k1", &ed)), Err(TokenError::AlgKeyMismatch));
    }

    #[test]
    fn framing_violations() {
        let k = PrivateKey::from_secret_bytes(Alg::EdDsa, &[3; 32]).unwrap();
        let t = sign_compact(&serde_json::json!({}), &k, "k1", Some(TYP_ACCESS_TOKEN));
        let (hp, s) = t.rsplit_once('.').unwrap();
        for (bad, e) in [
            (format!("{hp}."), TokenError::Malformed),
            (format!("{t}.x"), TokenError::Malformed),
            (hp.to_string(), TokenError::Malformed),
            (format!("{hp}.{s}="), TokenError::BadBase64),
            (format!("{hp}.+{}", &s[1..]), TokenError::BadBase64),
            ("x".repeat(MAX_TOKEN_BYTES + 1), TokenError::Oversized),
        ] {
            assert_eq!(Unverified::parse(&bad, AT).map(|_| ()), Err(e), "{bad}");
        }
        let sig = B64.decode(s).unwrap();
        let short = format!("{hp}.{}", B64.encode(&sig[..63]));
        let u = Unverified::parse(&short, AT).unwrap();
        assert_eq!(u.verify_signature(&keyset("k1", &k)), Err(TokenError::BadSignature));
    }
}
