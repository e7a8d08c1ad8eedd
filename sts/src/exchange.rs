//! The exchange decision as a pure function: registry, verification material, request, the
//! authenticated workload and the time in; a grant or a typed refusal out. No I/O, so every rule is
//! tested natively and by property tests.

use actorchain_token::{
    check_chain, extend_chain, is_spiffe_id, peek_issuer, spiffe_trust_domain, verify, verify_person, Actor, Audience, ChainLimits, Claims,
    Expectations, Handles, KeySet, PersonIssuer, RevocationSet, ScopeSet, SubjectId, TimeWindow, TokenError, TypRule, Unverified,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{ExchangeError, OAuthCode};
use crate::form::TokenRequest;
use crate::registry::Registry;

/// A person's identity provider whose tokens may start a session.
#[derive(Debug, Clone)]
pub struct PersonSource {
    pub issuer: PersonIssuer,
    /// Claims of the person's token copied into `ext` when a session starts (task, intent...).
    pub pass_claims: Vec<String>,
}

/// What subject tokens are verified against.
#[derive(Debug, Clone)]
pub struct Verifiers<'a> {
    pub issuer: &'a str,
    pub own_keys: &'a KeySet,
    pub people: &'a [PersonSource],
    pub window: TimeWindow,
    pub max_depth: usize,
    /// Revocations in force: a revoked subject, or a revoked agent asking, is refused.
    pub revoked: &'a RevocationSet,
}

/// What JWT-SVID actor tokens are verified against (SPIFFE JWT-SVID spec).
#[derive(Debug, Clone)]
pub struct SvidTrust {
    pub trust_domain: String,
    pub keys: KeySet,
    /// `aud` a JWT-SVID must carry to be accepted here: the STS's own identity. No keys: no
    /// JWT-SVID is accepted.
    pub audience: String,
    pub window: TimeWindow,
}

/// Everything the audit log says about one decision. Filled as the decision proceeds, so a refusal
/// records as much as was known when it was refused. Never holds a token.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    pub ts: u64,
    pub decision: &'static str,
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The issuer that vouched for `sub`: the person's IdP, or this STS for an agent acting as itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_iss: Option<String>,
    /// Agents oldest to newest, including the one asking.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// A revocation or a lift: what was revoked, the revocation's id, on whose word, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A granted exchange: the claims to sign.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub claims: Claims,
    pub parent_jti: Option<String>,
}

/// The token being exchanged, once verified.
#[derive(Debug, Clone)]
enum Subject {
    /// A person's token from a trusted IdP: this exchange starts a session.
    /// `iat` 0 when the IdP does not say (as old as can be, for revocations as of a moment).
    Person { id: SubjectId, scope: ScopeSet, exp: u64, iat: u64, sid: String, ext: Map<String, Value> },
    /// An actorchain token addressed to the requesting agent: this exchange extends a chain.
    Chain(Claims),
    /// No token: the agent acts as itself (client credentials), starting a chain of its own.
    Agent,
}

#[derive(Deserialize)]
struct SvidClaims {
    sub: String,
    aud: Audience,
    exp: u64,
    #[serde(default)]
    nbf: u64,
    iat: Option<u64>,
}

/// Authenticates the calling workload: the SPIFFE ID of its verified X.509-SVID, or of a JWT-SVID
/// actor token. When both are present they must name the same workload.
pub fn authenticate(peer: Option<&str>, actor_token: Option<&str>, svid: &SvidTrust, now: u64) -> Result<String, ExchangeError> {
    let from_jwt = actor_token.map(|t| verify_jwt_svid(t, svid, now)).transpose()?;
    match (peer, from_jwt) {
        (None, None) => Err(ExchangeError::new(
            OAuthCode::InvalidClient,
            "workload_unauthenticated",
            "present an X.509-SVID as TLS client certificate, or a JWT-SVID as actor_token",
        )),
        (Some(p), Some(j)) if p != j => Err(ExchangeError::new(
            OAuthCode::InvalidClient,
            "workload_mismatch",
            format!("client certificate names {p} but actor_token names {j}"),
        )),
        (Some(p), _) => Ok(p.to_string()),
        (None, Some(j)) => Ok(j),
    }
}

fn verify_jwt_svid(token: &str, svid: &SvidTrust, now: u64) -> Result<String, ExchangeError> {
    if svid.keys.is_empty() {
        return Err(ExchangeError::new(
            OAuthCode::InvalidClient,
            "jwt_svid_not_accepted",
            "this STS trusts no JWT-SVID keys: present an X.509-SVID as TLS client certificate",
        ));
    }
    let bad = |e: TokenError| ExchangeError::bad_token("actor_token (JWT-SVID)", e);
    let u = Unverified::parse(token, TypRule::JwtOrAbsent).map_err(bad)?;
    let c: SvidClaims = u.claims().map_err(bad)?;
    if !is_spiffe_id(&c.sub) || spiffe_trust_domain(&c.sub) != Some(svid.trust_domain.as_str()) {
        return Err(bad(TokenError::BadClaims));
    }
    if !c.aud.contains(&svid.audience) {
        return Err(bad(TokenError::WrongAudience));
    }
    svid.window.check(now, c.nbf, c.exp, c.iat).map_err(bad)?;
    u.verify_signature(&svid.keys).map_err(bad)?;
    Ok(c.sub)
}

fn subject_error(e: TokenError) -> ExchangeError {
    ExchangeError::bad_token("subject_token", e)
}

fn verify_subject(token: &str, agent: &str, v: &Verifiers<'_>, now: u64) -> Result<Subject, ExchangeError> {
    let u = Unverified::peek(token).map_err(subject_error)?;
    let iss = peek_issuer(&u).map_err(subject_error)?;
    if iss == v.issuer {
        let limits = ChainLimits { max_depth: v.max_depth };
        let exp = Expectations { issuer: v.issuer, audience: agent, window: v.window, limits };
        let claims = verify(token, v.own_keys, &exp, now).map_err(|e| match e {
            TokenError::WrongAudience => ExchangeError::new(
                OAuthCode::InvalidRequest,
                "subject_not_addressed_to_agent",
                format!("subject_token is addressed to another audience, not to {agent}; an agent may only exchange tokens sent to it"),
            ),
            e => subject_error(e),
        })?;
        return Ok(Subject::Chain(claims));
    }
    let Some(person) = v.people.iter().find(|p| p.issuer.issuer == iss) else {
        return Err(ExchangeError::new(OAuthCode::InvalidRequest, "issuer_untrusted", "subject_token issuer is not trusted by this STS"));
    };
    let c = verify_person(&u, &person.issuer, agent, v.window, now).map_err(|e| match e {
        TokenError::WrongAudience => ExchangeError::new(
            OAuthCode::InvalidRequest,
            "subject_not_addressed_to_agent",
            format!("the person's token is not addressed to {agent}"),
        ),
        e => subject_error(e),
    })?;
    let scope = ScopeSet::parse(c.scope.as_deref().unwrap_or("")).map_err(subject_error)?;
    let ext = if person.pass_claims.is_empty() {
        Map::new()
    } else {
        let all: Map<String, Value> = u.claims().map_err(subject_error)?;
        person.pass_claims.iter().filter_map(|k| all.get(k).map(|v| (k.clone(), v.clone()))).collect()
    };
    // The same person token always yields the same session, however many hops it starts.
    let anchor = c.sid.or(c.jti).unwrap_or_else(|| B64.encode(Sha256::digest(token.as_bytes())));
    let sid = session_id(&c.iss, &anchor);
    Ok(Subject::Person { id: SubjectId::new(&c.iss, &c.sub), scope, exp: c.exp, iat: c.iat.unwrap_or(0), sid, ext })
}

fn session_id(iss: &str, anchor: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"actorchain-sid");
    // Length-prefixed so no choice of issuer and anchor can collide with another.
    for part in [iss, anchor] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    B64.encode(&h.finalize()[..16])
}

/// Decides one exchange for the authenticated `workload`. `jti` is the fresh id the grant will carry.
pub fn decide(
    registry: &Registry,
    v: &Verifiers<'_>,
    req: &TokenRequest,
    workload: &str,
    now: u64,
    jti: String,
    rec: &mut AuditRecord,
) -> Result<Grant, ExchangeError> {
    rec.client_id = Some(req.client_id.clone());
    rec.workload = Some(workload.to_string());
    rec.audience = Some(req.audience.clone());
    rec.scope = req.scope.as_ref().map(ToString::to_string);

    let agent = registry.agent(&req.client_id).ok_or_else(|| {
        ExchangeError::new(OAuthCode::InvalidClient, "agent_unregistered", format!("agent {} is not in the registry", req.client_id))
    })?;
    if !agent.may_run_on(workload) {
        return Err(ExchangeError::new(
            OAuthCode::UnauthorizedClient,
            "agent_not_on_workload",
            format!("workload {workload} is not registered to host agent {}", agent.id),
        ));
    }

    let subject = match &req.subject_token {
        Some(t) => verify_subject(t, &agent.id, v, now)?,
        None if agent.may_act_as_self => Subject::Agent,
        None => {
            return Err(ExchangeError::new(
                OAuthCode::UnauthorizedClient,
                "self_acting_not_allowed",
                format!("agent {} may not act as itself; exchange the token of the person or agent it works for", agent.id),
            ))
        }
    };
    let (sub_id, prior_act, parent_scope, parent_exp, sid, ext, parent_jti, subject_iat) = match subject {
        // A new chain rooted at the agent, vouched for by this STS (never mistaken for a person
        // of an IdP): its registered scopes and lifetime are the ceiling.
        Subject::Agent => (
            SubjectId::new(v.issuer, &agent.id),
            None,
            agent.scopes.clone(),
            now + agent.ttl_secs,
            session_id(v.issuer, &jti),
            Map::new(),
            None,
            now,
        ),
        Subject::Person { id, scope, exp, iat, sid, ext } => {
            if !agent.may_start_session {
                return Err(ExchangeError::new(
                    OAuthCode::UnauthorizedClient,
                    "session_start_not_allowed",
                    format!("agent {} may not start a session from a person's token", agent.id),
                ));
            }
            (id, None, scope, exp, sid, ext, None, iat)
        }
        Subject::Chain(c) => {
            let scope = ScopeSet::parse(&c.scope).map_err(subject_error)?;
            (c.sub_id, Some(c.act), scope, c.exp, c.sid, c.ext, Some(c.jti), c.iat)
        }
    };
    rec.sub = Some(sub_id.sub.clone());
    rec.sub_iss = Some(sub_id.iss.clone());
    rec.sid = Some(sid.clone());
    rec.parent_jti = parent_jti.clone();
    rec.chain = prior_act.as_ref().map(|a| a.agents_oldest_first().into_iter().map(String::from).collect()).unwrap_or_default();
    rec.chain.push(agent.id.clone());

    let handles = Handles {
        jti: parent_jti.as_deref(),
        sid: Some(&sid),
        sub_iss: &sub_id.iss,
        sub: &sub_id.sub,
        agents: rec.chain.iter().map(String::as_str),
        // A person or an agent revoked as of a moment: what the subject token was issued before.
        iat: subject_iat,
    };
    if let Some(kind) = v.revoked.matches(&handles) {
        return Err(ExchangeError::new(
            OAuthCode::InvalidRequest,
            kind.reason(),
            format!("subject_token belongs to a revoked {}", kind.as_str()),
        ));
    }

    let Some(audience_scopes) = agent.grant_for(&req.audience) else {
        return Err(ExchangeError::new(
            OAuthCode::InvalidTarget,
            "audience_not_allowed",
            format!("agent {} may not call audience {}", agent.id, req.audience),
        ));
    };

    // Least privilege per hop: what the subject holds, and what the registry grants this agent
    // for this audience (never more than its scopes overall).
    let allowed = parent_scope.intersection(audience_scopes);
    let granted = match &req.scope {
        Some(asked) if !asked.is_subset(&allowed) => {
            return Err(ExchangeError::new(
                OAuthCode::InvalidScope,
                "scope_widening",
                format!("requested scope exceeds what this hop may hold; not allowed: {}", asked.difference(&allowed)),
            ))
        }
        Some(asked) => asked.clone(),
        None => allowed,
    };

    let limits = ChainLimits { max_depth: agent.max_depth.min(v.max_depth) };
    let act: Actor = extend_chain(prior_act.as_ref(), &agent.id, workload, limits).map_err(|e| {
        ExchangeError::new(OAuthCode::InvalidRequest, e.reason(), format!("delegation would exceed depth {}", limits.max_depth))
    })?;

    let exp = parent_exp.min(now + agent.ttl_secs);
    if exp <= now {
        return Err(subject_error(TokenError::Expired));
    }
    let claims = Claims {
        iss: v.issuer.to_string(),
        sub: sub_id.sub.clone(),
        sub_id,
        aud: req.audience.clone(),
        client_id: agent.id.clone(),
        act,
        scope: granted.to_string(),
        iat: now,
        nbf: now,
        exp,
        jti,
        sid,
        ext,
    };
    // The grant must satisfy the same rules every verifier applies.
    check_chain(&claims, limits).map_err(|e| ExchangeError::new(OAuthCode::ServerError, e.reason(), "minted chain is malformed"))?;
    rec.scope = Some(claims.scope.clone());
    rec.jti = Some(claims.jti.clone());
    rec.exp = Some(exp);
    Ok(Grant { claims, parent_jti })
}

#[cfg(test)]
mod tests {
    use actorchain_token::{sign_compact, Alg, PrivateKey, TYP_ACCESS_TOKEN};
    use proptest::prelude::*;

    use super::*;
    use crate::registry::{AgentPolicy, AudienceGrant};

    const ISS: &str = "https://sts.test";
    const UNIVERSE: [&str; 6] = ["a:r", "a:w", "b:r", "b:w", "c:r", "c:w"];
    const WL_PARENT: &str = "spiffe://td/workload/parent";
    const WL_CHILD: &str = "spiffe://td/workload/child";

    fn scopes(mask: u8) -> ScopeSet {
        ScopeSet::from_tokens(UNIVERSE.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, s)| *s)).unwrap()
    }

    /// An agent that may call `next` with `next_mask` of its scopes, and `other` with all of them.
    fn policy(id: &str, workload: &str, scope_mask: u8, next_mask: u8, ttl: u64, max_depth: usize) -> AgentPolicy {
        AgentPolicy {
            id: id.into(),
            workloads: vec![workload.into()],
            audiences: vec![
                AudienceGrant { audience: "next".into(), scopes: scopes(scope_mask & next_mask) },
                AudienceGrant { audience: "other".into(), scopes: scopes(scope_mask) },
            ],
            scopes: scopes(scope_mask),
            may_start_session: false,
            may_act_as_self: false,
            ttl_secs: ttl,
            max_depth,
        }
    }

    /// A parent token addressed to `child`, as the STS would have minted it one hop earlier.
    fn parent(key: &PrivateKey, scope_mask: u8, exp: u64, now: u64) -> String {
        let claims = Claims {
            iss: ISS.into(),
            sub: "user1".into(),
            sub_id: SubjectId::new("https://idp", "user1"),
            aud: "child".into(),
            client_id: "parent".into(),
            act: Actor { sub: "parent".into(), spiffe_id: WL_PARENT.into(), act: None },
            scope: scopes(scope_mask).to_string(),
            iat: now - 10,
            nbf: now - 10,
            exp,
            jti: "parent-jti".into(),
            sid: "sid-1".into(),
            ext: Map::from_iter([("task".to_string(), Value::from("INC-1"))]),
        };
        sign_compact(&claims, key, "k1", Some(TYP_ACCESS_TOKEN))
    }

    fn request(subject: String, audience: &str, scope: Option<ScopeSet>) -> TokenRequest {
        TokenRequest {
            subject_token: Some(subject),
            audience: audience.into(),
            scope,
            actor_token: None,
            client_id: "child".into(),
            issued_token_type: actorchain_token::wire::TT_ACCESS_TOKEN,
        }
    }

    proptest! {
        /// For arbitrary registries and requests: a grant never holds a scope the parent did not,
        /// nor one the registry does not grant the agent for that audience, never outlives the
        /// parent, and grows the chain by exactly one actor. Asking for more is refused, never
        /// silently trimmed.
        #[test]
        fn delegation_only_narrows(
            parent_mask in 0u8..64, agent_mask in 0u8..64, next_mask in 0u8..64, to_next in any::<bool>(),
            asked in proptest::option::of(0u8..64), ttl in 1u64..3600, parent_left in 1u64..7200, max_depth in 1usize..4,
        ) {
            let now = 1_800_000_000;
            let key = PrivateKey::from_secret_bytes(Alg::EdDsa, &[9; 32]).unwrap();
            let mut own = KeySet::default();
            own.insert("k1".into(), key.public()).unwrap();
            let revoked = RevocationSet::default();
            let v = Verifiers { issuer: ISS, own_keys: &own, people: &[], window: TimeWindow::default(), max_depth: 8, revoked: &revoked };
            let registry = Registry::from_policies([policy("child", WL_CHILD, agent_mask, next_mask, ttl, max_depth)]);
            let parent_exp = now + parent_left;
            let audience = if to_next { "next" } else { "other" };
            let req = request(parent(&key, parent_mask, parent_exp, now), audience, asked.map(scopes));
            let mut rec = AuditRecord::default();
            let out = decide(&registry, &v, &req, WL_CHILD, now, "jti".into(), &mut rec);
            let grant = registry.agent("child").and_then(|a| a.grant_for(audience)).cloned().unwrap_or_default();
            let allowed = scopes(parent_mask).intersection(&grant);
            match out {
                Ok(g) => {
                    let granted = ScopeSet::parse(&g.claims.scope).unwrap();
                    prop_assert!(granted.is_subset(&scopes(parent_mask)));
                    prop_assert!(granted.is_subset(&scopes(agent_mask)));
                    prop_assert!(granted.is_subset(&grant));
                    if to_next { prop_assert!(granted.is_subset(&scopes(next_mask))); }
                    prop_assert_eq!(&g.claims.sub_id, &SubjectId::new("https://idp", "user1"));
                    prop_assert!(g.claims.exp <= parent_exp);
                    prop_assert!(g.claims.exp <= now + ttl);
                    prop_assert_eq!(g.claims.act.depth(), 2);
                    prop_assert_eq!(g.claims.act.agents_oldest_first(), vec!["parent", "child"]);
                    prop_assert_eq!(&g.claims.sid, "sid-1");
                    prop_assert_eq!(g.claims.ext.get("task"), Some(&Value::from("INC-1")));
                    prop_assert_eq!(g.parent_jti.as_deref(), Some("parent-jti"));
                    prop_assert!(max_depth >= 2);
                    if let Some(a) = asked { prop_assert_eq!(granted, scopes(a)); } else { prop_assert_eq!(granted, allowed); }
                }
                Err(e) if asked.is_some_and(|a| !scopes(a).is_subset(&allowed)) => prop_assert_eq!(e.code, OAuthCode::InvalidScope),
                Err(e) => {
                    prop_assert!(max_depth < 2, "unexpected refusal {e}");
                    prop_assert_eq!(e.reason, "chain_too_deep");
                }
            }
        }
    }

    #[test]
    fn without_jwt_svid_trust_only_the_certificate_authenticates() {
        let none = SvidTrust { trust_domain: "td".into(), keys: KeySet::default(), audience: String::new(), window: TimeWindow::default() };
        assert_eq!(authenticate(None, Some("a.b.c"), &none, 0).unwrap_err().reason, "jwt_svid_not_accepted");
        assert_eq!(authenticate(Some("spiffe://td/w"), None, &none, 0).unwrap(), "spiffe://td/w");
    }

    #[test]
    fn session_ids_are_stable_per_person_token() {
        assert_eq!(session_id("iss", "jti-1"), session_id("iss", "jti-1"));
        assert_ne!(session_id("iss", "jti-1"), session_id("iss", "jti-2"));
        assert_ne!(session_id("a", "b\0c"), session_id("a\0b", "c"));
    }
}
