//! Revocation at the granularity of delegation: one token (`jti`), one session (`sid`), one agent
//! (anywhere in the chain), one person (issuer and `sub`). The STS keeps the set and publishes it as a feed;
//! the filter follows the feed. Both match tokens with the same rule, here.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationKind {
    Token,
    Session,
    Agent,
    Person,
}

impl RevocationKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "token" => Some(Self::Token),
            "session" => Some(Self::Session),
            "agent" => Some(Self::Agent),
            "person" => Some(Self::Person),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Session => "session",
            Self::Agent => "agent",
            Self::Person => "person",
        }
    }

    /// The machine-readable reason a token refused for this kind of revocation carries.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Token => "token_revoked",
            Self::Session => "session_revoked",
            Self::Agent => "agent_revoked",
            Self::Person => "person_revoked",
        }
    }
}

/// One revocation as the feed carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEntry {
    /// Position in the feed; the `since` cursor.
    pub id: u64,
    pub kind: RevocationKind,
    pub value: String,
    pub revoked_at: u64,
    /// When every token this entry could match has expired; followers may forget it then.
    pub expires_at: u64,
}

/// `GET /revocations?since=N`: entries after N still in force, and the cursor to ask from next.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationFeed {
    pub cursor: u64,
    pub entries: Vec<RevocationEntry>,
}

/// The value a person revocation carries: issuer and subject, `"<issuer> <sub>"`. A subject never
/// contains a space, so the last space separates them whatever the issuer.
pub fn person_handle(iss: &str, sub: &str) -> String {
    format!("{iss} {sub}")
}

/// What a token can be revoked by.
#[derive(Debug, Clone, Copy)]
pub struct Handles<'a, I: Iterator<Item = &'a str> + Clone> {
    pub jti: Option<&'a str>,
    pub sid: Option<&'a str>,
    /// The person (or self-acting agent) and the issuer that vouched for them.
    pub sub_iss: &'a str,
    pub sub: &'a str,
    /// Every agent in the chain.
    pub agents: I,
}

/// Revocations in force, one set per kind, so a check is a few hash lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    sets: [HashSet<String>; 4],
}

impl RevocationSet {
    fn of(&self, kind: RevocationKind) -> &HashSet<String> {
        &self.sets[kind as usize]
    }

    pub fn insert(&mut self, kind: RevocationKind, value: &str) -> bool {
        self.sets[kind as usize].insert(value.to_string())
    }

    pub fn remove(&mut self, kind: RevocationKind, value: &str) -> bool {
        self.sets[kind as usize].remove(value)
    }

    pub fn contains(&self, kind: RevocationKind, value: &str) -> bool {
        self.of(kind).contains(value)
    }

    pub fn len(&self) -> usize {
        self.sets.iter().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.iter().all(HashSet::is_empty)
    }

    /// The first revocation that matches a token: the token itself, its session, its person, or
    /// any agent anywhere in its chain.
    pub fn matches<'a, I: Iterator<Item = &'a str> + Clone>(&self, h: &Handles<'a, I>) -> Option<RevocationKind> {
        if self.is_empty() {
            return None;
        }
        if h.jti.is_some_and(|j| self.contains(RevocationKind::Token, j)) {
            return Some(RevocationKind::Token);
        }
        if h.sid.is_some_and(|s| self.contains(RevocationKind::Session, s)) {
            return Some(RevocationKind::Session);
        }
        // Person revocations are rare: the issuer-qualified handle is built only when there are some.
        // One recorded before people were named with their issuer (no space in it) still matches
        // that subject from any issuer: an upgrade never lifts a revocation.
        let people = self.of(RevocationKind::Person);
        if !people.is_empty() && (people.contains(h.sub) || people.contains(&person_handle(h.sub_iss, h.sub))) {
            return Some(RevocationKind::Person);
        }
        h.agents.clone().any(|a| self.contains(RevocationKind::Agent, a)).then_some(RevocationKind::Agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_at_every_granularity() {
        let agents = ["oncall-agent", "investigation-agent"];
        let h = Handles { jti: Some("j1"), sid: Some("s1"), sub_iss: "https://idp-a", sub: "user1", agents: agents.iter().copied() };
        let mut set = RevocationSet::default();
        assert_eq!(set.matches(&h), None);
        for (kind, value) in [
            (RevocationKind::Token, "j1"),
            (RevocationKind::Session, "s1"),
            (RevocationKind::Person, "https://idp-a user1"),
            (RevocationKind::Agent, "oncall-agent"),
        ] {
            set.insert(kind, value);
            assert_eq!(set.matches(&h), Some(kind));
            set.remove(kind, value);
        }
        // The same subject from another issuer is another person.
        set.insert(RevocationKind::Person, "https://idp-b user1");
        set.insert(RevocationKind::Session, "s2");
        set.insert(RevocationKind::Agent, "monitoring-agent");
        assert_eq!(set.matches(&h), None);
        // A person revocation recorded before issuers were part of a person's name matches the
        // subject from any issuer.
        set.insert(RevocationKind::Person, "user1");
        assert_eq!(set.matches(&h), Some(RevocationKind::Person));
    }
}
