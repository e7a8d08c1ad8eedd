use std::collections::HashMap;
use std::path::Path;

use actorchain_token::{is_principal_id, is_spiffe_id, ScopeSet, DEFAULT_MAX_DEPTH, MAX_DEPTH_CEILING};
use serde::Deserialize;

/// Longest token lifetime an agent may be configured with. Tokens are per-hop: minutes, not hours.
pub const MAX_TTL_SECS: u64 = 3600;
pub const DEFAULT_TTL_SECS: u64 = 300;

/// What the registry says one agent may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentPolicy {
    pub id: String,
    /// SPIFFE IDs of the workloads allowed to host this agent.
    pub workloads: Vec<String>,
    /// Next-hop audiences this agent may get tokens for, each with the scopes a token for it may
    /// carry (least privilege per hop).
    pub audiences: Vec<AudienceGrant>,
    /// Scopes this agent may ever hold.
    pub scopes: ScopeSet,
    /// Whether it may start a session from a person's token (be the first actor).
    pub may_start_session: bool,
    /// Whether it may act as itself at the root of a new chain (scheduled jobs, no person).
    pub may_act_as_self: bool,
    pub ttl_secs: u64,
    /// Deepest chain it may head.
    pub max_depth: usize,
}

/// One audience an agent may call, and the most a token for it may carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceGrant {
    pub audience: String,
    pub scopes: ScopeSet,
}

/// The agent registry: which agent may run where, call whom, hold what.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    agents: HashMap<String, AgentPolicy>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("registry {path}: {message}")]
pub struct RegistryError {
    pub path: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    agents: Vec<AgentEntry>,
}

/// An audience: by name (any of the agent's scopes), or with the scopes tokens for it may carry.
#[derive(Deserialize)]
#[serde(untagged)]
enum AudienceEntry {
    Name(String),
    Grant { audience: String, scopes: Vec<String> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    id: String,
    workloads: Vec<String>,
    audiences: Vec<AudienceEntry>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    may_start_session: bool,
    #[serde(default)]
    may_act_as_self: bool,
    ttl_seconds: Option<u64>,
    max_depth: Option<usize>,
}

impl Registry {
    pub fn load(path: &Path) -> Result<Registry, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|e| RegistryError { path: path.display().to_string(), message: e.to_string() })?;
        Registry::parse(&text).map_err(|message| RegistryError { path: path.display().to_string(), message })
    }

    /// Parses and validates. Every error names the field: `agents[2].workloads[0]: ...`.
    pub fn parse(text: &str) -> Result<Registry, String> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut agents = HashMap::new();
        for (i, a) in file.agents.into_iter().enumerate() {
            let at = |field: &str| format!("agents[{i}].{field}");
            if !is_principal_id(&a.id) {
                return Err(format!("{}: {:?} is not a valid agent id (1-256 printable ASCII, no spaces)", at("id"), a.id));
            }
            if a.workloads.is_empty() {
                return Err(format!("{}: an agent needs at least one workload SPIFFE ID", at("workloads")));
            }
            for (j, w) in a.workloads.iter().enumerate() {
                if !is_spiffe_id(w) {
                    return Err(format!("{}: {w:?} is not a SPIFFE ID", at(&format!("workloads[{j}]"))));
                }
            }
            let scopes = ScopeSet::from_tokens(a.scopes.iter().map(String::as_str))
                .map_err(|_| format!("{}: scopes must be RFC 6749 scope tokens (at most 64)", at("scopes")))?;
            let mut audiences: Vec<AudienceGrant> = Vec::with_capacity(a.audiences.len());
            for (j, entry) in a.audiences.into_iter().enumerate() {
                let grant = match entry {
                    AudienceEntry::Name(audience) => AudienceGrant { audience, scopes: scopes.clone() },
                    AudienceEntry::Grant { audience, scopes: granted } => {
                        let granted = ScopeSet::from_tokens(granted.iter().map(String::as_str))
                            .map_err(|_| format!("{}: must be RFC 6749 scope tokens", at(&format!("audiences[{j}].scopes"))))?;
                        if !granted.is_subset(&scopes) {
                            return Err(format!(
                                "{}: {} is not among the agent's scopes",
                                at(&format!("audiences[{j}].scopes")),
                                granted.difference(&scopes)
                            ));
                        }
                        AudienceGrant { audience, scopes: granted }
                    }
                };
                if !is_principal_id(&grant.audience) {
                    return Err(format!("{}: {:?} is not a valid audience", at(&format!("audiences[{j}]")), grant.audience));
                }
                if audiences.iter().any(|g| g.audience == grant.audience) {
                    return Err(format!("{}: audience {:?} is listed twice", at(&format!("audiences[{j}]")), grant.audience));
                }
                audiences.push(grant);
            }
            let ttl_secs = a.ttl_seconds.unwrap_or(DEFAULT_TTL_SECS);
            if !(1..=MAX_TTL_SECS).contains(&ttl_secs) {
                return Err(format!("{}: must be between 1 and {MAX_TTL_SECS}", at("ttl_seconds")));
            }
            let max_depth = a.max_depth.unwrap_or(DEFAULT_MAX_DEPTH);
            if !(1..=MAX_DEPTH_CEILING).contains(&max_depth) {
                return Err(format!("{}: must be between 1 and {MAX_DEPTH_CEILING}", at("max_depth")));
            }
            let id = a.id.clone();
            let policy = AgentPolicy {
                id: a.id,
                workloads: a.workloads,
                audiences,
                scopes,
                may_start_session: a.may_start_session,
                may_act_as_self: a.may_act_as_self,
                ttl_secs,
                max_depth,
            };
            if agents.insert(id.clone(), policy).is_some() {
                return Err(format!("{}: agent {id:?} is registered twice", at("id")));
            }
        }
        Ok(Registry { agents })
    }

    pub fn agent(&self, id: &str) -> Option<&AgentPolicy> {
        self.agents.get(id)
    }

    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    pub fn from_policies(policies: impl IntoIterator<Item = AgentPolicy>) -> Registry {
        Registry { agents: policies.into_iter().map(|p| (p.id.clone(), p)).collect() }
    }
}

impl AgentPolicy {
    pub fn may_run_on(&self, spiffe_id: &str) -> bool {
        self.workloads.iter().any(|w| w == spiffe_id)
    }

    /// The scopes a token for `audience` may carry; `None`: this agent may not call it.
    pub fn grant_for(&self, audience: &str) -> Option<&ScopeSet> {
        self.audiences.iter().find(|g| g.audience == audience).map(|g| &g.scopes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[agents]]
id = "oncall-agent"
workloads = ["spiffe://actorchain.dev/workload/oncall"]
audiences = ["investigation-agent"]
scopes = ["incidents:read", "repo:write"]
may_start_session = true
ttl_seconds = 300
"#;

    #[test]
    fn loads_a_valid_registry() {
        let r = Registry::parse(GOOD).unwrap();
        let a = r.agent("oncall-agent").unwrap();
        assert!(a.may_run_on("spiffe://actorchain.dev/workload/oncall"));
        assert_eq!(a.grant_for("investigation-agent"), Some(&a.scopes));
        assert_eq!(a.grant_for("mcp-gateway"), None);
        let per_audience = GOOD.replace(
            r#"audiences = ["investigation-agent"]"#,
            r#"audiences = ["investigation-agent", { audience = "mcp-gateway", scopes = ["repo:write"] }]"#,
        );
        let r = Registry::parse(&per_audience).unwrap();
        assert_eq!(r.agent("oncall-agent").unwrap().grant_for("mcp-gateway").map(ToString::to_string).as_deref(), Some("repo:write"));
        assert_eq!(a.max_depth, DEFAULT_MAX_DEPTH);
    }

    #[test]
    fn errors_name_the_field() {
        for (edit, expect) in [
            (GOOD.replace("spiffe://actorchain.dev/workload/oncall", "oncall"), "agents[0].workloads[0]"),
            (GOOD.replace("\"repo:write\"", "\"repo write\""), "agents[0].scopes"),
            (GOOD.replace("ttl_seconds = 300", "ttl_seconds = 99999"), "agents[0].ttl_seconds"),
            (GOOD.replace("ttl_seconds = 300", "max_depth = 0"), "agents[0].max_depth"),
            (GOOD.replace("ttl_seconds", "ttl"), "unknown field `ttl`"),
            (format!("{GOOD}{GOOD}"), "registered twice"),
            (
                GOOD.replace(r#"["investigation-agent"]"#, r#"[{ audience = "investigation-agent", scopes = ["repo:admin"] }]"#),
                "agents[0].audiences[0].scopes: repo:admin is not among",
            ),
            (GOOD.replace(r#"["investigation-agent"]"#, r#"["investigation-agent", "investigation-agent"]"#), "agents[0].audiences[1]"),
            (GOOD.replace("workloads = [\"spiffe://actorchain.dev/workload/oncall\"]", "workloads = []"), "agents[0].workloads"),
        ] {
            let err = Registry::parse(&edit).unwrap_err();
            assert!(err.contains(expect), "{err} should mention {expect}");
        }
    }
}
