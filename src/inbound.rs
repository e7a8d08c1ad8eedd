//! Inbound decisions: is the bearer token a valid actorchain token for this workload (or, at a
//! session's entry point, a valid person's token), and does the route allow it.

use std::rc::Rc;

use actorchain_token::{peek_issuer, verify_person, verify_with, Expectations, KeySet, SignatureCheck, TokenError, Unverified};

use crate::bearer::{bearer, BearerError};
use crate::config::{InboundConfig, SenderBinding};
use crate::identity::Verified;
use crate::policy::{http_rule, Denial};
use crate::reply::{self, LocalReply};
use crate::verified_cache::VerifiedCache;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    Accepted {
        /// Shared with the verified-token cache: a token seen again costs no copy.
        identity: Rc<Verified>,
        token: &'a str,
    },
    /// `refetch_keys`: the token named a key we do not have; the JWKS may have moved on.
    Refused { reply: LocalReply, refetch_keys: bool },
}

fn refused<'a>(reply: LocalReply) -> Outcome<'a> {
    Outcome::Refused { reply, refetch_keys: false }
}

fn token_refusal<'a>(e: TokenError) -> Outcome<'a> {
    Outcome::Refused { reply: reply::invalid_token(e.reason(), &e.to_string()), refetch_keys: e == TokenError::UnknownKid }
}

/// Verifies the request's credentials. `keys` is `None` until the first JWKS has arrived, and
/// then the filter fails closed with 503 rather than guess.
/// A token verified before and still valid is answered from `cache` without a signature check;
/// the STS's signatures are checked by `check` (people's, by their issuers' keys, here).
pub fn authenticate<'a>(
    cfg: &InboundConfig,
    keys: Option<&KeySet>,
    cache: &mut VerifiedCache,
    authorization: &[&'a str],
    now: u64,
    check: &dyn SignatureCheck,
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
    let outcome = verify_token(cfg, keys, token, now, check);
    if let Outcome::Accepted { identity, .. } = &outcome {
        cache.insert(token, identity);
    }
    outcome
}

fn verify_token<'a>(cfg: &InboundConfig, keys: &KeySet, token: &'a str, now: u64, check: &dyn SignatureCheck) -> Outcome<'a> {
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
        return match verify_with(token, keys, &exp, now, check) {
            Ok(c) => Outcome::Accepted {
                identity: Rc::new(Verified {
                    chain: c.act.agents_oldest_first().join(","),
                    agents: c.act.agents_oldest_first().into_iter().map(String::from).collect(),
                    actor_workload: Some(c.act.spiffe_id),
                    sub_iss: c.sub_id.iss,
                    sub: c.sub,
                    scope: c.scope,
                    sid: Some(c.sid),
                    jti: Some(c.jti),
                    exp: c.exp,
                    iat: c.iat,
                }),
                token,
            },
            Err(e) => token_refusal(e),
        };
    }
    let Some(person) = cfg.people.iter().find(|p| p.issuer.issuer == iss) else {
        return refused(reply::invalid_token("issuer_untrusted", "the token's issuer is not trusted here"));
    };
    match verify_person(&u, &person.issuer, &cfg.audience, cfg.window, now) {
        Ok(c) => Outcome::Accepted {
            identity: Rc::new(Verified {
                sub: c.sub,
                sub_iss: c.iss,
                agents: Vec::new(),
                chain: String::new(),
                scope: c.scope.unwrap_or_default(),
                sid: c.sid,
                jti: c.jti,
                exp: c.exp,
                iat: c.iat.unwrap_or(0),
                actor_workload: None,
            }),
            token,
        },
        Err(e) => token_refusal(e),
    }
}

/// Sender binding: the peer that presents a token must be the workload it was issued to, proven
/// by a verified client certificate, so a token taken from one workload is useless from another.
/// An agent's token is bound to the workload its current actor was attested on. A person's own
/// token (a session's entry point, where the front end or ingress gateway presents it) is bound
/// to the `presenters` of its issuer when listed, else to any authenticated peer; it is also
/// addressed to this workload's agent only (`aud`), and at the STS only a workload registered to
/// host that agent may exchange it. `peer` is the peer certificate's SPIFFE ID, if any.
pub fn check_sender(cfg: &InboundConfig, who: &Verified, peer: Option<&str>) -> Result<(), LocalReply> {
    let peer = match (cfg.sender_binding, peer) {
        (SenderBinding::Off, _) | (SenderBinding::WhenPresent, None) => return Ok(()),
        (SenderBinding::Required, None) => {
            return Err(reply::invalid_token(
                "sender_unauthenticated",
                "this token is bound to a workload: present it over mTLS with that workload's certificate",
            ))
        }
        (_, Some(peer)) => peer,
    };
    let allowed = match &who.actor_workload {
        Some(actor) => actor == peer,
        None => cfg
            .people
            .iter()
            .find(|p| p.issuer.issuer == who.sub_iss)
            .is_none_or(|p| p.presenters.is_empty() || p.presenters.iter().any(|id| id == peer)),
    };
    if allowed {
        Ok(())
    } else {
        Err(reply::invalid_token("sender_mismatch", "this token was issued to another workload than the one presenting it"))
    }
}

/// Applies the first HTTP rule that matches `method` and `path`. A request no rule matches needs
/// only a valid token. A refusal says whether its rule enforces (`"enforce": false`: observe only).
pub fn authorize(cfg: &InboundConfig, who: &Verified, method: &str, path: &str) -> Result<(), (LocalReply, bool)> {
    match http_rule(&cfg.rules, method, path) {
        Some(rule) => rule.evaluate(who).map_err(|d| (policy_refusal(&d, &rule.scopes.to_string()), rule.enforce)),
        None => Ok(()),
    }
}

/// 403 `insufficient_scope` naming the rule's reason and the scope the rule asks for.
pub fn policy_refusal(d: &Denial, scope: &str) -> LocalReply {
    reply::insufficient_scope(d.reason, &d.detail, scope)
}
