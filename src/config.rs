//! Plugin configuration: JSON, parsed and validated once in `on_configure`. Every error names the
//! field, and an invalid configuration makes Envoy refuse the plugin.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use actorchain_token::{
    is_issuer_id, is_principal_id, is_spiffe_id, ChainLimits, KeySet, PersonIssuer, ScopeSet, TimeWindow, MAX_DEPTH_CEILING,
};
use serde::Deserialize;

use crate::policy::{McpMethod, Originator, Pattern, Rule, Target};
use crate::reports::ReportsConfig;
use crate::slots::SharedSlots;
use actorchain_token::wire::MAX_REPORTS;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "actorchain plugin configuration: {}", self.0)
    }
}

fn err<T>(field: &str, msg: impl fmt::Display) -> Result<T, ConfigError> {
    Err(ConfigError(format!("{field}: {msg}")))
}

/// How to reach the STS: an Envoy cluster (whose upstream TLS presents this workload's SVID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsConfig {
    pub cluster: String,
    pub authority: String,
    pub token_path: String,
    pub jwks_path: String,
    pub revocations_path: String,
    pub timeout: Duration,
    /// How often the revocation feed is read (it is also read right after a refusal for revocation).
    pub revocation_refresh: Duration,
    /// How decisions are reported to the STS's ledger.
    pub reports: ReportsConfig,
}

/// Where MCP traffic is inspected, and the bounds of that inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    pub path_prefix: String,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    /// Trim `tools/list` answers to the tools this caller may call.
    pub filter_tools_list: bool,
}

/// Who must present a token: the workload it was issued to, proven by its client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SenderBinding {
    /// A request without a verified peer certificate is refused (`sender_unauthenticated`).
    Required,
    /// Compared when there is a peer certificate; a plaintext request or TLS without a client
    /// certificate is let through. Weaker: a stolen token works from any unauthenticated peer.
    WhenPresent,
    Off,
}

/// An identity provider whose people enter here, and which workloads may present its tokens.
#[derive(Debug, Clone)]
pub struct Person {
    pub issuer: PersonIssuer,
    /// SPIFFE IDs of the peers that may present these tokens (the front end, the ingress
    /// gateway); empty: any authenticated peer.
    pub presenters: Vec<String>,
}

/// How accepted requests are made findable by the outbound side (see `correlation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correlation {
    /// Record accepted tokens for this workload's outbound side (off for workloads that call no one).
    pub record: bool,
    /// Also hand the key over as `x-request-id` (replacing the caller's), for apps that propagate
    /// nothing else.
    pub x_request_id: bool,
    /// Also hand the key over in W3C `baggage` (OpenTelemetry SDKs propagate it by default): the
    /// carrier that survives Envoy's own tracing, which rewrites `tracestate` towards the app.
    pub baggage: bool,
}

#[derive(Debug, Clone)]
pub struct InboundConfig {
    pub issuer: String,
    /// This workload's identity: tokens must be addressed exactly to it.
    pub audience: String,
    pub sts: StsConfig,
    pub window: TimeWindow,
    pub limits: ChainLimits,
    pub jwks_refresh: Duration,
    /// Least time between two JWKS fetches caused by unknown `kid`s.
    pub jwks_min_refetch: Duration,
    /// Identity providers whose person tokens this entry point accepts (a session's first hop).
    pub people: Vec<Person>,
    pub rules: Vec<Rule>,
    pub mcp: Option<McpConfig>,
    /// Where A2A requests are inspected (`filter_tools_list` unused).
    pub a2a: Option<McpConfig>,
    /// Verified tokens remembered per worker; 0 turns the cache off.
    pub verified_cache_size: usize,
    /// Refuse a token presented by another workload than its current actor's.
    pub sender_binding: SenderBinding,
    pub correlation: Correlation,
    /// Where accepted tokens are recorded for the outbound side's correlation lookup.
    pub slots: SharedSlots,
    /// `false`: observe only — every decision is made, counted and logged as enforcement would,
    /// and every request goes on unchanged (for rolling out into a running mesh).
    pub enforce: bool,
    /// Requests that need no token; never a JSON-RPC call under the MCP path.
    pub exempt: Vec<Exempt>,
    /// Each decision is written where Envoy's tracing reads custom tags (filter state
    /// `wasm.actorchain.*`); off, not even that is spent per request.
    pub trace_tags: bool,
    /// ES256 signatures of the STS's tokens are checked by Envoy's own crypto where the host
    /// offers it (the wasm build: Envoy's `verify_signature` foreign function), which is faster
    /// than checking them inside the VM; off, or where the host has none, the filter checks them.
    pub host_signature_verification: bool,
}

/// A request that needs no token: health checks, metrics, an A2A agent card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exempt {
    pub method: Option<String>,
    pub path: ExemptPath,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExemptPath {
    Exact(String),
    Prefix(String),
}

impl Exempt {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && match &self.path {
                ExemptPath::Exact(p) => p == path,
                ExemptPath::Prefix(p) => path.starts_with(p.as_str()),
            }
    }
}

/// Where a destination's calls go: the audience, and at most which scopes they carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub audience: String,
    /// The most a token for this destination may carry; the STS is asked for this ∩ what the
    /// subject holds. `None`: everything the subject and the registry allow.
    pub scope: Option<ScopeSet>,
    /// `scope` as text, rendered once: part of the exchange cache key.
    pub scope_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundConfig {
    /// The agent this workload speaks for (`client_id` at the STS).
    pub agent: String,
    pub sts: StsConfig,
    /// Destination authority (host or host:port) → audience identity and scope.
    pub destinations: HashMap<String, Destination>,
    pub pass_unmapped: bool,
    /// With no token to exchange, let the agent act as itself at the root of a new chain
    /// (scheduled jobs; the STS must allow it for the agent) instead of refusing.
    pub act_as_self: bool,
    /// A cached token is used until this long before its `exp`.
    pub cache_margin_secs: u64,
    /// Bounded shared data for exchanged tokens and trace-context records.
    pub slots: SharedSlots,
    /// `false`: observe only — a call that would be refused goes on as the app sent it.
    pub enforce: bool,
    /// As the inbound side's.
    pub trace_tags: bool,
}

#[derive(Debug, Clone)]
pub enum Config {
    Inbound(InboundConfig),
    Outbound(OutboundConfig),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSts {
    cluster: String,
    #[serde(default = "default_authority")]
    authority: String,
    #[serde(default = "default_token_path")]
    token_path: String,
    #[serde(default = "default_jwks_path")]
    jwks_path: String,
    #[serde(default = "default_revocations_path")]
    revocations_path: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_revocation_refresh_ms")]
    revocation_refresh_ms: u64,
    reports: Option<RawReports>,
}

/// Reporting decisions to the STS's ledger; every field optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReports {
    enabled: Option<bool>,
    max_buffered: Option<usize>,
    flush_ms: Option<u64>,
    max_batch: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerson {
    issuer: String,
    jwks: serde_json::Value,
    typ: Option<String>,
    #[serde(default)]
    presenters: Vec<String>,
}

/// A person a rule names: by issuer and subject (two issuers' `user1` are two people).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOriginatorId {
    issuer: String,
    sub: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCorrelation {
    #[serde(default = "default_true")]
    record: bool,
    #[serde(default)]
    x_request_id: bool,
    #[serde(default = "default_true")]
    baggage: bool,
}

/// A destination given as `{"audience": ..., "scope": ...}` rather than just its audience.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopedDestination {
    audience: String,
    scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Option<String>,
    method: Option<String>,
    path_prefix: Option<String>,
    mcp_method: Option<String>,
    name: Option<String>,
    a2a_method: Option<String>,
    skill: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    originators: Vec<serde_json::Value>,
    #[serde(default)]
    actors: Vec<String>,
    #[serde(default)]
    people_directly: bool,
    #[serde(default)]
    chain_includes: Vec<String>,
    #[serde(default)]
    chain_excludes: Vec<String>,
    max_depth: Option<usize>,
    #[serde(default = "default_true")]
    enforce: bool,
}

/// A request that needs no token (health, metrics, an agent card): a method (any when absent)
/// and an exact path or a path prefix.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExempt {
    method: Option<String>,
    path: Option<String>,
    path_prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMcp {
    #[serde(default = "default_mcp_prefix")]
    path_prefix: String,
    #[serde(default = "default_mcp_body")]
    max_body_bytes: usize,
    #[serde(default = "default_mcp_batch")]
    max_batch: usize,
    #[serde(default = "default_true")]
    filter_tools_list: bool,
}

/// Where A2A (agent-to-agent JSON-RPC) requests are judged, and their bounds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawA2a {
    #[serde(default = "default_a2a_prefix")]
    path_prefix: String,
    #[serde(default = "default_mcp_body")]
    max_body_bytes: usize,
    #[serde(default = "default_mcp_batch")]
    max_batch: usize,
}

fn default_a2a_prefix() -> String {
    "/a2a".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInbound {
    issuer: String,
    audience: String,
    sts: RawSts,
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
    #[serde(default = "default_depth")]
    max_depth: usize,
    #[serde(default = "default_refresh")]
    jwks_refresh_seconds: u64,
    #[serde(default = "default_refetch")]
    jwks_min_refetch_seconds: u64,
    #[serde(default)]
    people: Vec<RawPerson>,
    #[serde(default)]
    rules: Vec<RawRule>,
    mcp: Option<RawMcp>,
    a2a: Option<RawA2a>,
    #[serde(default = "default_verified_cache")]
    verified_cache_size: usize,
    sender_binding: Option<serde_json::Value>,
    correlation: Option<RawCorrelation>,
    #[serde(default = "default_slots")]
    shared_slots: u32,
    #[serde(default = "default_true")]
    enforce: bool,
    #[serde(default)]
    exempt: Vec<RawExempt>,
    #[serde(default)]
    trace_tags: bool,
    #[serde(default = "default_true")]
    host_signature_verification: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    agent: String,
    sts: RawSts,
    destinations: HashMap<String, serde_json::Value>,
    #[serde(default = "default_unmapped")]
    unmapped_destination: String,
    #[serde(default = "default_no_subject")]
    no_subject: String,
    #[serde(default = "default_margin")]
    cache_margin_seconds: u64,
    #[serde(default = "default_slots")]
    shared_slots: u32,
    #[serde(default = "default_true")]
    enforce: bool,
    #[serde(default)]
    trace_tags: bool,
}

#[derive(Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum Raw {
    Inbound(RawInbound),
    Outbound(RawOutbound),
}

fn default_authority() -> String {
    "sts.actorchain.dev".into()
}
fn default_token_path() -> String {
    "/token".into()
}
fn default_jwks_path() -> String {
    "/.well-known/jwks.json".into()
}
fn default_revocations_path() -> String {
    "/revocations".into()
}
fn default_revocation_refresh_ms() -> u64 {
    1000
}
fn default_timeout_ms() -> u64 {
    1000
}
fn default_leeway() -> u64 {
    30
}
fn default_depth() -> usize {
    actorchain_token::DEFAULT_MAX_DEPTH
}
fn default_refresh() -> u64 {
    60
}
fn default_slots() -> u32 {
    crate::slots::DEFAULT_SLOTS
}

/// Both plugins of a sidecar must use the same count: the outbound side reads what the inbound
/// side recorded (with different counts it finds nothing and refuses).
fn shared_slots(count: u32) -> Result<SharedSlots, ConfigError> {
    if !(crate::slots::MIN_SLOTS..=crate::slots::MAX_SLOTS).contains(&count) {
        return err("shared_slots", format!("must be between {} and {}", crate::slots::MIN_SLOTS, crate::slots::MAX_SLOTS));
    }
    Ok(SharedSlots::new(count))
}

fn default_refetch() -> u64 {
    10
}
fn default_mcp_prefix() -> String {
    "/mcp".into()
}
fn default_mcp_body() -> usize {
    64 * 1024
}
fn default_mcp_batch() -> usize {
    32
}
fn default_true() -> bool {
    true
}
fn default_verified_cache() -> usize {
    4096
}
fn default_unmapped() -> String {
    "refuse".into()
}
fn default_no_subject() -> String {
    "refuse".into()
}
fn default_margin() -> u64 {
    10
}

fn sts(raw: RawSts) -> Result<StsConfig, ConfigError> {
    if raw.cluster.is_empty() {
        return err("sts.cluster", "must name the Envoy cluster of the STS");
    }
    // A callout timeout of 0 means "no timeout" to Envoy; never allow it.
    if !(1..=30_000).contains(&raw.timeout_ms) {
        return err("sts.timeout_ms", "must be between 1 and 30000");
    }
    if !(100..=60_000).contains(&raw.revocation_refresh_ms) {
        return err("sts.revocation_refresh_ms", "must be between 100 and 60000");
    }
    for (f, p) in [("sts.token_path", &raw.token_path), ("sts.jwks_path", &raw.jwks_path), ("sts.revocations_path", &raw.revocations_path)]
    {
        if !p.starts_with('/') {
            return err(f, "must be an absolute path");
        }
    }
    let mut reports = ReportsConfig::default();
    if let Some(r) = raw.reports {
        reports.enabled = r.enabled.unwrap_or(reports.enabled);
        reports.max_buffered = r.max_buffered.unwrap_or(reports.max_buffered);
        reports.max_batch = r.max_batch.unwrap_or(reports.max_batch);
        reports.flush = r.flush_ms.map_or(reports.flush, Duration::from_millis);
    }
    if !(1..=1_000_000).contains(&reports.max_buffered) {
        return err("sts.reports.max_buffered", "must be between 1 and 1000000");
    }
    if !(1..=MAX_REPORTS).contains(&reports.max_batch) {
        return err("sts.reports.max_batch", format!("must be between 1 and {MAX_REPORTS}"));
    }
    if !(100..=60_000).contains(&(reports.flush.as_millis() as u64)) {
        return err("sts.reports.flush_ms", "must be between 100 and 60000");
    }
    Ok(StsConfig {
        reports,
        cluster: raw.cluster,
        authority: raw.authority,
        token_path: raw.token_path,
        jwks_path: raw.jwks_path,
        revocations_path: raw.revocations_path,
        timeout: Duration::from_millis(raw.timeout_ms),
        revocation_refresh: Duration::from_millis(raw.revocation_refresh_ms),
    })
}

fn principal(field: &str, v: &str) -> Result<(), ConfigError> {
    if is_principal_id(v) {
        Ok(())
    } else {
        err(field, format!("{v:?} is not a valid identity (1-256 printable ASCII, no spaces)"))
    }
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Config, ConfigError> {
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ConfigError(e.to_string()))?;
        match raw {
            Raw::Inbound(r) => inbound(r).map(Config::Inbound),
            Raw::Outbound(r) => outbound(r).map(Config::Outbound),
        }
    }
}

fn inbound(r: RawInbound) -> Result<InboundConfig, ConfigError> {
    if r.issuer.is_empty() {
        return err("issuer", "required");
    }
    principal("audience", &r.audience)?;
    if r.leeway_seconds > 300 {
        return err("leeway_seconds", "at most 300");
    }
    if !(1..=MAX_DEPTH_CEILING).contains(&r.max_depth) {
        return err("max_depth", format!("must be between 1 and {MAX_DEPTH_CEILING}"));
    }
    if !(5..=86_400).contains(&r.jwks_refresh_seconds) {
        return err("jwks_refresh_seconds", "must be between 5 and 86400");
    }
    if !(1..=3600).contains(&r.jwks_min_refetch_seconds) {
        return err("jwks_min_refetch_seconds", "must be between 1 and 3600");
    }
    if r.verified_cache_size > 1_000_000 {
        return err("verified_cache_size", "at most 1000000");
    }
    if !is_issuer_id(&r.issuer) {
        return err("issuer", "required: 1-1024 printable ASCII, no spaces");
    }
    let mut people: Vec<Person> = Vec::new();
    for (i, p) in r.people.into_iter().enumerate() {
        // The STS's issuer vouches for agents acting as themselves; no person's IdP may share it.
        if !is_issuer_id(&p.issuer) || p.issuer == r.issuer || people.iter().any(|q| q.issuer.issuer == p.issuer) {
            return err(&format!("people[{i}].issuer"), "required (no spaces), listed once, and different from the STS issuer");
        }
        let keys = KeySet::from_jwks(p.jwks.to_string().as_bytes()).or_else(|e| err(&format!("people[{i}].jwks"), e))?;
        if keys.is_empty() {
            return err(&format!("people[{i}].jwks"), "has no usable EdDSA or ES256 key");
        }
        for (j, id) in p.presenters.iter().enumerate() {
            if !is_spiffe_id(id) {
                return err(&format!("people[{i}].presenters[{j}]"), format!("{id:?} is not a SPIFFE ID"));
            }
        }
        people.push(Person { issuer: PersonIssuer { issuer: p.issuer, keys, typ: p.typ }, presenters: p.presenters });
    }
    let sender_binding = match r.sender_binding.as_ref().map(|v| (v.as_bool(), v.as_str())) {
        None | Some((Some(true), _)) | Some((_, Some("required"))) => SenderBinding::Required,
        Some((_, Some("when_present"))) => SenderBinding::WhenPresent,
        Some((Some(false), _)) | Some((_, Some("off"))) => SenderBinding::Off,
        Some(_) => return err("sender_binding", "must be \"required\" (or true), \"when_present\" or \"off\" (or false)"),
    };
    let correlation = r.correlation.unwrap_or(RawCorrelation { record: true, x_request_id: false, baggage: true });
    if correlation.x_request_id && !correlation.record {
        return err("correlation.x_request_id", "needs correlation.record");
    }
    let mut rules = Vec::new();
    for (i, raw) in r.rules.into_iter().enumerate() {
        rules.push(rule(i, raw)?);
    }
    let mcp = r.mcp.map(|m| rpc_bounds("mcp", m.path_prefix, m.max_body_bytes, m.max_batch, m.filter_tools_list)).transpose()?;
    let a2a = r.a2a.map(|a| rpc_bounds("a2a", a.path_prefix, a.max_body_bytes, a.max_batch, false)).transpose()?;
    if let (Some(m), Some(a)) = (&mcp, &a2a) {
        if m.path_prefix.starts_with(&a.path_prefix) || a.path_prefix.starts_with(&m.path_prefix) {
            return err("a2a.path_prefix", "must not overlap mcp.path_prefix");
        }
    }
    Ok(InboundConfig {
        issuer: r.issuer,
        audience: r.audience,
        sts: sts(r.sts)?,
        window: TimeWindow { leeway_secs: r.leeway_seconds },
        limits: ChainLimits { max_depth: r.max_depth },
        jwks_refresh: Duration::from_secs(r.jwks_refresh_seconds),
        jwks_min_refetch: Duration::from_secs(r.jwks_min_refetch_seconds),
        people,
        rules,
        mcp,
        a2a,
        verified_cache_size: r.verified_cache_size,
        slots: shared_slots(r.shared_slots)?,
        enforce: r.enforce,
        exempt: exempt(r.exempt)?,
        trace_tags: r.trace_tags,
        host_signature_verification: r.host_signature_verification,
        sender_binding,
        correlation: Correlation { record: correlation.record, x_request_id: correlation.x_request_id, baggage: correlation.baggage },
    })
}

/// The bounds of one JSON-RPC protocol's inspection; errors name `section`'s fields.
fn rpc_bounds(
    section: &str,
    path_prefix: String,
    max_body_bytes: usize,
    max_batch: usize,
    filter_tools_list: bool,
) -> Result<McpConfig, ConfigError> {
    if !path_prefix.starts_with('/') || path_prefix == "/" {
        return err(&format!("{section}.path_prefix"), "must start with / and not be / alone");
    }
    if !(1..=1 << 20).contains(&max_body_bytes) {
        return err(&format!("{section}.max_body_bytes"), "must be between 1 and 1048576");
    }
    if !(1..=1000).contains(&max_batch) {
        return err(&format!("{section}.max_batch"), "must be between 1 and 1000");
    }
    Ok(McpConfig { path_prefix, max_body_bytes, max_batch, filter_tools_list })
}

fn rule(i: usize, r: RawRule) -> Result<Rule, ConfigError> {
    let f = |n: &str| format!("rules[{i}].{n}");
    if let (Some(method), None, None, None) = (&r.a2a_method, &r.path_prefix, &r.mcp_method, &r.name) {
        if r.method.is_some() || !method.bytes().all(|b| b.is_ascii_graphic()) || method.is_empty() {
            return err(&f("a2a_method"), "an A2A JSON-RPC method (message/send, tasks/*...), without method or path_prefix");
        }
    }
    let target = match (r.path_prefix, r.mcp_method, r.name) {
        _ if r.a2a_method.is_some() => {
            let (Some(method), None) = (r.a2a_method, &r.method) else { return err(&f("a2a_method"), "not with method") };
            let skill = r.skill.unwrap_or_else(|| "*".into());
            if skill.is_empty() {
                return err(&f("skill"), "must name a skill (a trailing * matches a prefix; * any, none included)");
            }
            Target::A2a { method: Pattern(method), skill: Pattern(skill) }
        }
        (_, _, _) if r.skill.is_some() => return err(&f("skill"), "only with a2a_method"),
        (Some(prefix), None, None) => {
            if !prefix.starts_with('/') {
                return err(&f("path_prefix"), "must start with /");
            }
            if let Some(m) = &r.method {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return err(&f("method"), "must be an upper-case HTTP method");
                }
            }
            Target::Http { method: r.method, path_prefix: prefix }
        }
        (None, Some(m), Some(name)) if r.method.is_none() => {
            let Some(method) = McpMethod::parse(&m) else {
                return err(&f("mcp_method"), "must be tools/call, resources/read or prompts/get");
            };
            if name.is_empty() {
                return err(&f("name"), "must name a tool, resource or prompt (a trailing * matches a prefix)");
            }
            Target::Mcp { method, name: Pattern(name) }
        }
        _ => return err(&f("path_prefix"), "a rule has either path_prefix (and method), mcp_method and name, or a2a_method (and skill)"),
    };
    let scopes = ScopeSet::from_tokens(r.scopes.iter().map(String::as_str)).or_else(|_| err(&f("scopes"), "not valid scope tokens"))?;
    let mut originators = Vec::with_capacity(r.originators.len());
    for (j, o) in r.originators.into_iter().enumerate() {
        let Ok(RawOriginatorId { issuer, sub }) = serde_json::from_value(o) else {
            return err(
                &f(&format!("originators[{j}]")),
                "name the person with the issuer that vouches for them: {\"issuer\": ..., \"sub\": ...}",
            );
        };
        if !is_issuer_id(&issuer) {
            return err(&f(&format!("originators[{j}].issuer")), "1-1024 printable ASCII, no spaces");
        }
        principal(&f(&format!("originators[{j}].sub")), &sub)?;
        originators.push(Originator { issuer, sub: Pattern(sub) });
    }
    for (list, name) in [(&r.actors, "actors"), (&r.chain_includes, "chain_includes"), (&r.chain_excludes, "chain_excludes")] {
        for (j, v) in list.iter().enumerate() {
            principal(&f(&format!("{name}[{j}]")), v)?;
        }
    }
    if r.max_depth.is_some_and(|d| !(1..=MAX_DEPTH_CEILING).contains(&d)) {
        return err(&f("max_depth"), format!("must be between 1 and {MAX_DEPTH_CEILING}"));
    }
    Ok(Rule {
        id: r.id.unwrap_or_else(|| format!("rules[{i}]")),
        target,
        scopes,
        originators,
        actors: r.actors.into_iter().map(Pattern).collect(),
        people_directly: r.people_directly,
        chain_includes: r.chain_includes,
        chain_excludes: r.chain_excludes,
        max_depth: r.max_depth,
        enforce: r.enforce,
    })
}

fn exempt(raw: Vec<RawExempt>) -> Result<Vec<Exempt>, ConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, e)| {
            let f = |n: &str| format!("exempt[{i}].{n}");
            if let Some(m) = &e.method {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                    return err(&f("method"), "must be an upper-case HTTP method");
                }
            }
            let path = match (e.path, e.path_prefix) {
                (Some(p), None) if p.starts_with('/') => ExemptPath::Exact(p),
                (None, Some(p)) if p.starts_with('/') && p != "/" => ExemptPath::Prefix(p),
                (None, Some(_)) => return err(&f("path_prefix"), "must start with / and not be / alone (that exempts everything)"),
                _ => return err(&f("path"), "give exactly one of path and path_prefix, starting with /"),
            };
            Ok(Exempt { method: e.method, path })
        })
        .collect()
}

fn outbound(r: RawOutbound) -> Result<OutboundConfig, ConfigError> {
    principal("agent", &r.agent)?;
    let pass_unmapped = match r.unmapped_destination.as_str() {
        "refuse" => false,
        "pass_through" => true,
        other => return err("unmapped_destination", format!("{other:?} is neither \"refuse\" nor \"pass_through\"")),
    };
    let act_as_self = match r.no_subject.as_str() {
        "refuse" => false,
        "act_as_self" => true,
        other => return err("no_subject", format!("{other:?} is neither \"refuse\" nor \"act_as_self\"")),
    };
    if r.cache_margin_seconds > 600 {
        return err("cache_margin_seconds", "at most 600");
    }
    let mut destinations = HashMap::new();
    for (authority, raw) in r.destinations {
        let at = format!("destinations.{authority}");
        if authority.is_empty() || authority.bytes().any(|b| b.is_ascii_uppercase() || b == b'/') {
            return err(&at, "keys are lower-case host or host:port");
        }
        let (audience, scope) = match raw {
            serde_json::Value::String(a) => (a, None),
            other => match serde_json::from_value::<RawScopedDestination>(other) {
                Ok(d) => (d.audience, d.scope),
                Err(_) => return err(&at, "an audience, or {\"audience\": ..., \"scope\": \"space-separated scopes\"}"),
            },
        };
        principal(&at, &audience)?;
        let scope = match scope {
            Some(s) => Some(ScopeSet::parse(&s).or_else(|_| err(&format!("{at}.scope"), "not space-separated scope tokens"))?),
            None => None,
        };
        let scope_key = scope.as_ref().map(ToString::to_string).unwrap_or_default();
        destinations.insert(authority, Destination { audience, scope, scope_key });
    }
    Ok(OutboundConfig {
        agent: r.agent,
        sts: sts(r.sts)?,
        destinations,
        pass_unmapped,
        act_as_self,
        cache_margin_secs: r.cache_margin_seconds,
        slots: shared_slots(r.shared_slots)?,
        enforce: r.enforce,
        trace_tags: r.trace_tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN: &str = r#"{"mode":"inbound","issuer":"https://sts","audience":"mcp-gateway","sts":{"cluster":"sts"},
        "rules":[{"method":"POST","path_prefix":"/mcp","scopes":["repo:write"],"originators":[{"issuer":"https://idp","sub":"user1"}]}]}"#;
    const OUT: &str = r#"{"mode":"outbound","agent":"oncall-agent","sts":{"cluster":"sts","timeout_ms":500},
        "destinations":{"investigation":"investigation-agent","mcp":{"audience":"mcp-gateway","scope":"repo:write"}}}"#;

    #[test]
    fn parses_both_modes() {
        let Config::Inbound(i) = Config::parse(IN.as_bytes()).unwrap() else { panic!("inbound") };
        assert_eq!(i.audience, "mcp-gateway");
        assert_eq!(i.rules[0].scopes.to_string(), "repo:write");
        assert_eq!(i.sts.timeout, Duration::from_secs(1));
        let Config::Outbound(o) = Config::parse(OUT.as_bytes()).unwrap() else { panic!("outbound") };
        assert_eq!(
            o.destinations["investigation"],
            Destination { audience: "investigation-agent".into(), scope: None, scope_key: String::new() }
        );
        assert_eq!(o.destinations["mcp"].scope.as_ref().map(ToString::to_string).as_deref(), Some("repo:write"));
        assert!(!o.pass_unmapped);
        assert_eq!(i.sender_binding, SenderBinding::Required);
        assert_eq!(i.correlation, Correlation { record: true, x_request_id: false, baggage: true });
        let modes = |v: &str| match Config::parse(IN.replace("\"rules\"", &format!("\"sender_binding\":{v},\"rules\"")).as_bytes()) {
            Ok(Config::Inbound(i)) => Some(i.sender_binding),
            _ => None,
        };
        assert_eq!(modes("false"), Some(SenderBinding::Off));
        assert_eq!(modes("\"when_present\""), Some(SenderBinding::WhenPresent));
        assert_eq!(modes("\"required\""), Some(SenderBinding::Required));
    }

    #[test]
    fn errors_name_the_field() {
        for (cfg, field) in [
            (IN.replace("\"cluster\":\"sts\"", "\"cluster\":\"sts\",\"timeout_ms\":0"), "sts.timeout_ms"),
            (IN.replace("\"audience\":\"mcp-gateway\"", "\"audience\":\"a b\""), "audience"),
            (IN.replace("\"/mcp\"", "\"mcp\""), "rules[0].path_prefix"),
            (IN.replace("\"POST\"", "\"post\""), "rules[0].method"),
            (IN.replace("repo:write", "repo write"), "rules[0].scopes"),
            (IN.replace("\"path_prefix\":\"/mcp\"", "\"mcp_method\":\"tools/run\",\"name\":\"x\""), "rules[0]"),
            (
                IN.replace("\"method\":\"POST\",\"path_prefix\":\"/mcp\"", "\"mcp_method\":\"tools/run\",\"name\":\"x\""),
                "rules[0].mcp_method",
            ),
            (IN.replace("\"issuer\"", "\"isuer\""), "unknown field `isuer`"),
            (OUT.replace("\"investigation\":", "\"Investigation\":"), "destinations.Investigation"),
            (OUT.replace("\"agent\"", "\"unmapped_destination\":\"allow\",\"agent\""), "unmapped_destination"),
            (OUT.replace("\"agent\"", "\"no_subject\":\"anonymous\",\"agent\""), "no_subject"),
            (r#"{"mode":"sideways"}"#.to_string(), "unknown variant `sideways`"),
            (IN.replace("\"rules\"", "\"people\":[{\"issuer\":\"https://idp\",\"jwks\":{\"keys\":[]}}],\"rules\""), "people[0].jwks"),
            (IN.replace("\"rules\"", "\"mcp\":{\"max_batch\":0},\"rules\""), "mcp.max_batch"),
            (IN.replace("\"rules\"", "\"shared_slots\":8,\"rules\""), "shared_slots"),
            (IN.replace("\"rules\"", "\"sender_binding\":\"sometimes\",\"rules\""), "sender_binding"),
            (IN.replace("\"method\":\"POST\",\"path_prefix\":\"/mcp\"", "\"skill\":\"x\",\"path_prefix\":\"/mcp\""), "rules[0].skill"),
            (IN.replace("\"path_prefix\":\"/mcp\"", "\"a2a_method\":\"message/send\""), "rules[0].a2a_method"),
            (IN.replace("\"rules\"", "\"mcp\":{},\"a2a\":{\"path_prefix\":\"/mcp/a2a\"},\"rules\""), "a2a.path_prefix"),
            (IN.replace("\"rules\"", "\"exempt\":[{\"path_prefix\":\"/\"}],\"rules\""), "exempt[0].path_prefix"),
            (IN.replace("\"rules\"", "\"exempt\":[{\"path\":\"/a\",\"path_prefix\":\"/b\"}],\"rules\""), "exempt[0].path"),
            (IN.replace("\"rules\"", "\"exempt\":[{\"method\":\"get\",\"path\":\"/healthz\"}],\"rules\""), "exempt[0].method"),
            (IN.replace("\"rules\"", "\"correlation\":{\"record\":false,\"x_request_id\":true},\"rules\""), "correlation.x_request_id"),
            (IN.replace("{\"issuer\":\"https://idp\",\"sub\":\"user1\"}", "\"user1\""), "rules[0].originators[0]: name the person"),
            (OUT.replace("\"investigation-agent\"", "{\"aud\":\"investigation-agent\"}"), "destinations.investigation"),
            (IN.replace("\"issuer\":\"https://idp\",\"sub\"", "\"issuer\":\"https://i dp\",\"sub\""), "rules[0].originators[0].issuer"),
            (
                IN.replace(
                    "\"issuer\":\"https://sts\"",
                    "\"issuer\":\"https://sts\",\"people\":[{\"issuer\":\"https://sts\",\"jwks\":{\"keys\":[]}}]",
                ),
                "people[0].issuer",
            ),
            (OUT.replace("\"scope\":\"repo:write\"", "\"scope\":\"repo:write  x\""), "destinations.mcp.scope"),
            (OUT.replace("\"agent\"", "\"shared_slots\":4294967295,\"agent\""), "shared_slots"),
        ] {
            let e = Config::parse(cfg.as_bytes()).unwrap_err();
            assert!(e.0.contains(field), "{e} should name {field}");
        }
    }
}
