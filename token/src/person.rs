//! Tokens from outside actorchain: a person's token from a trusted identity provider (the start
//! of every chain). Verified the same way by the STS, which starts sessions from them, and by the
//! filter at a session's entry point.

use serde::Deserialize;

use crate::header::TypRule;
use crate::{is_principal_id, KeySet, TimeWindow, TokenError, Unverified};

/// An identity provider whose tokens name people.
#[derive(Debug, Clone)]
pub struct PersonIssuer {
    pub issuer: String,
    pub keys: KeySet,
    /// `typ` its tokens must carry; `None` accepts `JWT` or no `typ`, as most IdPs send.
    pub typ: Option<String>,
}

/// `aud` as RFC 7519 allows it from outside: one string or an array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, want: &str) -> bool {
        match self {
            Audience::One(a) => a == want,
            Audience::Many(v) => v.iter().any(|a| a == want),
        }
    }
}

/// The claims of a person's token that actorchain uses. Other members are ignored; duplicated
/// ones among these are refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PersonClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: u64,
    #[serde(default)]
    pub nbf: u64,
    pub iat: Option<u64>,
    pub scope: Option<String>,
    pub sid: Option<String>,
    pub jti: Option<String>,
}

/// Verifies a person's token for `audience`. The caller has already peeked `iss` to choose
/// `issuer`; every other rule, and the signature, is checked here.
pub fn verify_person(
    u: &Unverified<'_>,
    issuer: &PersonIssuer,
    audience: &str,
    window: TimeWindow,
    now: u64,
) -> Result<PersonClaims, TokenError> {
    u.check_typ(issuer.typ.as_deref().map_or(TypRule::JwtOrAbsent, TypRule::Exactly))?;
    let c: PersonClaims = u.claims()?;
    if c.iss != issuer.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if !is_principal_id(&c.sub) {
        return Err(TokenError::BadClaims);
    }
    window.check(now, c.nbf, c.exp, c.iat)?;
    if !c.aud.contains(audience) {
        return Err(TokenError::WrongAudience);
    }
    u.verify_signature(&issuer.keys)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sign_compact, Alg, PrivateKey};

    fn setup() -> (PrivateKey, PersonIssuer) {
        let k = PrivateKey::from_secret_bytes(Alg::EdDsa, &[8; 32]).unwrap();
        let mut keys = KeySet::default();
        keys.insert("idp".into(), k.public()).unwrap();
        (k, PersonIssuer { issuer: "https://idp".into(), keys, typ: None })
    }

    #[test]
    fn verifies_people_tokens() {
        let (k, iss) = setup();
        let good = serde_json::json!({"iss":"https://idp","sub":"user1","aud":["a","oncall"],"exp":200,"scope":"x"});
        let t = sign_compact(&good, &k, "idp", Some("JWT"));
        let u = Unverified::peek(&t).unwrap();
        assert_eq!(verify_person(&u, &iss, "oncall", TimeWindow::default(), 100).unwrap().sub, "user1");
        assert_eq!(verify_person(&u, &iss, "other", TimeWindow::default(), 100), Err(TokenError::WrongAudience));
        assert_eq!(verify_person(&u, &iss, "oncall", TimeWindow::default(), 300), Err(TokenError::Expired));
        let t = sign_compact(&good, &k, "idp", Some("at+jwt"));
        assert_eq!(verify_person(&Unverified::peek(&t).unwrap(), &iss, "oncall", TimeWindow::default(), 100), Err(TokenError::BadTyp));
        let dup = serde_json::to_string(&good).unwrap().replacen("\"sub\":\"user1\"", "\"sub\":\"user1\",\"sub\":\"admin\"", 1);
        let dup = crate::jws::tests_support::sign_raw(&dup, &k, "idp");
        assert_eq!(verify_person(&Unverified::peek(&dup).unwrap(), &iss, "oncall", TimeWindow::default(), 100), Err(TokenError::BadClaims));
    }
}
