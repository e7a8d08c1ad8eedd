//! The actorchain token contract, shared by the STS (which mints) and the Envoy filter (which
//! verifies). Everything here is pure: no I/O, no clock (callers pass `now`), no async, so the same
//! rules compile for `wasm32-wasip1` and native. The normative description is `docs/token.md`.

mod alg;
mod chain;
mod claims;
mod error;
mod header;
mod json_limits;
mod json_out;
mod jwks;
mod jws;
mod person;
mod revocation;
mod scope;
mod time;
pub mod wire;

pub use alg::{es256_signature_der, Alg, InModule, PrivateKey, PublicKey, SignatureCheck};
pub use chain::{check_chain, extend_chain, ChainLimits, DEFAULT_MAX_DEPTH, MAX_DEPTH_CEILING};
pub use claims::{is_issuer_id, is_principal_id, is_spiffe_id, spiffe_trust_domain, Actor, Claims, SubjectId, ISS_SUB, SPIFFE_SCHEME};
pub use error::TokenError;
pub use header::{Header, TypRule, TYP_ACCESS_TOKEN};
pub use json_limits::{check_json_depth, MAX_JSON_DEPTH};
pub use json_out::{to_json, to_json_pretty, to_json_vec};
pub use jwks::{Jwk, KeySet, MAX_JWKS_BYTES, MAX_KEYS};
pub use jws::{sign_compact, Unverified, MAX_TOKEN_BYTES};
pub use person::{verify_person, Audience, PersonClaims, PersonIssuer};
pub use revocation::{person_handle, Handles, RevocationEntry, RevocationFeed, RevocationKind, RevocationSet};
pub use scope::{is_scope_token, ScopeSet};
pub use time::TimeWindow;

use serde::Deserialize;

/// What a verifier requires of an actorchain token besides a good signature.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub window: TimeWindow,
    pub limits: ChainLimits,
}

/// Verifies an actorchain token completely: framing, header, signature against `keys`, claims,
/// time window, audience and chain rules. This is the one definition both users call.
pub fn verify(token: &str, keys: &KeySet, exp: &Expectations<'_>, now: u64) -> Result<Claims, TokenError> {
    verify_with(token, keys, exp, now, &InModule)
}

/// As `verify`, with the signature checked by `check` (every other rule is this crate's).
pub fn verify_with(token: &str, keys: &KeySet, exp: &Expectations<'_>, now: u64, check: &dyn SignatureCheck) -> Result<Claims, TokenError> {
    let unverified = Unverified::parse(token, TypRule::Exactly(TYP_ACCESS_TOKEN))?;
    let claims: Claims = unverified.claims()?;
    // Cheap claim checks first: a token that fails them never costs a signature check.
    if claims.iss != exp.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if claims.aud != exp.audience {
        return Err(TokenError::WrongAudience);
    }
    exp.window.check(now, claims.nbf, claims.exp, Some(claims.iat))?;
    check_chain(&claims, exp.limits)?;
    unverified.verify_signature_with(keys, check)?;
    Ok(claims)
}

/// Reads only `iss` from a token's payload, to pick the key set a verifier should use. The result
/// is untrusted until the token is verified with that key set.
pub fn peek_issuer(unverified: &Unverified<'_>) -> Result<String, TokenError> {
    #[derive(Deserialize)]
    struct IssOnly {
        iss: String,
    }
    let v: IssOnly = unverified.claims()?;
    Ok(v.iss)
}
