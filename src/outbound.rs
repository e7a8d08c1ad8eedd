//! Outbound decisions: which audience a destination is, which token to exchange, the STS request,
//! and what the STS's answer means.

use actorchain_token::wire::{ErrorBody, ExchangeRequest, ExchangeResponse};
use actorchain_token::{Claims, ScopeSet, Unverified, MAX_TOKEN_BYTES};
use serde::Deserialize;

use crate::bearer::bearer;
use crate::config::{Destination, OutboundConfig, StsConfig};
use crate::correlation;
use crate::reply::{self, LocalReply};

/// Largest STS answer read.
pub const MAX_REPLY_BYTES: usize = 16 * 1024;

/// The destination an authority names: exact match first, then the host without its port.
/// `Ok(None)` means pass the request through untouched (only when configured so).
pub fn destination<'c>(cfg: &'c OutboundConfig, authority: &str) -> Result<Option<&'c Destination>, LocalReply> {
    // Authorities are nearly always lower-case already; only the rest pay for a copy.
    let authority: std::borrow::Cow<'_, str> =
        if authority.bytes().any(|b| b.is_ascii_uppercase()) { authority.to_ascii_lowercase().into() } else { authority.into() };
    let host = authority.rsplit_once(':').map_or(&*authority, |(h, _)| h);
    match cfg.destinations.get(&*authority).or_else(|| cfg.destinations.get(host)) {
        Some(a) => Ok(Some(a)),
        None if cfg.pass_unmapped => Ok(None),
        None => Err(reply::forbidden("destination_unmapped", &format!("no audience is configured for destination {authority}"))),
    }
}

/// What the STS is asked to exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// The token the app propagated in `Authorization`, or else the one recorded when the
    /// request this call continues was accepted (found through its correlation key).
    Token(String),
    /// Nothing: the agent acts as itself at the root of a new chain (client credentials).
    Agent,
}

impl Subject {
    /// What the exchange cache keys on besides the audience (never a raw token: it is hashed).
    pub fn cache_input(&self) -> &str {
        match self {
            Subject::Token(t) => t,
            Subject::Agent => "",
        }
    }
}

pub fn subject(cfg: &OutboundConfig, authorization: &[&str], recorded: Option<String>) -> Result<Subject, LocalReply> {
    match bearer(authorization) {
        Ok(Some(t)) => Ok(Subject::Token(t.to_string())),
        Ok(None) => match recorded {
            Some(t) => Ok(Subject::Token(t)),
            None if cfg.act_as_self => Ok(Subject::Agent),
            None => Err(reply::forbidden(
                "no_subject_token",
                "no token to exchange: none in Authorization, and no request in progress here that this call continues",
            )),
        },
        Err(_) => Err(reply::invalid_request("bearer_malformed", "the outgoing Authorization header is not a single bearer token")),
    }
}

/// The scope to ask the STS for: the destination's cap ∩ what the subject token says it holds
/// (read unverified: only to word the request; the STS verifies and never grants more). No cap:
/// `Ok(None)`, ask for nothing in particular, and the STS grants all the subject and the registry
/// allow. Nothing left to ask for is refused here: an empty `scope` means "unspecified" to OAuth.
pub fn scope_to_ask(subject: &Subject, cap: Option<&ScopeSet>, audience: &str) -> Result<Option<ScopeSet>, LocalReply> {
    #[derive(Deserialize)]
    struct Held {
        scope: Option<String>,
    }
    let Some(cap) = cap else { return Ok(None) };
    let ask = match subject {
        Subject::Token(t) => {
            let held =
                Unverified::peek(t).ok().and_then(|u| u.claims::<Held>().ok()).map(|h| ScopeSet::parse(&h.scope.unwrap_or_default()));
            match held {
                Some(Ok(h)) => cap.intersection(&h),
                // Unreadable: the STS will say what is wrong with it.
                _ => cap.clone(),
            }
        }
        Subject::Agent => cap.clone(),
    };
    if ask.is_empty() {
        return Err(reply::forbidden(
            "scope_unavailable",
            &format!("the work this call continues holds none of the scopes calls to {audience} may carry"),
        ));
    }
    Ok(Some(ask))
}

/// Headers and form body of the request to the STS: an RFC 8693 exchange, or the client
/// credentials grant when the agent acts as itself. A well-formed `traceparent` of the call goes
/// along, so the STS's span of the exchange joins the call's trace.
pub fn token_request(
    sts: &StsConfig,
    agent: &str,
    subject: &Subject,
    audience: &str,
    scope: Option<&ScopeSet>,
    traceparent: Option<&str>,
) -> (Vec<(&'static str, String)>, String) {
    let subject = match subject {
        Subject::Token(t) => Some(t.as_str()),
        Subject::Agent => None,
    };
    let body = ExchangeRequest { subject, audience, scope, client_id: agent }.form();
    let mut headers = vec![
        (":method", "POST".to_string()),
        (":path", sts.token_path.clone()),
        (":authority", sts.authority.clone()),
        ("content-type", "application/x-www-form-urlencoded".to_string()),
        ("accept", "application/json".to_string()),
    ];
    headers.extend(traceparent.filter(|t| correlation::is_traceparent(t)).map(|t| ("traceparent", t.to_string())));
    (headers, body)
}

/// A token the STS issued for this exchange, with its claims (read, not verified: it came from
/// the STS over mTLS, and the next hop verifies it).
#[derive(Debug, Clone, PartialEq)]
pub struct Exchanged {
    pub token: String,
    pub claims: Claims,
}

/// Reads the STS's answer. `status` is `None` when the call failed without a response (reset,
/// timeout, no healthy upstream): that, 5xx, 429, anything unreadable, or a token that is not for
/// `audience` and `agent` fails closed with 503; a 4xx refusal becomes 403 carrying the STS's error.
pub fn read_reply(status: Option<u32>, body: &[u8], now: u64, audience: &str, agent: &str) -> Result<Exchanged, LocalReply> {
    let unavailable = |reason, what: &str| Err(reply::unavailable(reason, what));
    match status {
        None => unavailable("sts_unreachable", "the token service did not answer"),
        Some(200) => {
            let Ok(g) = serde_json::from_slice::<ExchangeResponse>(body) else {
                return unavailable("sts_reply_malformed", "the token service answered with something that is not a token");
            };
            if g.access_token.is_empty() || g.access_token.len() > MAX_TOKEN_BYTES || g.expires_in == 0 || g.expires_in > 86_400 {
                return unavailable("sts_reply_malformed", "the token service answered with an unusable token");
            }
            let Some(mut claims) = Unverified::peek(&g.access_token).ok().and_then(|u| u.claims::<Claims>().ok()) else {
                return unavailable("sts_reply_malformed", "the token service answered with an unreadable token");
            };
            if claims.aud != audience || claims.client_id != agent {
                return unavailable("sts_reply_mismatch", "the token service issued a token for another audience or agent");
            }
            claims.exp = claims.exp.min(now + g.expires_in);
            Ok(Exchanged { token: g.access_token, claims })
        }
        Some(s) if (400..500).contains(&s) && s != 429 => match serde_json::from_slice::<ErrorBody>(body) {
            Ok(r) => Err(reply::exchange_refused(&r.error, &r.actorchain_reason, &r.error_description)),
            Err(_) => unavailable("sts_reply_malformed", "the token service refused without an error body"),
        },
        // Envoy answers 502/503/504 itself when it cannot reach or hear from the STS.
        Some(502..=504) => unavailable("sts_unreachable", "the token service could not be reached"),
        Some(_) => unavailable("sts_error", "the token service failed; try again"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn cfg(pass: bool) -> OutboundConfig {
        let j = format!(
            r#"{{"mode":"outbound","agent":"oncall-agent","sts":{{"cluster":"sts"}},"destinations":{{"investigation":"investigation-agent","mcp:8080":{{"audience":"mcp-gateway","scope":"repo:write"}}}},"unmapped_destination":"{}"}}"#,
            if pass { "pass_through" } else { "refuse" }
        );
        match Config::parse(j.as_bytes()).unwrap() {
            Config::Outbound(o) => o,
            Config::Inbound(_) => unreachable!(),
        }
    }

    #[test]
    fn maps_destinations() {
        let c = cfg(false);
        let audience = |c: &OutboundConfig, a: &str| destination(c, a).map(|d| d.map(|d| d.audience.clone()));
        assert_eq!(audience(&c, "investigation").unwrap().as_deref(), Some("investigation-agent"));
        assert_eq!(audience(&c, "Investigation:80").unwrap().as_deref(), Some("investigation-agent"));
        assert_eq!(audience(&c, "mcp:8080").unwrap().as_deref(), Some("mcp-gateway"));
        assert_eq!(audience(&c, "elsewhere").unwrap_err().reason, "destination_unmapped");
        assert_eq!(audience(&cfg(true), "elsewhere").unwrap(), None);
    }

    #[test]
    fn picks_the_subject() {
        let c = cfg(false);
        assert_eq!(subject(&c, &["Bearer a.b.c"], Some("rec".into())).unwrap(), Subject::Token("a.b.c".into()));
        assert_eq!(subject(&c, &[], Some("rec".into())).unwrap(), Subject::Token("rec".into()));
        assert_eq!(subject(&c, &[], None).unwrap_err().reason, "no_subject_token");
        assert_eq!(subject(&c, &["Bearer a b"], None).unwrap_err().reason, "bearer_malformed");
        let scheduled = OutboundConfig { act_as_self: true, ..c };
        assert_eq!(subject(&scheduled, &[], None).unwrap(), Subject::Agent);
    }

    #[test]
    fn builds_the_rfc8693_request() {
        let c = cfg(false);
        let (h, body) = token_request(&c.sts, &c.agent, &Subject::Token("t.o.k".into()), "investigation-agent", None, None);
        assert!(h.contains(&(":path", "/token".into())));
        assert!(!h.iter().any(|(k, _)| *k == "traceparent"));
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        assert!(params.contains(&("grant_type".into(), actorchain_token::wire::GRANT_TOKEN_EXCHANGE.into())));
        assert!(params.contains(&("client_id".into(), "oncall-agent".into())));
        assert!(params.contains(&("subject_token".into(), "t.o.k".into())));
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (h, body) = token_request(&c.sts, &c.agent, &Subject::Agent, "investigation-agent", None, Some(tp));
        assert!(h.contains(&("traceparent", tp.into())));
        let (h, _) = token_request(&c.sts, &c.agent, &Subject::Agent, "investigation-agent", None, Some("00-zz\r\nx: y"));
        assert!(!h.iter().any(|(k, _)| *k == "traceparent"), "a malformed traceparent is not passed on");
        assert_eq!(body, "grant_type=client_credentials&audience=investigation-agent&client_id=oncall-agent");
        let narrow = ScopeSet::parse("repo:write").unwrap();
        let (_, body) = token_request(&c.sts, &c.agent, &Subject::Agent, "mcp-gateway", Some(&narrow), None);
        assert!(body.contains("scope=repo%3Awrite&"), "{body}");
    }

    #[test]
    fn asks_for_the_destinations_cap_of_what_the_subject_holds() {
        let cap = ScopeSet::parse("repo:write metrics:read").unwrap();
        let holding = |scope: &str| {
            let key = actorchain_token::PrivateKey::from_secret_bytes(actorchain_token::Alg::EdDsa, &[1; 32]).unwrap();
            Subject::Token(actorchain_token::sign_compact(&serde_json::json!({"scope": scope}), &key, "k", None))
        };
        let ask = |s: &Subject, cap| scope_to_ask(s, cap, "mcp-gateway").map(|s| s.map(|s| s.to_string()));
        assert_eq!(ask(&holding("incidents:read repo:write"), Some(&cap)).unwrap().as_deref(), Some("repo:write"));
        assert_eq!(ask(&holding("repo:write"), None).unwrap(), None);
        assert_eq!(ask(&Subject::Agent, Some(&cap)).unwrap().as_deref(), Some("metrics:read repo:write"));
        assert_eq!(ask(&Subject::Token("garbled".into()), Some(&cap)).unwrap().as_deref(), Some("metrics:read repo:write"));
        assert_eq!(ask(&holding("incidents:read"), Some(&cap)).unwrap_err().reason, "scope_unavailable");
    }

    fn granted(aud: &str, agent: &str) -> Vec<u8> {
        let key = actorchain_token::PrivateKey::from_secret_bytes(actorchain_token::Alg::EdDsa, &[1; 32]).unwrap();
        let act = actorchain_token::extend_chain(None, agent, "spiffe://td/w", Default::default()).unwrap();
        let c = Claims {
            iss: "i".into(),
            sub: "user1".into(),
            sub_id: actorchain_token::SubjectId::new("https://idp", "user1"),
            aud: aud.into(),
            client_id: agent.into(),
            act,
            scope: String::new(),
            iat: 100,
            nbf: 100,
            exp: 1000,
            jti: "j".into(),
            sid: "s".into(),
            ext: Default::default(),
        };
        let t = actorchain_token::sign_compact(&c, &key, "k", Some(actorchain_token::TYP_ACCESS_TOKEN));
        let answer = ExchangeResponse {
            access_token: t,
            issued_token_type: actorchain_token::wire::TT_ACCESS_TOKEN.into(),
            token_type: "Bearer".into(),
            expires_in: 60,
            scope: String::new(),
        };
        serde_json::to_vec(&answer).unwrap()
    }

    #[test]
    fn reads_every_kind_of_answer() {
        let ok = read_reply(Some(200), &granted("mcp", "a"), 100, "mcp", "a").unwrap();
        assert_eq!((ok.claims.jti.as_str(), ok.claims.exp), ("j", 160));
        let read = |status, body: &[u8]| read_reply(status, body, 0, "mcp", "a").unwrap_err();
        assert_eq!(read(Some(200), &granted("other", "a")).reason, "sts_reply_mismatch");
        assert_eq!(read(Some(200), &granted("mcp", "b")).reason, "sts_reply_mismatch");
        assert_eq!(read(None, b"").status, 503);
        assert_eq!(read(Some(503), b"").reason, "sts_unreachable");
        assert_eq!(read(Some(500), b"").reason, "sts_error");
        assert_eq!(read(Some(429), b"{}").status, 503);
        assert_eq!(read(Some(200), b"<html>").reason, "sts_reply_malformed");
        assert_eq!(read(Some(200), br#"{"access_token":"x.y.z","expires_in":60}"#).reason, "sts_reply_malformed");
        assert_eq!(read(Some(200), br#"{"access_token":"x","expires_in":0}"#).status, 503);
        let r = read(Some(400), br#"{"error":"invalid_target","actorchain_reason":"audience_not_allowed","error_description":"d"}"#);
        assert_eq!((r.status, r.reason), (403, "exchange_refused"));
        assert!(r.body.contains("audience_not_allowed"));
    }
}
