use actorchain_token::wire::{param, GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, TT_ACCESS_TOKEN, TT_JWT};
use actorchain_token::ScopeSet;

use crate::error::{ExchangeError, OAuthCode};
/// Largest `/token` body read; anything larger is refused before parsing.
pub const MAX_FORM_BYTES: usize = 32 * 1024;

/// A syntactically valid RFC 8693 exchange request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `None` for the client-credentials grant: the agent itself is the subject.
    pub subject_token: Option<String>,
    pub audience: String,
    pub scope: Option<ScopeSet>,
    pub actor_token: Option<String>,
    /// The agent this workload speaks for (RFC 6749 `client_id`).
    pub client_id: String,
    pub issued_token_type: &'static str,
}

const KNOWN: [&str; 10] = [
    param::GRANT_TYPE,
    param::SUBJECT_TOKEN,
    param::SUBJECT_TOKEN_TYPE,
    param::AUDIENCE,
    param::RESOURCE,
    param::SCOPE,
    param::REQUESTED_TOKEN_TYPE,
    param::ACTOR_TOKEN,
    param::ACTOR_TOKEN_TYPE,
    param::CLIENT_ID,
];

fn invalid(reason: &'static str, d: impl Into<String>) -> ExchangeError {
    ExchangeError::new(OAuthCode::InvalidRequest, reason, d)
}

/// Parses an `application/x-www-form-urlencoded` body. Each parameter at most once (RFC 6749
/// §3.2), empty values count as absent (§3.1), unknown parameters are ignored (§3.2).
pub fn parse_token_request(body: &[u8]) -> Result<TokenRequest, ExchangeError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(invalid("body_too_large", format!("request body exceeds {MAX_FORM_BYTES} bytes")).with_status(413));
    }
    let mut values: [Option<String>; KNOWN.len()] = Default::default();
    let mut audiences = 0;
    for (k, v) in form_urlencoded::parse(body) {
        let Some(i) = KNOWN.iter().position(|n| *n == k) else { continue };
        if v.is_empty() {
            continue;
        }
        // RFC 8693 allows several audiences; refused below with a target error, not as a repeat.
        let is_target = KNOWN[i] == param::AUDIENCE || KNOWN[i] == param::RESOURCE;
        audiences += usize::from(is_target);
        if values[i].replace(v.into_owned()).is_some() && !is_target {
            return Err(invalid("parameter_repeated", format!("parameter {} appears more than once", KNOWN[i])));
        }
    }
    let [grant_type, subject_token, subject_token_type, audience, resource, scope, requested_token_type, actor_token, actor_token_type, client_id] =
        values;
    let self_acting = match grant_type.as_deref() {
        None => return Err(invalid("grant_type_missing", "grant_type is required")),
        Some(GRANT_TOKEN_EXCHANGE) => false,
        Some(GRANT_CLIENT_CREDENTIALS) => true,
        Some(_) => {
            return Err(ExchangeError::new(
                OAuthCode::UnsupportedGrantType,
                "grant_type_unsupported",
                format!("grant_type must be {GRANT_TOKEN_EXCHANGE} (or {GRANT_CLIENT_CREDENTIALS} for an agent acting as itself)"),
            ))
        }
    };
    if audiences > 1 {
        return Err(ExchangeError::new(
            OAuthCode::InvalidTarget,
            "audience_not_single",
            "exactly one audience (or resource) is required: tokens are single-hop",
        ));
    }
    let audience = audience.or(resource).ok_or_else(|| {
        ExchangeError::new(OAuthCode::InvalidTarget, "audience_missing", "audience (or resource) naming the next hop is required")
    })?;
    let subject_token = match (self_acting, subject_token) {
        (true, None) => None,
        (true, Some(_)) => {
            return Err(invalid("subject_token_unexpected", "client_credentials takes no subject_token: the agent is the subject"))
        }
        (false, None) => return Err(invalid("subject_token_missing", "subject_token is required")),
        (false, Some(t)) => {
            match subject_token_type.as_deref() {
                Some(TT_JWT) | Some(TT_ACCESS_TOKEN) => {}
                None => return Err(invalid("subject_token_type_missing", "subject_token_type is required")),
                Some(_) => {
                    return Err(invalid(
                        "subject_token_type_unsupported",
                        format!("subject_token_type must be {TT_JWT} or {TT_ACCESS_TOKEN}"),
                    ))
                }
            }
            Some(t)
        }
    };
    match (&actor_token, actor_token_type.as_deref()) {
        (None, None) | (Some(_), Some(TT_JWT)) => {}
        (None, Some(_)) => return Err(invalid("actor_token_type_without_token", "actor_token_type given without actor_token")),
        (Some(_), None) => return Err(invalid("actor_token_type_missing", "actor_token requires actor_token_type")),
        (Some(_), Some(_)) => {
            return Err(invalid("actor_token_type_unsupported", format!("actor_token_type must be {TT_JWT} (a JWT-SVID)")))
        }
    }
    let issued_token_type = match requested_token_type.as_deref() {
        None | Some(TT_ACCESS_TOKEN) => TT_ACCESS_TOKEN,
        Some(TT_JWT) => TT_JWT,
        Some(_) => {
            return Err(invalid("requested_token_type_unsupported", format!("requested_token_type must be {TT_ACCESS_TOKEN} or {TT_JWT}")))
        }
    };
    let scope = scope.map(|s| ScopeSet::parse(&s)).transpose().map_err(|_| {
        ExchangeError::new(OAuthCode::InvalidScope, "scope_malformed", "scope must be space-separated RFC 6749 scope tokens")
    })?;
    let client_id =
        client_id.ok_or_else(|| invalid("client_id_missing", "client_id naming the agent this workload speaks for is required"))?;
    Ok(TokenRequest { subject_token, audience, scope, actor_token, client_id, issued_token_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=t&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=mcp&client_id=agent";

    fn reason(body: &str) -> &'static str {
        parse_token_request(body.as_bytes()).unwrap_err().reason
    }

    #[test]
    fn parses_a_complete_request() {
        let r = parse_token_request(format!("{BASE}&scope=b+a&ignored=1&requested_token_type=").as_bytes()).unwrap();
        assert_eq!(r.audience, "mcp");
        assert_eq!(r.scope.unwrap().to_string(), "a b");
        assert_eq!(r.issued_token_type, TT_ACCESS_TOKEN);
        let r = parse_token_request(BASE.replace("audience=", "resource=").as_bytes()).unwrap();
        assert_eq!(r.audience, "mcp");
    }

    #[test]
    fn refuses_malformed_requests() {
        assert_eq!(reason(&format!("{BASE}&client_id=other")), "parameter_repeated");
        assert_eq!(reason(&format!("{BASE}&subject_token=x")), "parameter_repeated");
        assert_eq!(reason(&format!("{BASE}&audience=other")), "audience_not_single");
        assert_eq!(reason(&format!("{BASE}&resource=other")), "audience_not_single");
        assert_eq!(reason(&BASE.replace("token-exchange", "password")), "grant_type_unsupported");
        let cc = "grant_type=client_credentials&audience=mcp&client_id=agent";
        assert_eq!(parse_token_request(cc.as_bytes()).unwrap().subject_token, None);
        assert_eq!(reason(&format!("{cc}&subject_token=t")), "subject_token_unexpected");
        assert_eq!(reason(&BASE.replace("audience=mcp&", "")), "audience_missing");
        assert_eq!(reason(&BASE.replace("client_id=agent", "")), "client_id_missing");
        assert_eq!(reason(&format!("{BASE}&actor_token=x")), "actor_token_type_missing");
        assert_eq!(reason(&format!("{BASE}&actor_token_type=x")), "actor_token_type_without_token");
        assert_eq!(reason(&format!("{BASE}&scope=a%22b")), "scope_malformed");
        let huge = format!("{BASE}&pad={}", "x".repeat(MAX_FORM_BYTES));
        let e = parse_token_request(huge.as_bytes()).unwrap_err();
        assert_eq!((e.reason, e.status()), ("body_too_large", 413));
    }
}
