//! Revocation at the granularity of delegation: one token (`jti`), one session (`sid`), one agent
//! (anywhere in the chain), one person (issuer and `sub`). The STS keeps the set and publishes it as a feed;
//! the filter follows the feed. Both match tokens with the same rule, here.
//!
//! A token or a session is revoked for good. A person or an agent is revoked as of a moment:
//! every token issued up to then is refused, and a new login (a token issued later) works again.
//! Any revocation can be lifted; the lift is an entry of the feed of its own.

use std::collections::HashMap;

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
    /// This entry lifts the revocation with that id (and revokes nothing itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifts: Option<u64>,
}

impl RevocationKind {
    /// Whether this grain revokes only what was issued up to the moment of revocation.
    pub fn as_of_a_moment(self) -> bool {
        matches!(self, Self::Person | Self::Agent)
    }
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
    /// When the token was issued (0 when it does not say: then it is as old as can be).
    pub iat: u64,
}

/// Revocations in force, one map per kind (value → when it was revoked), so a check is a few
/// hash lookups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    sets: [HashMap<String, u64>; 4],
}

impl RevocationSet {
    fn of(&self, kind: RevocationKind) -> &HashMap<String, u64> {
        &self.sets[kind as usize]
    }

    /// The revocations in force after `entries` (in id order): each revokes, unless a lift
    /// among them names it; a value revoked twice counts as of its latest moment.
    pub fn from_entries<'e>(entries: impl IntoIterator<Item = &'e RevocationEntry> + Clone) -> RevocationSet {
        let lifted: std::collections::HashSet<u64> = entries.clone().into_iter().filter_map(|e| e.lifts).collect();
        let mut set = RevocationSet::default();
        for e in entries.into_iter().filter(|e| e.lifts.is_none() && !lifted.contains(&e.id)) {
            let at = set.sets[e.kind as usize].entry(e.value.clone()).or_insert(e.revoked_at);
            *at = (*at).max(e.revoked_at);
        }
        set
    }

    /// Whether `value` is revoked as `kind` (at any moment).
    pub fn contains(&self, kind: RevocationKind, value: &str) -> bool {
        self.of(kind).contains_key(value)
    }

    pub fn len(&self) -> usize {
        self.sets.iter().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.iter().all(HashMap::is_empty)
    }

    /// Whether `value` revoked as `kind` covers a token issued at `iat`: always for a token or a
    /// session; for a person or an agent, when the token was issued up to the moment of revocation.
    fn covers(&self, kind: RevocationKind, value: &str, iat: u64) -> bool {
        self.of(kind).get(value).is_some_and(|at| !kind.as_of_a_moment() || iat <= *at)
    }

    /// The first revocation that matches a token: the token itself, its session, its person, or
    /// any agent anywhere in its chain.
    pub fn matches<'a, I: Iterator<Item = &'a str> + Clone>(&self, h: &Handles<'a, I>) -> Option<RevocationKind> {
        if self.is_empty() {
            return None;
        }
        if h.jti.is_some_and(|j| self.covers(RevocationKind::Token, j, h.iat)) {
            return Some(RevocationKind::Token);
        }
        if h.sid.is_some_and(|s| self.covers(RevocationKind::Session, s, h.iat)) {
            return Some(RevocationKind::Session);
        }
        // Person revocations are rare: the issuer-qualified handle is built only when there are some.
        // One recorded before people were named with their issuer (no space in it) still matches
        // that subject from any issuer: an upgrade never lifts a revocation.
        let person = RevocationKind::Person;
        if !self.of(person).is_empty()
            && (self.covers(person, h.sub, h.iat) || self.covers(person, &person_handle(h.sub_iss, h.sub), h.iat))
        {
            return Some(person);
        }
        h.agents.clone().any(|a| self.covers(RevocationKind::Agent, a, h.iat)).then_some(RevocationKind::Agent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, kind: RevocationKind, value: &str, revoked_at: u64) -> RevocationEntry {
        RevocationEntry { id, kind, value: value.into(), revoked_at, expires_at: u64::MAX, lifts: None }
    }

    #[test]
    fn matches_at_every_granularity() {
        let agents = ["oncall-agent", "investigation-agent"];
        let h =
            Handles { jti: Some("j1"), sid: Some("s1"), sub_iss: "https://idp-a", sub: "user1", agents: agents.iter().copied(), iat: 100 };
        assert_eq!(RevocationSet::default().matches(&h), None);
        for (kind, value) in [
            (RevocationKind::Token, "j1"),
            (RevocationKind::Session, "s1"),
            (RevocationKind::Person, "https://idp-a user1"),
            (RevocationKind::Agent, "oncall-agent"),
        ] {
            assert_eq!(RevocationSet::from_entries(&[entry(1, kind, value, 100)]).matches(&h), Some(kind));
        }
        // The same subject from another issuer is another person.
        let others = [
            entry(1, RevocationKind::Person, "https://idp-b user1", 100),
            entry(2, RevocationKind::Session, "s2", 100),
            entry(3, RevocationKind::Agent, "monitoring-agent", 100),
        ];
        assert_eq!(RevocationSet::from_entries(&others).matches(&h), None);
        // A person revocation recorded before issuers were part of a person's name matches the
        // subject from any issuer.
        assert_eq!(
            RevocationSet::from_entries(&[entry(1, RevocationKind::Person, "user1", 100)]).matches(&h),
            Some(RevocationKind::Person)
        );
    }

    #[test]
    fn people_and_agents_are_revoked_as_of_a_moment_and_anything_can_be_lifted() {
        let h = |iat| Handles { jti: Some("j1"), sid: Some("s1"), sub_iss: "https://idp", sub: "user1", agents: ["a"].into_iter(), iat };
        let person = entry(1, RevocationKind::Person, "https://idp user1", 100);
        let set = RevocationSet::from_entries(std::slice::from_ref(&person));
        assert_eq!(set.matches(&h(99)), Some(RevocationKind::Person));
        assert_eq!(set.matches(&h(100)), Some(RevocationKind::Person), "issued in the same second");
        assert_eq!(set.matches(&h(101)), None, "a new login");
        let agent = RevocationSet::from_entries(&[entry(1, RevocationKind::Agent, "a", 100)]);
        assert_eq!((agent.matches(&h(50)), agent.matches(&h(150))), (Some(RevocationKind::Agent), None));
        // A token or a session is revoked whenever it was issued.
        let session = RevocationSet::from_entries(&[entry(1, RevocationKind::Session, "s1", 100)]);
        assert_eq!(session.matches(&h(500)), Some(RevocationKind::Session));
        // Revoked again later: as of the later moment.
        let again = RevocationSet::from_entries(&[person.clone(), entry(2, RevocationKind::Person, "https://idp user1", 200)]);
        assert_eq!(again.matches(&h(150)), Some(RevocationKind::Person));
        // Lifted: as if never revoked; lifting the later one leaves the earlier in force.
        let lift = |id, of| RevocationEntry { lifts: Some(of), ..entry(id, RevocationKind::Person, "https://idp user1", 300) };
        assert_eq!(RevocationSet::from_entries(&[person.clone(), lift(2, 1)]).matches(&h(50)), None);
        let partly = RevocationSet::from_entries(&[person, entry(2, RevocationKind::Person, "https://idp user1", 200), lift(3, 2)]);
        assert_eq!((partly.matches(&h(50)), partly.matches(&h(150))), (Some(RevocationKind::Person), None));
    }
}
