use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The payload of an actorchain token. Unknown members are refused so nothing can ride along
/// unsigned-by-intent; extension data has one place, `ext`, that is carried unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    /// The person (or system) that started the session.
    pub sub: String,
    /// `sub` qualified by its issuer (RFC 9493 `iss_sub`): the person's identity provider, or this
    /// STS for an agent acting as itself. Two issuers' `user1` are two people.
    pub sub_id: SubjectId,
    /// Exactly one audience: the next hop. A JSON string, never an array.
    pub aud: String,
    /// The current agent (RFC 9068 `client_id`); equals `act.sub`.
    pub client_id: String,
    /// RFC 8693 actor chain, newest actor outermost.
    pub act: Actor,
    /// Space-separated scopes (RFC 8693 §4.2).
    pub scope: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: String,
    /// Session id, the same along the whole delegation: the handle for revoking a session.
    pub sid: String,
    /// Extension claims (task, intent...) carried unchanged from hop to hop.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub ext: Map<String, Value>,
}

/// RFC 9493 subject identifier, format `iss_sub`: the only format actorchain issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectId {
    pub format: String,
    pub iss: String,
    pub sub: String,
}

/// The RFC 9493 format of `sub_id`.
pub const ISS_SUB: &str = "iss_sub";

impl SubjectId {
    pub fn new(iss: &str, sub: &str) -> SubjectId {
        SubjectId { format: ISS_SUB.to_string(), iss: iss.to_string(), sub: sub.to_string() }
    }
}

/// One entry of the actor chain: the agent, and the workload it was attested on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The agent id, as registered.
    pub sub: String,
    /// SPIFFE ID of the workload the STS authenticated when this actor exchanged.
    pub spiffe_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

pub const SPIFFE_SCHEME: &str = "spiffe://";

impl Actor {
    /// Newest to oldest.
    pub fn iter(&self) -> impl Iterator<Item = &Actor> {
        std::iter::successors(Some(self), |a| a.act.as_deref())
    }

    pub fn depth(&self) -> usize {
        self.iter().count()
    }

    /// Agent ids oldest to newest: the order people read a delegation in.
    pub fn agents_oldest_first(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.iter().map(|a| a.sub.as_str()).collect();
        v.reverse();
        v
    }
}

/// SPIFFE ID syntax (SPIFFE-ID spec §2): lowercase trust domain of `[a-z0-9.-_]`, a non-empty path
/// of segments of `[a-zA-Z0-9.-_]` that are neither empty nor `.`/`..`, no query or fragment.
pub fn is_spiffe_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(SPIFFE_SCHEME) else {
        return false;
    };
    if s.len() > 2048 {
        return false;
    }
    let Some((td, path)) = rest.split_once('/') else {
        return false;
    };
    let td_ok = !td.is_empty() && td.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    td_ok
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
}

/// Trust domain part of a SPIFFE ID (assumes `is_spiffe_id`).
pub fn spiffe_trust_domain(id: &str) -> Option<&str> {
    id.strip_prefix(SPIFFE_SCHEME)?.split('/').next()
}

/// Issuer identifiers (of people's IdPs and of the STS): 1 to 1024 printable ASCII characters,
/// no spaces, so `"<issuer> <sub>"` names one person unambiguously.
pub fn is_issuer_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 1024 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Agent and person identifiers: 1 to 256 printable ASCII characters, no spaces.
pub fn is_principal_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids() {
        assert!(is_spiffe_id("spiffe://actorchain.dev/ns/agents/sa/oncall"));
        for bad in [
            "spiffe://Actorchain.dev/x",
            "spiffe://actorchain.dev",
            "spiffe://actorchain.dev/",
            "spiffe://actorchain.dev/a//b",
            "spiffe://actorchain.dev/a/../b",
            "spiffe://actorchain.dev/a?b",
            "https://actorchain.dev/a",
            "spiffe:///a",
        ] {
            assert!(!is_spiffe_id(bad), "{bad}");
        }
        assert_eq!(spiffe_trust_domain("spiffe://td/a"), Some("td"));
    }

    #[test]
    fn refuses_unknown_and_duplicate_members() {
        let good = r#"{"iss":"i","sub":"u","sub_id":{"format":"iss_sub","iss":"https://idp","sub":"u"},"aud":"a","client_id":"c","act":{"sub":"c","spiffe_id":"spiffe://t/w"},"scope":"","iat":1,"nbf":1,"exp":2,"jti":"j","sid":"s"}"#;
        assert!(serde_json::from_str::<Claims>(good).is_ok());
        let extra = good.replacen("\"sid\"", "\"admin\":true,\"sid\"", 1);
        assert!(serde_json::from_str::<Claims>(&extra).is_err());
        let dup_aud = good.replacen("\"aud\":\"a\"", "\"aud\":\"a\",\"aud\":\"b\"", 1);
        assert!(serde_json::from_str::<Claims>(&dup_aud).is_err());
        let arr_aud = good.replacen("\"aud\":\"a\"", "\"aud\":[\"a\"]", 1);
        assert!(serde_json::from_str::<Claims>(&arr_aud).is_err());
        for exp in ["2.0", "\"2\"", "-2", "18446744073709551616"] {
            let bad = good.replacen("\"exp\":2", &format!("\"exp\":{exp}"), 1);
            assert!(serde_json::from_str::<Claims>(&bad).is_err(), "{exp}");
        }
        let nested_priv = good.replacen("\"spiffe_id\":\"spiffe://t/w\"", "\"spiffe_id\":\"spiffe://t/w\",\"scope\":\"admin\"", 1);
        assert!(serde_json::from_str::<Claims>(&nested_priv).is_err());
    }
}
