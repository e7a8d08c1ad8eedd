//! Authorization rules, one language for plain HTTP routes and MCP calls: who started the chain
//! (the person), who is calling (the current actor), what the chain passed through, and which
//! scopes the token holds. Person and agent are judged together; prior actors are evidence for the
//! chain conditions only, never a source of authority (RFC 8693 §4.1).

use actorchain_token::ScopeSet;

use crate::identity::Verified;

/// An identifier pattern: exact, or a prefix when it ends with `*` (`*` alone matches anything).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(pub String);

impl Pattern {
    pub fn matches(&self, s: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => s.starts_with(prefix),
            None => self.0 == s,
        }
    }
}

/// The MCP requests that name something to authorize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpMethod {
    ToolsCall,
    ResourcesRead,
    PromptsGet,
}

impl McpMethod {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tools/call" => Some(Self::ToolsCall),
            "resources/read" => Some(Self::ResourcesRead),
            "prompts/get" => Some(Self::PromptsGet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToolsCall => "tools/call",
            Self::ResourcesRead => "resources/read",
            Self::PromptsGet => "prompts/get",
        }
    }
}

/// What a JSON-RPC call asks for: an MCP tool, resource or prompt, or an A2A method (its
/// subject is the skill the message names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcMethod {
    Mcp(McpMethod),
    A2a(String),
}

impl RpcMethod {
    /// The JSON-RPC method as the request named it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Mcp(m) => m.as_str(),
            Self::A2a(m) => m,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Http {
        method: Option<String>,
        path_prefix: String,
    },
    /// A tool, resource (by URI) or prompt, by name pattern.
    Mcp {
        method: McpMethod,
        name: Pattern,
    },
    /// An A2A JSON-RPC method (`message/send`, `tasks/*`...) and the skill the message names.
    A2a {
        method: Pattern,
        skill: Pattern,
    },
}

/// A person (or a self-acting agent) a rule names: the issuer that vouches for them, exactly, and
/// a subject pattern. Two issuers' `user1` are two people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Originator {
    pub issuer: String,
    pub sub: Pattern,
}

impl Originator {
    pub fn matches(&self, who: &Verified) -> bool {
        self.issuer == who.sub_iss && self.sub.matches(&who.sub)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub target: Target,
    pub scopes: ScopeSet,
    /// People who may have started the chain; empty: anyone.
    pub originators: Vec<Originator>,
    /// Agents that may be the current actor; empty: any agent.
    pub actors: Vec<Pattern>,
    /// Whether a person's own token, with no agent in between, may match.
    pub people_directly: bool,
    /// Agents the chain must have passed through.
    pub chain_includes: Vec<String>,
    /// Agents that must not be anywhere in the chain.
    pub chain_excludes: Vec<String>,
    pub max_depth: Option<usize>,
    /// `false`: the rule is observed, not enforced — what it would refuse is counted and logged
    /// and the request goes on.
    pub enforce: bool,
}

/// Why a rule refused: the rule's id and a stable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub rule: String,
    pub reason: &'static str,
    pub detail: String,
}

impl Rule {
    pub fn evaluate(&self, who: &Verified) -> Result<(), Denial> {
        let deny = |reason, detail: String| Err(Denial { rule: self.id.clone(), reason, detail });
        let held = ScopeSet::parse(&who.scope).unwrap_or_default();
        if !self.scopes.is_subset(&held) {
            return deny("scope_missing", format!("needs scope {}", self.scopes.difference(&held)));
        }
        // Who is calling first, then on whose behalf, then how the request got here.
        match who.agents.last() {
            None if !self.people_directly => return deny("agent_required", "a person may not call this directly".into()),
            Some(current) if !self.actors.is_empty() && !self.actors.iter().any(|p| p.matches(current)) => {
                return deny("actor_not_allowed", format!("{current} may not call this"));
            }
            _ => {}
        }
        if !self.originators.is_empty() && !self.originators.iter().any(|o| o.matches(who)) {
            return deny("originator_not_allowed", format!("not for work started by {} of {}", who.sub, who.sub_iss));
        }
        if who.agents.is_empty() {
            return Ok(());
        }
        if let Some(missing) = self.chain_includes.iter().find(|a| !who.agents.contains(a)) {
            return deny("chain_missing_agent", format!("the chain must pass through {missing}"));
        }
        if let Some(present) = self.chain_excludes.iter().find(|a| who.agents.contains(a)) {
            return deny("chain_has_excluded_agent", format!("the chain must not contain {present}"));
        }
        if self.max_depth.is_some_and(|d| who.agents.len() > d) {
            return deny("chain_too_deep", format!("at most {} agents", self.max_depth.unwrap_or(0)));
        }
        Ok(())
    }
}

/// The first HTTP rule for a request; none means a valid token is enough.
pub fn http_rule<'a>(rules: &'a [Rule], method: &str, path: &str) -> Option<&'a Rule> {
    rules.iter().find(|r| match &r.target {
        Target::Http { method: m, path_prefix } => m.as_deref().is_none_or(|m| m == method) && path.starts_with(path_prefix),
        Target::Mcp { .. } | Target::A2a { .. } => false,
    })
}

/// The first rule for a JSON-RPC call naming `name` (tool, resource, prompt or skill); none
/// means refused.
pub fn rpc_rule<'a>(rules: &'a [Rule], method: &RpcMethod, name: &str) -> Option<&'a Rule> {
    rules.iter().find(|r| match (&r.target, method) {
        (Target::Mcp { method: m, name: p }, RpcMethod::Mcp(want)) => m == want && p.matches(name),
        (Target::A2a { method: m, skill }, RpcMethod::A2a(want)) => m.matches(want) && skill.matches(name),
        _ => false,
    })
}

/// Whether `who` may make this JSON-RPC call: the first rule for it must allow it.
pub fn authorize_rpc(rules: &[Rule], who: &Verified, method: &RpcMethod, name: &str) -> Result<(), Denial> {
    match rpc_rule(rules, method, name) {
        Some(rule) => rule.evaluate(who),
        None => Err(Denial { rule: String::new(), reason: "no_rule", detail: format!("no rule allows {name:?}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(sub: &str, agents: &[&str], scope: &str) -> Verified {
        Verified {
            sub: sub.into(),
            sub_iss: IDP.into(),
            agents: agents.iter().map(|a| a.to_string()).collect(),
            chain: agents.join(","),
            scope: scope.into(),
            sid: None,
            jti: None,
            exp: 0,
            iat: 0,
            actor_workload: None,
        }
    }

    const IDP: &str = "https://idp";

    fn create_pr() -> Rule {
        Rule {
            id: "create-pr".into(),
            target: Target::Mcp { method: McpMethod::ToolsCall, name: Pattern("create_pr".into()) },
            scopes: ScopeSet::parse("repo:write").unwrap(),
            originators: vec![Originator { issuer: IDP.into(), sub: Pattern("oncall-*".into()) }],
            actors: vec![Pattern("investigation-agent".into())],
            people_directly: false,
            chain_includes: vec!["oncall-agent".into()],
            chain_excludes: vec!["monitoring-agent".into()],
            max_depth: Some(3),
            enforce: true,
        }
    }

    #[test]
    fn person_and_agent_are_judged_together() {
        let r = create_pr();
        let ok = who("oncall-alice", &["oncall-agent", "investigation-agent"], "repo:write");
        assert_eq!(r.evaluate(&ok), Ok(()));
        let reason = |w: Verified| r.evaluate(&w).unwrap_err().reason;
        assert_eq!(reason(who("oncall-alice", &["oncall-agent", "investigation-agent"], "repo:read")), "scope_missing");
        assert_eq!(reason(who("bob", &["oncall-agent", "investigation-agent"], "repo:write")), "originator_not_allowed");
        assert_eq!(reason(who("oncall-alice", &["investigation-agent", "oncall-agent"], "repo:write")), "actor_not_allowed");
        assert_eq!(reason(who("oncall-alice", &["investigation-agent"], "repo:write")), "chain_missing_agent");
        assert_eq!(
            reason(who("oncall-alice", &["oncall-agent", "monitoring-agent", "investigation-agent"], "repo:write")),
            "chain_has_excluded_agent"
        );
        assert_eq!(reason(who("oncall-alice", &["oncall-agent", "x", "y", "investigation-agent"], "repo:write")), "chain_too_deep");
        assert_eq!(reason(who("oncall-alice", &[], "repo:write")), "agent_required");
        let people = Rule { people_directly: true, ..create_pr() };
        assert_eq!(people.evaluate(&who("oncall-alice", &[], "repo:write")), Ok(()));
        // The same subject vouched for by another issuer is another person.
        let elsewhere = Verified { sub_iss: "https://other-idp".into(), ..ok.clone() };
        assert_eq!(r.evaluate(&elsewhere).unwrap_err().reason, "originator_not_allowed");
    }

    #[test]
    fn prior_actors_grant_nothing() {
        // The investigation agent passed through the chain earlier, but the caller now is another.
        let r = create_pr();
        let w = who("oncall-alice", &["oncall-agent", "investigation-agent", "mcp-helper"], "repo:write");
        assert_eq!(r.evaluate(&w).unwrap_err().reason, "actor_not_allowed");
    }

    #[test]
    fn a2a_rules_match_method_patterns_and_skills() {
        let a2a = |id: &str, method: &str, skill: &str| Rule {
            id: id.into(),
            target: Target::A2a { method: Pattern(method.into()), skill: Pattern(skill.into()) },
            scopes: ScopeSet::default(),
            ..create_pr()
        };
        let rules = vec![a2a("send", "message/send", "investigate"), a2a("tasks", "tasks/*", "*")];
        let send = RpcMethod::A2a("message/send".into());
        assert_eq!(rpc_rule(&rules, &send, "investigate").map(|r| r.id.as_str()), Some("send"));
        assert_eq!(rpc_rule(&rules, &send, "deploy"), None);
        assert_eq!(rpc_rule(&rules, &RpcMethod::A2a("tasks/cancel".into()), "").map(|r| r.id.as_str()), Some("tasks"));
        assert_eq!(rpc_rule(&rules, &RpcMethod::Mcp(McpMethod::ToolsCall), "investigate"), None, "protocols never mix");
    }

    #[test]
    fn finds_rules_by_target() {
        let http =
            Rule { id: "admin".into(), target: Target::Http { method: Some("POST".into()), path_prefix: "/admin".into() }, ..create_pr() };
        let any_read =
            Rule { id: "read".into(), target: Target::Mcp { method: McpMethod::ToolsCall, name: Pattern("read_*".into()) }, ..create_pr() };
        let rules = vec![http, create_pr(), any_read];
        assert_eq!(http_rule(&rules, "POST", "/admin/x").map(|r| r.id.as_str()), Some("admin"));
        assert_eq!(http_rule(&rules, "GET", "/admin/x"), None);
        assert_eq!(rpc_rule(&rules, &RpcMethod::Mcp(McpMethod::ToolsCall), "read_logs").map(|r| r.id.as_str()), Some("read"));
        assert_eq!(rpc_rule(&rules, &RpcMethod::Mcp(McpMethod::PromptsGet), "create_pr"), None);
        let w = who("oncall-alice", &["oncall-agent", "investigation-agent"], "repo:write");
        assert_eq!(authorize_rpc(&rules, &w, &RpcMethod::Mcp(McpMethod::ToolsCall), "delete_repo").unwrap_err().reason, "no_rule");
        assert!(Pattern("*".into()).matches("anything"));
    }
}
