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

/// Where a sidecar sends the decisions it made, for the STS's ledger. The STS attributes them to
/// the workload whose SVID the connection presents: a sidecar reports only for itself.
pub const REPORTS_PATH: &str = "/ledger/reports";
/// Most reports in one batch.
pub const MAX_REPORTS: usize = 500;
/// Largest body of one batch.
pub const MAX_REPORTS_BYTES: usize = 512 * 1024;
/// Longest text in a report field.
const MAX_REPORT_FIELD: usize = 1024;
/// Most agents a reported chain names.
const MAX_REPORT_CHAIN: usize = 32;

/// The decisions a sidecar reports.
pub const REPORTED_DECISIONS: [&str; 7] = ["accepted", "refused", "would_refuse", "allowed", "exchanged", "cache_hit", "exempt"];

/// One decision a sidecar made, as it reports it: the fields of its audit line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub ts: u64,
    pub kind: String,
    pub direction: String,
    pub decision: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The token the decision was about (presented, exchanged, or served from cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// The policy rule that decided, and what it was asked about (a JSON-RPC method and tool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How many times the sidecar made this decision (about this token, with this rule...) since
    /// its previous batch, the first at `ts`; absent, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Never sent by a sidecar: the STS names the reporting workload itself. One that says
    /// another workload is a forgery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

/// A batch of reports: `{"reports": [...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    pub reports: Vec<Report>,
}

impl Report {
    /// Whether the report is one a sidecar could have made: a known decision and direction,
    /// bounded text. The reason names the first field that is not.
    pub fn check(&self) -> Result<(), String> {
        if self.kind != "decision" || !matches!(self.direction.as_str(), "inbound" | "outbound") {
            return Err("kind and direction: a decision, inbound or outbound".into());
        }
        if !REPORTED_DECISIONS.contains(&self.decision.as_str()) {
            return Err(format!("decision: one of {}", REPORTED_DECISIONS.join(", ")));
        }
        let texts = [
            ("reason", Some(&self.reason)),
            ("sub", self.sub.as_ref()),
            ("sub_iss", self.sub_iss.as_ref()),
            ("scope", self.scope.as_ref()),
            ("jti", self.jti.as_ref()),
            ("sid", self.sid.as_ref()),
            ("audience", self.audience.as_ref()),
            ("rule", self.rule.as_ref()),
            ("method", self.method.as_ref()),
            ("name", self.name.as_ref()),
        ];
        let chain = self.chain.iter().flatten().map(|a| ("chain", Some(a)));
        if let Some((field, _)) =
            texts.into_iter().chain(chain).find(|(_, v)| v.is_some_and(|v| v.len() > MAX_REPORT_FIELD || v.chars().any(char::is_control)))
        {
            return Err(format!("{field}: at most {MAX_REPORT_FIELD} characters, no control characters"));
        }
        if self.chain.as_ref().is_some_and(|c| c.len() > MAX_REPORT_CHAIN) {
            return Err(format!("chain: at most {MAX_REPORT_CHAIN} agents"));
        }
        if self.count.is_some_and(|n| n < 2) {
            return Err("count: 2 or more (a decision made once has none)".into());
        }
        Ok(())
    }
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
