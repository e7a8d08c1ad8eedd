//! Local replies: RFC 6750 challenges for inbound refusals, JSON errors for outbound ones. Every
//! body names a machine-readable reason.

use actorchain_token::RevocationKind;
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    /// The reason, for the audit line and metrics.
    pub reason: &'static str,
}

const REALM: &str = "actorchain";

fn json_reply(status: u32, reason: &'static str, error: &str, description: &str, challenge: Option<String>) -> LocalReply {
    let mut headers = vec![("content-type", "application/json".to_string()), ("cache-control", "no-store".to_string())];
    if let Some(c) = challenge {
        headers.push(("www-authenticate", c));
    }
    LocalReply { status, headers, body: json!({"error": error, "reason": reason, "error_description": description}).to_string(), reason }
}

/// 401 with a bare challenge: no credentials were sent (RFC 6750 §3.1: no error code).
pub fn token_missing() -> LocalReply {
    json_reply(401, "token_missing", "unauthorized", "a bearer token is required", Some(format!("Bearer realm=\"{REALM}\"")))
}

/// 400 `invalid_request`: the credentials are malformed or repeated.
pub fn invalid_request(reason: &'static str, description: &str) -> LocalReply {
    let c = format!("Bearer realm=\"{REALM}\", error=\"invalid_request\", error_description=\"{reason}\"");
    json_reply(400, reason, "invalid_request", description, Some(c))
}

/// 401 `invalid_token`: expired, badly signed, wrong audience...
pub fn invalid_token(reason: &'static str, description: &str) -> LocalReply {
    let c = format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{reason}\"");
    json_reply(401, reason, "invalid_token", description, Some(c))
}

/// 403 `insufficient_scope`, naming the scope the route requires.
pub fn insufficient_scope(reason: &'static str, description: &str, scope: &str) -> LocalReply {
    let c = format!("Bearer realm=\"{REALM}\", error=\"insufficient_scope\", error_description=\"{reason}\", scope=\"{scope}\"");
    json_reply(403, reason, "insufficient_scope", description, Some(c))
}

/// 503: the filter cannot decide safely right now (no keys yet, STS unreachable). Fail closed.
pub fn unavailable(reason: &'static str, description: &str) -> LocalReply {
    json_reply(503, reason, "temporarily_unavailable", description, None)
}

/// 403 for what no token could make right: an unmapped destination, an originator not allowed.
pub fn forbidden(reason: &'static str, description: &str) -> LocalReply {
    json_reply(403, reason, "access_denied", description, None)
}

/// 403 carrying the STS's own error for a refused exchange, so the agent learns what to fix. A
/// refusal for revocation keeps its own reason (`session_revoked`...), so the filter reacts to it.
pub fn exchange_refused(sts_error: &str, sts_reason: &str, sts_description: &str) -> LocalReply {
    let reason = [RevocationKind::Token, RevocationKind::Session, RevocationKind::Agent, RevocationKind::Person]
        .into_iter()
        .map(RevocationKind::reason)
        .find(|r| *r == sts_reason)
        .unwrap_or("exchange_refused");
    let mut r = json_reply(403, reason, sts_error, sts_description, None);
    r.body = json!({"error": sts_error, "reason": reason, "sts_reason": sts_reason, "error_description": sts_description}).to_string();
    r
}

/// Whether a refusal says a token was revoked.
pub fn is_revocation(reply: &LocalReply) -> bool {
    reply.reason.ends_with("_revoked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc6750() {
        assert_eq!(token_missing().headers[2].1, "Bearer realm=\"actorchain\"");
        let r = invalid_token("token_expired", "token has expired");
        assert_eq!(r.status, 401);
        assert_eq!(r.headers[2].1, "Bearer realm=\"actorchain\", error=\"invalid_token\", error_description=\"token_expired\"");
        let r = insufficient_scope("scope_missing", "needs repo:write", "repo:write");
        assert!(r.headers[2].1.ends_with("scope=\"repo:write\""));
        let v: serde_json::Value = serde_json::from_str(&exchange_refused("invalid_target", "audience_not_allowed", "no").body).unwrap();
        assert_eq!(v["sts_reason"], "audience_not_allowed");
    }
}
