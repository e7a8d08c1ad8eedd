//! The wire contract between the filter (the client) and the STS: the RFC 8693 token-exchange
//! request form, its answer (§2.2.1), the RFC 6749 §5.2 error body, and the URNs they use. Both
//! sides build and read these with the definitions here; no URN is spelled anywhere else.

use serde::{Deserialize, Serialize};

use crate::ScopeSet;

/// RFC 8693 §2.1 `grant_type` of a token exchange.
pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 6749 §4.4 with mTLS client authentication: an agent acting as itself at the root of a new
/// chain (scheduled jobs), where no person's or upstream token exists.
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
/// RFC 8693 §3 token type identifiers.
pub const TT_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const TT_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The form parameters of a `/token` request.
pub mod param {
    pub const GRANT_TYPE: &str = "grant_type";
    pub const SUBJECT_TOKEN: &str = "subject_token";
    pub const SUBJECT_TOKEN_TYPE: &str = "subject_token_type";
    pub const AUDIENCE: &str = "audience";
    pub const RESOURCE: &str = "resource";
    pub const SCOPE: &str = "scope";
    pub const REQUESTED_TOKEN_TYPE: &str = "requested_token_type";
    pub const ACTOR_TOKEN: &str = "actor_token";
    pub const ACTOR_TOKEN_TYPE: &str = "actor_token_type";
    pub const CLIENT_ID: &str = "client_id";
}

/// What an agent asks the STS for: an exchange of `subject` (or, without one, a chain of its own)
/// for a token addressed to `audience`, holding at most `scope` when given.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    /// The token to exchange; `None`: the agent acts as itself (client credentials).
    pub subject: Option<&'a str>,
    pub audience: &'a str,
    pub scope: Option<&'a ScopeSet>,
    /// The agent this workload speaks for.
    pub client_id: &'a str,
}

impl ExchangeRequest<'_> {
    /// The form's parameters, in order.
    pub fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = match self.subject {
            Some(t) => vec![
                (param::GRANT_TYPE, GRANT_TOKEN_EXCHANGE.to_string()),
                (param::SUBJECT_TOKEN, t.to_string()),
                (param::SUBJECT_TOKEN_TYPE, TT_JWT.to_string()),
            ],
            None => vec![(param::GRANT_TYPE, GRANT_CLIENT_CREDENTIALS.to_string())],
        };
        if let Some(s) = self.scope {
            p.push((param::SCOPE, s.to_string()));
        }
        p.push((param::AUDIENCE, self.audience.to_string()));
        p.push((param::CLIENT_ID, self.client_id.to_string()));
        p
    }

    /// The `application/x-www-form-urlencoded` body.
    pub fn form(&self) -> String {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(self.params()).finish()
    }
}

/// A granted exchange (RFC 8693 §2.2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeResponse {
    pub access_token: String,
    pub issued_token_type: String,
    pub token_type: String,
    pub expires_in: u64,
    #[serde(default)]
    pub scope: String,
}

/// A refusal (RFC 6749 §5.2, RFC 8693 §2.2.2), with the stable machine-readable reason as the
/// extension member `actorchain_reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
    #[serde(default)]
    pub actorchain_reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_both_grants() {
        let scope = ScopeSet::parse("repo:write").unwrap();
        let req = ExchangeRequest { subject: Some("t.o.k"), audience: "mcp-gateway", scope: Some(&scope), client_id: "agent" };
        let params = req.params();
        assert!(params.contains(&(param::GRANT_TYPE, GRANT_TOKEN_EXCHANGE.to_string())));
        assert!(params.contains(&(param::SUBJECT_TOKEN_TYPE, TT_JWT.to_string())));
        assert!(params.contains(&(param::SCOPE, "repo:write".to_string())));
        let own = ExchangeRequest { subject: None, audience: "a", scope: None, client_id: "agent" };
        assert_eq!(own.form(), "grant_type=client_credentials&audience=a&client_id=agent");
        let refused: ErrorBody = serde_json::from_str(r#"{"error":"invalid_target"}"#).unwrap();
        assert_eq!((refused.error.as_str(), refused.actorchain_reason.as_str()), ("invalid_target", ""));
    }
}
