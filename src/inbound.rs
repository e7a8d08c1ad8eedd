//! Inbound decisions: is the bearer token a valid actorchain token for this workload (or, at a
//! session's entry point, a valid person's token), and does the route allow it.

use actorchain_token::{peek_issuer, verify, verify_person, Expectations, Handles, KeySet, TokenError, Unverified};

use crate::bearer::{bearer, BearerError};
use crate::config::InboundConfig;
use crate::identity;
use crate::policy::{http_rule, Denial};
use crate::reply::{self, LocalReply};
use crate::verified_cache::VerifiedCache;

/// The identity a verified token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub sub: String,
    /// Agents oldest first; empty for a person's own token.
    pub agents: Vec<String>,
    pub scope: String,
    pub sid: Option<String>,
    pub jti: Option<String>,
    pub exp: u64,
    /// SPIFFE ID of the workload the current actor was attested on; none for a person's token.
    pub actor_workload: Option<String>,
}

impl Verified {
    /// What a revocation can match this token by.
    pub fn handles(&self) -> Handles<'_, impl Iterator<Item = &str> + Clone> {
        Handles { jti: self.jti.as_deref(), sid: self.sid.as_deref(), sub: &self.sub, agents: self.agents.iter().map(String::as_str) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    Accepted {
        identity: Verified,
        token: &'a str,
    },
    /// `refetch_keys`: the token named a key we do not have; the JWKS may have moved on.
    Refused {
        reply: LocalReply,
        refetch_keys: bool,
    },
}

fn refused<'a>(reply: LocalReply) -> Outcome<'a> {
    Outcome::Refused { reply, refetch_keys: false }
}

fn token_refusal<'a>(e: TokenError) -> Outcome<'a> {
    Outcome::Refused { reply: reply::invalid_token(e.reason(), &e.to_string()), refetch_keys: e == TokenError::UnknownKid }
}

/// Verifies the request's credentials. `keys` is `None` until the first JWKS has arrived, and
/// then the filter fails closed with 503 rather than guess.
/// A token verified before and still valid is answered from `cache` without a signature check.
pub fn authenticate<'a>(
    cfg: &InboundConfig,
    keys: Option<&KeySet>,
    cache: &mut VerifiedCache,
    authorization: &[&'a str],
    now: u64,
) -> Outcome<'a> {
    let token = match bearer(authorization) {
        Ok(Some(t)) => t,
        Ok(None) => return refused(reply::token_missing()),
        Err(BearerError::Multiple) => return refused(reply::invalid_request("bearer_multiple", "send exactly one Authorization header")),
        Err(BearerError::Malformed) => {
            return refused(reply::invalid_request("bearer_malformed", "Authorization must be `Bearer <token>`"))
        }
    };
    let Some(keys) = keys else {
        return refused(reply::unavailable("keys_not_loaded", "the STS signing keys have not been fetched yet"));
    };
    if let Some(identity) = cache.get(token, now, cfg.window.leeway_secs) {
        return Outcome::Accepted { identity, token };
    }
    let outcome = verify_token(cfg, keys, token, now);
    if let Outcome::Accepted { identity, .. } = &outcome {
        cache.insert(token, identity);
    }
    outcome
}

fn verify_token<'a>(cfg: &InboundConfig, keys: &KeySet, token: &'a str, now: u64) -> Outcome<'a> {
    let u = match Unverified::peek(token) {
        Ok(u) => u,
        Err(e) => return token_refusal(e),
    };
    let iss = match peek_issuer(&u) {
        Ok(i) => i,
        Err(e) => return token_refusal(e),
    };
    if iss == cfg.issuer {
        let exp = Expectations { issuer: &cfg.issuer, audience: &cfg.audience, window: cfg.window, limits: cfg.limits };
        return match verify(token, keys, &exp, now) {
            Ok(c) => Outcome::Accepted {
                identity: Verified {
                    agents: c.act.agents_oldest_first().into_iter().map(String::from).collect(),
                    actor_workload: Some(c.act.spiffe_id),
                    sub: c.sub,
                    scope: c.scope,
                    sid: Some(c.sid),
                    jti: Some(c.jti),
                    exp: c.exp,
                },
                token,
            },
            Err(e) => token_refusal(e),
        };
    }
    let Some(person) = cfg.people.iter().find(|p| p.issuer == iss) else {
        return refused(reply::invalid_token("issuer_untrusted", "the token's issuer is not trusted here"));
    };
    match verify_person(&u, person, &cfg.audience, cfg.window, now) {
        Ok(c) => Outcome::Accepted {
            identity: Verified {
                sub: c.sub,
                agents: Vec::new(),
                scope: c.scope.unwrap_or_default(),
                sid: c.sid,
                jti: c.jti,
                exp: c.exp,
                actor_workload: None,
            },
            token,
        },
        Err(e) => token_refusal(e),
    }
}

/// Sender binding: over mTLS, the peer's SPIFFE ID must be the workload the token's current actor
/// was attested on, so a token taken from one workload is useless from another. No peer
/// certificate (plaintext), a person's own token, or `sender_binding: false`: nothing to compare.
pub fn check_sender(cfg: &InboundConfig, who: &Verified, peer: Option<&str>) -> Result<(), LocalReply> {
    match (cfg.sender_binding, peer, who.actor_workload.as_deref()) {
        (true, Some(peer), Some(actor)) if peer != actor => {
            Err(reply::invalid_token("sender_mismatch", "this token was issued to another workload than the one presenting it"))
        }
        _ => Ok(()),
    }
}

/// Applies the first HTTP rule that matches `method` and `path`. A request no rule matches needs
/// only a valid token.
pub fn authorize(cfg: &InboundConfig, who: &Verified, method: &str, path: &str) -> Result<(), LocalReply> {
    match http_rule(&cfg.rules, method, path) {
        Some(rule) => rule.evaluate(who).map_err(|d| policy_refusal(&d, &rule.scopes.to_string())),
        None => Ok(()),
    }
}

/// 403 `insufficient_scope` naming the rule's reason and the scope the rule asks for.
pub fn policy_refusal(d: &Denial, scope: &str) -> LocalReply {
    reply::insufficient_scope(d.reason, &d.detail, scope)
}

/// The headers that hand the verified identity to the app.
pub fn identity_headers(who: &Verified) -> Vec<(&'static str, String)> {
    let mut h = vec![(identity::SUB, who.sub.clone()), (identity::SCOPE, who.scope.clone())];
    if let Some(agent) = who.agents.last() {
        h.push((identity::AGENT, agent.clone()));
        h.push((identity::CHAIN, who.agents.join(",")));
    }
    if let Some(sid) = &who.sid {
        h.push((identity::SESSION, sid.clone()));
    }
    if let Some(jti) = &who.jti {
        h.push((identity::TOKEN_ID, jti.clone()));
    }
    h
}
