use crate::claims::{is_issuer_id, is_principal_id, is_spiffe_id, ISS_SUB};
use crate::{Actor, Claims, TokenError};

/// Default deepest delegation: a person plus eight agents.
pub const DEFAULT_MAX_DEPTH: usize = 8;
/// No configuration may allow deeper chains than this; it also bounds the JSON depth limit.
pub const MAX_DEPTH_CEILING: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainLimits {
    pub max_depth: usize,
}

impl Default for ChainLimits {
    fn default() -> Self {
        ChainLimits { max_depth: DEFAULT_MAX_DEPTH }
    }
}

/// The chain rules of the contract: every entry names a valid agent and workload, the outermost
/// actor is the token's `client_id`, the chain is no deeper than allowed, and `sub_id` qualifies
/// exactly `sub` with a valid issuer.
pub fn check_chain(claims: &Claims, limits: ChainLimits) -> Result<(), TokenError> {
    let mut depth = 0;
    for actor in claims.act.iter() {
        depth += 1;
        if depth > limits.max_depth.min(MAX_DEPTH_CEILING) {
            return Err(TokenError::ChainTooDeep);
        }
        if !is_principal_id(&actor.sub) || !is_spiffe_id(&actor.spiffe_id) {
            return Err(TokenError::ChainMalformed);
        }
    }
    if claims.act.sub != claims.client_id {
        return Err(TokenError::ChainActorMismatch);
    }
    if !is_principal_id(&claims.sub) || !is_principal_id(&claims.aud) {
        return Err(TokenError::BadClaims);
    }
    let id = &claims.sub_id;
    if id.format != ISS_SUB || id.sub != claims.sub || !is_issuer_id(&id.iss) {
        return Err(TokenError::BadClaims);
    }
    Ok(())
}

/// The chain of the next hop: exactly one new actor, outermost, wrapping the prior chain.
/// Refuses to grow past the limit rather than producing a token verifiers would reject.
pub fn extend_chain(prior: Option<&Actor>, agent: &str, spiffe_id: &str, limits: ChainLimits) -> Result<Actor, TokenError> {
    let prior_depth = prior.map_or(0, Actor::depth);
    if prior_depth + 1 > limits.max_depth.min(MAX_DEPTH_CEILING) {
        return Err(TokenError::ChainTooDeep);
    }
    if !is_principal_id(agent) || !is_spiffe_id(spiffe_id) {
        return Err(TokenError::ChainMalformed);
    }
    Ok(Actor { sub: agent.to_string(), spiffe_id: spiffe_id.to_string(), act: prior.map(|p| Box::new(p.clone())) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims_with(act: Actor) -> Claims {
        Claims {
            iss: "i".into(),
            sub: "user1".into(),
            sub_id: crate::SubjectId::new("https://idp", "user1"),
            aud: "mcp".into(),
            client_id: act.sub.clone(),
            act,
            scope: String::new(),
            iat: 0,
            nbf: 0,
            exp: 1,
            jti: "j".into(),
            sid: "s".into(),
            ext: Default::default(),
        }
    }

    #[test]
    fn extends_by_exactly_one_newest_outermost() {
        let l = ChainLimits::default();
        let a = extend_chain(None, "oncall-agent", "spiffe://td/oncall", l).unwrap();
        let b = extend_chain(Some(&a), "investigation-agent", "spiffe://td/inv", l).unwrap();
        assert_eq!(b.depth(), 2);
        assert_eq!(b.agents_oldest_first(), ["oncall-agent", "investigation-agent"]);
        assert!(check_chain(&claims_with(b), l).is_ok());
    }

    #[test]
    fn enforces_depth_and_shape() {
        let l = ChainLimits { max_depth: 2 };
        let a = extend_chain(None, "a", "spiffe://td/a", l).unwrap();
        let b = extend_chain(Some(&a), "b", "spiffe://td/b", l).unwrap();
        assert_eq!(extend_chain(Some(&b), "c", "spiffe://td/c", l), Err(TokenError::ChainTooDeep));
        assert_eq!(extend_chain(None, "a", "not-spiffe", l), Err(TokenError::ChainMalformed));
        let deep = Actor { sub: "c".into(), spiffe_id: "spiffe://td/c".into(), act: Some(Box::new(b.clone())) };
        assert_eq!(check_chain(&claims_with(deep), l), Err(TokenError::ChainTooDeep));
        let mut mismatch = claims_with(b.clone());
        mismatch.client_id = "a".into();
        assert_eq!(check_chain(&mismatch, l), Err(TokenError::ChainActorMismatch));
        let mut bad_entry = b;
        bad_entry.act.as_mut().unwrap().spiffe_id = "spiffe://td/../x".into();
        assert_eq!(check_chain(&claims_with(bad_entry.clone()), l), Err(TokenError::ChainMalformed));
        // `sub_id` must qualify exactly `sub`, in the one format issued.
        let a = extend_chain(None, "a", "spiffe://td/a", l).unwrap();
        for edit in [
            |c: &mut Claims| c.sub_id.sub = "user2".into(),
            |c: &mut Claims| c.sub_id.format = "email".into(),
            |c: &mut Claims| c.sub_id.iss = "https://idp x".into(),
            |c: &mut Claims| c.sub_id.iss = String::new(),
        ] {
            let mut c = claims_with(a.clone());
            edit(&mut c);
            assert_eq!(check_chain(&c, l), Err(TokenError::BadClaims));
        }
    }
}
