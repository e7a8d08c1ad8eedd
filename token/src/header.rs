use serde::Deserialize;
use serde_json::Value;

use crate::{Alg, TokenError};

/// RFC 9068 media type for JWT access tokens; actorchain tokens must carry it (RFC 8725 §3.11).
pub const TYP_ACCESS_TOKEN: &str = "at+jwt";
const MAX_KID_LEN: usize = 128;

/// The JOSE header fields a verifier acts on, after the strict checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Alg,
    pub kid: String,
    pub typ: Option<String>,
}

/// Which `typ` a token must have. Our own tokens name theirs exactly; tokens from outside (a
/// person's IdP, SPIRE's JWT-SVIDs) may leave it out or say plain `JWT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypRule<'a> {
    Exactly(&'a str),
    JwtOrAbsent,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    // Present-at-all is what matters for these; their content is never used.
    crit: Option<Value>,
    jwk: Option<Value>,
    jku: Option<Value>,
    x5u: Option<Value>,
    x5c: Option<Value>,
}

impl Header {
    /// Parses and applies every rule except `typ`, which `check_typ` applies once the kind of
    /// token is known.
    pub fn parse(json: &[u8]) -> Result<Self, TokenError> {
        let raw: RawHeader = serde_json::from_slice(json).map_err(|_| TokenError::BadJson)?;
        let alg = Alg::parse(&raw.alg)?;
        if raw.crit.is_some() {
            return Err(TokenError::UnsupportedCrit);
        }
        if raw.jwk.is_some() || raw.jku.is_some() || raw.x5u.is_some() || raw.x5c.is_some() {
            return Err(TokenError::EmbeddedKey);
        }
        let kid = raw.kid.ok_or(TokenError::MissingKid)?;
        if kid.is_empty() || kid.len() > MAX_KID_LEN || !kid.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::BadKid);
        }
        Ok(Header { alg, kid, typ: raw.typ })
    }

    pub fn check_typ(&self, rule: TypRule<'_>) -> Result<(), TokenError> {
        if typ_matches(self.typ.as_deref(), rule) {
            Ok(())
        } else {
            Err(TokenError::BadTyp)
        }
    }
}

/// Media types compare case-insensitively and may carry the `application/` prefix (RFC 7515 §4.1.9).
fn typ_matches(found: Option<&str>, rule: TypRule<'_>) -> bool {
    let normalized = |t: &str| {
        let t = t.trim();
        match t.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => t[12..].to_string(),
            _ => t.to_string(),
        }
    };
    match (found, rule) {
        (Some(t), TypRule::Exactly(want)) => normalized(t).eq_ignore_ascii_case(want),
        (None, TypRule::Exactly(_)) => false,
        (Some(t), TypRule::JwtOrAbsent) => {
            let t = normalized(t);
            t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("JOSE")
        }
        (None, TypRule::JwtOrAbsent) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(j: &str) -> Result<Header, TokenError> {
        let h = Header::parse(j.as_bytes())?;
        h.check_typ(TypRule::Exactly(TYP_ACCESS_TOKEN))?;
        Ok(h)
    }

    #[test]
    fn accepts_the_contract_header() {
        let h = parse(r#"{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}"#).unwrap();
        assert_eq!((h.alg, h.kid.as_str()), (Alg::EdDsa, "k1"));
        assert!(parse(r#"{"alg":"ES256","kid":"k1","typ":"application/AT+JWT"}"#).is_ok());
    }

    #[test]
    fn refuses_every_deviation() {
        for (h, e) in [
            (r#"{"alg":"none","kid":"k","typ":"at+jwt"}"#, TokenError::AlgNotAllowed),
            (r#"{"alg":"NoNe","kid":"k","typ":"at+jwt"}"#, TokenError::AlgNotAllowed),
            (r#"{"alg":"HS256","kid":"k","typ":"at+jwt"}"#, TokenError::AlgNotAllowed),
            (r#"{"alg":"eddsa","kid":"k","typ":"at+jwt"}"#, TokenError::AlgNotAllowed),
            (r#"{"alg":"EdDSA","typ":"at+jwt"}"#, TokenError::MissingKid),
            (r#"{"alg":"EdDSA","kid":"","typ":"at+jwt"}"#, TokenError::BadKid),
            (r#"{"alg":"EdDSA","kid":"a b","typ":"at+jwt"}"#, TokenError::BadKid),
            (r#"{"alg":"EdDSA","kid":7,"typ":"at+jwt"}"#, TokenError::BadJson),
            (r#"{"alg":"EdDSA","kid":"k","typ":"JWT"}"#, TokenError::BadTyp),
            (r#"{"alg":"EdDSA","kid":"k"}"#, TokenError::BadTyp),
            (r#"{"alg":"EdDSA","kid":"k","typ":"at+jwt","crit":["b64"]}"#, TokenError::UnsupportedCrit),
            (r#"{"alg":"EdDSA","kid":"k","typ":"at+jwt","jku":"http://x"}"#, TokenError::EmbeddedKey),
            (r#"{"alg":"EdDSA","kid":"k","typ":"at+jwt","jwk":{}}"#, TokenError::EmbeddedKey),
            (r#"{"alg":"EdDSA","kid":"k","typ":"at+jwt","x5c":[]}"#, TokenError::EmbeddedKey),
            (r#"{"alg":"EdDSA","kid":"k","typ":"at+jwt","x5u":"u"}"#, TokenError::EmbeddedKey),
            (r#"{"alg":"EdDSA","alg":"EdDSA","kid":"k","typ":"at+jwt"}"#, TokenError::BadJson),
            (r#"["EdDSA"]"#, TokenError::BadJson),
        ] {
            assert_eq!(parse(h), Err(e), "{h}");
        }
        let long = format!(r#"{{"alg":"EdDSA","kid":"{}","typ":"at+jwt"}}"#, "k".repeat(129));
        assert_eq!(parse(&long), Err(TokenError::BadKid));
    }

    #[test]
    fn outside_tokens_may_omit_typ() {
        let h = Header::parse(br#"{"alg":"ES256","kid":"k"}"#).unwrap();
        assert!(h.check_typ(TypRule::JwtOrAbsent).is_ok());
        let h = Header::parse(br#"{"alg":"ES256","kid":"k","typ":"at+jwt"}"#).unwrap();
        assert_eq!(h.check_typ(TypRule::JwtOrAbsent), Err(TokenError::BadTyp));
    }
}
