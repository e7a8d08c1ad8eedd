//! The request flow of both directions, written against `Host` so it runs the same in Envoy and in
//! native tests.

use std::cell::RefCell;
use std::fmt::Write;
use std::rc::Rc;

use actorchain_token::InModule;
use serde::Serialize;

use crate::bearer::bearer;
use crate::cache;
use crate::config::{InboundConfig, OutboundConfig, SenderBinding};
use crate::correlation::{self, Carrier, ListHeader, Minter};
use crate::host::Host;
use crate::host_crypto::HostCheck;
use crate::identity::{self, Verified};
use crate::inbound::{authenticate, authorize, check_sender, Outcome};
use crate::outbound;
use crate::policy::{authorize_rpc, rpc_rule, McpMethod, RpcMethod};
use crate::reply::{self, LocalReply};
use crate::revocation_feed::Revocations;
use crate::root::Jwks;
use crate::rpc::{self, Protocol};
use crate::singleflight::Inflight;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// What a paused outbound request ends with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Forward with this `Authorization` value.
    Forward(String),
    Refuse(LocalReply),
    /// Observe-only: forward the request as the app sent it.
    Unchanged,
}

/// Applies a verdict to the request the host currently addresses.
pub fn apply<H: Host>(host: &mut H, verdict: &Verdict) {
    match verdict {
        Verdict::Forward(auth) => host.set_request_header("authorization", Some(auth)),
        Verdict::Refuse(r) => host.send_reply(r),
        Verdict::Unchanged => {}
    }
}

/// One audit line per decision. Borrowed fields and no intermediate JSON tree: this is on the
/// request path.
#[derive(Serialize, Default, Clone)]
struct AuditLine<'a> {
    kind: &'static str,
    direction: &'static str,
    decision: &'static str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    audience: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    /// The policy rule that decided, and what it was asked about.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// An audit line with the time of its decision: what the log shows and the ledger receives
/// (`actorchain_token::wire::Report`).
#[derive(Serialize)]
struct Stamped<'a, 'l> {
    ts: u64,
    #[serde(flatten)]
    line: &'l AuditLine<'a>,
}

impl AuditLine<'_> {
    /// Logged and reported, as the host wants: built only when someone will read it. `now`: the
    /// time the caller already read for its decision.
    fn emit<H: Host>(&self, host: &H, now: u64) {
        let log = host.audit_enabled();
        // A decision already reported since the last batch is counted on its line, not built again.
        let key = if host.reporting() { Some(self.repeat_key()) } else { None };
        let report = match key.as_ref() {
            Some(Some(k)) => !host.report_repeat(k),
            Some(None) => true,
            None => false,
        };
        if log || report {
            let json = actorchain_token::to_json(&Stamped { ts: now, line: self });
            if log {
                host.audit(&json);
            }
            if report {
                host.report(&json, key.flatten().as_deref());
            }
        }
    }

    /// What makes a decision the same one again, for the decisions repeated as a matter of course
    /// (a token accepted again, a call allowed again, an exchange served from cache again): every
    /// field that could differ, each length-prefixed so no two decisions read alike. The rest are
    /// reported one by one.
    fn repeat_key(&self) -> Option<String> {
        if !matches!(self.decision, "accepted" | "allowed" | "cache_hit") {
            return None;
        }
        let jti = self.jti?;
        let mut key = String::with_capacity(96);
        for f in [self.direction, self.decision, self.reason, jti, self.audience.unwrap_or(""), self.rule.unwrap_or("")]
            .into_iter()
            .chain([self.method.unwrap_or(""), self.name.unwrap_or("")])
        {
            let _ = write!(key, "{}:{f}", f.len());
        }
        Some(key)
    }

    /// The decision as Envoy's tracing reads it: custom tags on filter state `wasm.actorchain.*`.
    fn trace_tags(&self) -> TraceTags {
        let mut t = vec![("actorchain.decision", self.decision.to_string()), ("actorchain.reason", self.reason.to_string())];
        t.extend(self.sub.map(|s| ("actorchain.sub", s.to_string())));
        t.extend(self.chain.map(|c| ("actorchain.chain", c.join(","))));
        t.extend(self.audience.map(|a| ("actorchain.audience", a.to_string())));
        t.extend(self.rule.map(|r| ("actorchain.rule", r.to_string())));
        t
    }

    /// Logged, and tagged for tracing when the plugin asks for it.
    fn decided<H: Host>(&self, host: &mut H, now: u64, trace_tags: bool) {
        self.emit(host, now);
        if trace_tags {
            set_tags(host, &self.trace_tags());
        }
    }
}

/// Tag names and values for the request's trace span.
type TraceTags = Vec<(&'static str, String)>;

fn set_tags<H: Host>(host: &mut H, tags: &TraceTags) {
    for (name, value) in tags {
        host.set_trace_tag(name, value);
    }
}

pub struct InboundFilter {
    pub cfg: Rc<InboundConfig>,
    pub jwks: Rc<RefCell<Jwks>>,
    pub revoked: Rc<RefCell<Revocations>>,
    /// The caller, kept from the headers for judging a JSON-RPC body and trimming its answer.
    who: Option<Rc<Verified>>,
    /// The request is MCP or A2A: its body must be read before it goes on.
    pub body_wanted: bool,
    /// Which of the two it speaks.
    protocol: Protocol,
    /// The request lists tools: the answer is trimmed to the caller's tools.
    filter_list: bool,
    /// This worker's correlation keys.
    minter: Rc<RefCell<Minter>>,
    /// The correlation key this request's token was recorded under, removed when it ends.
    recorded: Option<String>,
}

impl InboundFilter {
    pub fn new(cfg: Rc<InboundConfig>, jwks: Rc<RefCell<Jwks>>, revoked: Rc<RefCell<Revocations>>, minter: Rc<RefCell<Minter>>) -> Self {
        InboundFilter {
            cfg,
            jwks,
            revoked,
            who: None,
            body_wanted: false,
            protocol: Protocol::Mcp,
            filter_list: false,
            minter,
            recorded: None,
        }
    }

    /// The request is over: its record goes with it, so no later call can continue it.
    pub fn on_done<H: Host>(&mut self, host: &mut H) {
        if let Some(key) = self.recorded.take() {
            self.cfg.slots.trace.remove(host, &key);
        }
    }

    /// Makes the accepted request findable by this workload's outbound side under a key minted
    /// here (never one the caller chose), handed to the app in `tracestate`, `baggage` and
    /// `x-request-id` as configured; the record says which, and is found only through those.
    /// `lists`: the request's `tracestate` and `baggage` values, in `ListHeader::ALL` order.
    fn correlate<H: Host>(
        &mut self,
        host: &mut H,
        headers: &[(String, String)],
        lists: &[Vec<&str>; 2],
        who: &Verified,
        token: &str,
        now: u64,
    ) {
        let corr = self.cfg.correlation;
        if !corr.record {
            return;
        }
        let mut carriers = [Carrier::List(ListHeader::TraceState); 3];
        let mut n = 1;
        for (on, carrier) in [(corr.baggage, Carrier::List(ListHeader::Baggage)), (corr.x_request_id, Carrier::RequestId)] {
            if on {
                carriers[n] = carrier;
                n += 1;
            }
        }
        let carriers = &carriers[..n];
        let key = self.minter.borrow_mut().key();
        let entry = cache::Entry {
            exp: who.exp,
            iat: who.iat,
            jti: who.jti.as_deref().unwrap_or(""),
            sid: who.sid.as_deref().unwrap_or(""),
            sub_iss: &who.sub_iss,
            sub: &who.sub,
            agents: &who.chain,
            token,
        };
        self.cfg.slots.trace.put_fresh(host, &key, now, who.exp, &correlation::encode_record(&entry, carriers));
        for carrier in carriers {
            match *carrier {
                Carrier::List(list) => {
                    host.set_request_header(list.name(), Some(&correlation::list_with(list, &key, &lists[list.index()])));
                }
                Carrier::RequestId => host.set_request_header("x-request-id", Some(&key)),
            }
        }
        if !headers.iter().any(|(n, v)| n == "traceparent" && correlation::is_traceparent(v)) {
            host.set_request_header("traceparent", Some(&self.minter.borrow_mut().traceparent()));
        }
        self.recorded = Some(key);
    }

    pub fn on_request_headers<H: Host>(&mut self, host: &mut H) -> Action {
        let headers = host.request_headers();
        // Identity headers are ours alone: whatever arrived from outside is dropped first.
        for (name, _) in headers.iter().filter(|(n, _)| identity::is_identity_header(n)) {
            host.set_request_header(name, None);
        }
        let judging = Judging { enforce: self.cfg.enforce, trace_tags: self.cfg.trace_tags };
        // So is our correlation key: no caller has a reason to send one (ours leave no workload), and
        // stripping it is not enough where Envoy's tracer hands the app the `tracestate` it read
        // before any filter ran.
        let lists = ListHeader::ALL.map(|list| values(&headers, list.name()));
        if lists.iter().any(|v| correlation::has_member(v)) {
            strip_keys(host, &lists);
            let reply = reply::invalid_request("correlation_forged", "a request may not carry an actorchain correlation key");
            if refuse(host, "inbound", reply, AuditLine::default(), judging) == Action::Pause {
                return Action::Pause;
            }
        }
        let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let method = find(":method").unwrap_or("");
        let path = find(":path").unwrap_or("/");
        let path = path.split_once('?').map_or(path, |(p, _)| p);
        let under = |c: &Option<crate::config::McpConfig>| c.as_ref().is_some_and(|c| method == "POST" && path.starts_with(&c.path_prefix));
        let json_rpc = match (under(&self.cfg.mcp), under(&self.cfg.a2a)) {
            (true, _) => Some(Protocol::Mcp),
            (_, true) => Some(Protocol::A2a),
            _ => None,
        };
        // Health checks, metrics, agent cards: no token needed (never a JSON-RPC call).
        if json_rpc.is_none() && self.cfg.exempt.iter().any(|e| e.matches(method, path)) {
            host.count("actorchain.inbound.exempt");
            return Action::Continue;
        }
        let auth: Vec<&str> = headers.iter().filter(|(n, _)| n == "authorization").map(|(_, v)| v.as_str()).collect();
        let now = host.now();
        let outcome = {
            let mut jwks = self.jwks.borrow_mut();
            let keys = jwks.keys.clone();
            let jwks = &mut *jwks;
            let outcome = if self.cfg.host_signature_verification {
                authenticate(&self.cfg, keys.as_deref(), &mut jwks.verified, &auth, now, &HostCheck { host: &*host, spki: &jwks.spki })
            } else {
                authenticate(&self.cfg, keys.as_deref(), &mut jwks.verified, &auth, now, &InModule)
            };
            if matches!(outcome, Outcome::Refused { refetch_keys: true, .. }) {
                jwks.refetch_wanted = true;
            }
            outcome
        };
        let (who, token) = match outcome {
            Outcome::Accepted { identity, token } => (identity, token),
            // Observe-only, a request without a valid token goes on with no identity at all.
            Outcome::Refused { reply, .. } => return refuse(host, "inbound", reply, AuditLine::default(), judging),
        };
        let about = AuditLine {
            sub: Some(&who.sub),
            sub_iss: Some(&who.sub_iss),
            chain: Some(&who.agents),
            scope: Some(&who.scope),
            jti: who.jti.as_deref(),
            sid: who.sid.as_deref(),
            ..AuditLine::default()
        };
        let peer = if self.cfg.sender_binding == SenderBinding::Off { None } else { host.peer_identity() };
        // The first check that fails decides, as it would when enforcing; observed, the request
        // goes on with the identity its token verified.
        let denial = check_sender(&self.cfg, &who, peer.as_deref())
            .err()
            .map(|r| (r, judging))
            .or_else(|| {
                let kind = self.revoked.borrow().set.matches(&who.handles())?;
                Some((reply::invalid_token(kind.reason(), &format!("this token's {} has been revoked", kind.as_str())), judging))
            })
            .or_else(|| {
                authorize(&self.cfg, &who, method, path)
                    .err()
                    .map(|(r, rule_enforces)| (r, judging.enforcing(judging.enforce && rule_enforces)))
            });
        let observed = denial.is_some();
        if let Some((reply, judged)) = denial {
            if refuse(host, "inbound", reply, about.clone(), judged) == Action::Pause {
                return Action::Pause;
            }
        }
        for (name, value) in identity::headers(&who) {
            host.set_request_header(name, Some(value));
        }
        self.correlate(host, &headers, &lists, &who, token, now);
        // Observed and let through, it was counted and logged as what enforcement would do.
        if !observed {
            host.count("actorchain.inbound.accepted");
            AuditLine { kind: "decision", direction: "inbound", decision: "accepted", reason: "valid", ..about }.decided(
                host,
                now,
                judging.trace_tags,
            );
        }
        if let Some(protocol) = json_rpc {
            self.protocol = protocol;
            self.body_wanted = true;
            self.who = Some(who);
        }
        Action::Continue
    }

    /// The body of an MCP or A2A request: every tool, resource, prompt or A2A method and skill it
    /// names must be allowed to this caller by the first rule for it.
    pub fn on_request_body<H: Host>(&mut self, host: &mut H, body_size: usize, end_of_stream: bool) -> Action {
        let bounds = match self.protocol {
            Protocol::Mcp => self.cfg.mcp.clone(),
            Protocol::A2a => self.cfg.a2a.clone(),
        };
        let (Some(mcp_cfg), Some(who)) = (bounds, self.who.as_ref()) else { return Action::Continue };
        if !self.body_wanted {
            return Action::Continue;
        }
        let judging = Judging { enforce: self.cfg.enforce, trace_tags: self.cfg.trace_tags };
        if body_size > mcp_cfg.max_body_bytes {
            self.body_wanted = false;
            return refuse(host, "inbound", rpc::bad_body(rpc::BodyError::TooLarge), AuditLine::default(), judging);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.body_wanted = false;
        let req = match rpc::parse(&host.request_body(body_size), &mcp_cfg, self.protocol) {
            Ok(r) => r,
            Err(e) => return refuse(host, "inbound", rpc::bad_body(e), AuditLine { sub: Some(&who.sub), ..AuditLine::default() }, judging),
        };
        let now = host.now();
        for call in &req.calls {
            let rule = rpc_rule(&self.cfg.rules, &call.method, &call.name);
            // Each call, allowed or not, with the rule that decided it and the token it came with.
            let about = AuditLine {
                sub: Some(&who.sub),
                sub_iss: Some(&who.sub_iss),
                chain: Some(&who.agents),
                jti: who.jti.as_deref(),
                sid: who.sid.as_deref(),
                rule: rule.map(|r| r.id.as_str()),
                method: Some(call.method.as_str()),
                name: Some(&call.name),
                ..AuditLine::default()
            };
            if let Err(d) = authorize_rpc(&self.cfg.rules, who, &call.method, &call.name) {
                let scope = rule.map(|r| r.scopes.to_string()).unwrap_or_default();
                let about = AuditLine { rule: Some(d.rule.as_str()).filter(|r| !r.is_empty()), ..about };
                // A batch is refused whole at its first refused call; observed, every call is judged.
                if refuse(
                    host,
                    "inbound",
                    rpc::refusal(&req, call, &d, &scope),
                    about,
                    judging.enforcing(judging.enforce && rule.is_none_or(|r| r.enforce)),
                ) == Action::Pause
                {
                    return Action::Pause;
                }
                continue;
            }
            host.count(match self.protocol {
                Protocol::Mcp => "actorchain.inbound.mcp_allowed",
                Protocol::A2a => "actorchain.inbound.a2a_allowed",
            });
            AuditLine { kind: "decision", direction: "inbound", decision: "allowed", reason: "rule", ..about }.emit(host, now);
        }
        // Observe-only changes nothing, answers included.
        self.filter_list = req.lists_tools && mcp_cfg.filter_tools_list && judging.enforce;
        Action::Continue
    }

    pub fn on_response_headers<H: Host>(&mut self, host: &mut H) {
        if self.filter_list {
            // The trimmed list is shorter than what the server announced.
            host.set_response_header("content-length", None);
        }
    }

    /// Trims a `tools/list` answer to the tools this caller may call.
    pub fn on_response_body<H: Host>(&mut self, host: &mut H, body_size: usize, end_of_stream: bool) -> Action {
        let Some(who) = self.who.as_ref().filter(|_| self.filter_list) else { return Action::Continue };
        if !end_of_stream {
            return Action::Pause;
        }
        self.filter_list = false;
        let rules = &self.cfg.rules;
        if let Some(trimmed) = rpc::filter_tools_list(&host.response_body(body_size), |name| {
            authorize_rpc(rules, who, &RpcMethod::Mcp(McpMethod::ToolsCall), name).is_ok()
        }) {
            host.set_response_body(body_size, &trimmed);
        }
        Action::Continue
    }
}

/// A refusal: enforced, the reply is sent and the request stops; observed (`enforce` false), it is
/// counted (`would_refuse.<reason>`) and logged exactly as it would have been, and the request
/// goes on unchanged.
fn refuse<H: Host>(host: &mut H, direction: &'static str, reply: LocalReply, about: AuditLine<'_>, judging: Judging) -> Action {
    match record_refusal(host, direction, reply, about, judging) {
        Some(reply) => {
            host.send_reply(&reply);
            Action::Pause
        }
        None => Action::Continue,
    }
}

/// How a refusal is carried out: enforced or only observed, and whether it is tagged for tracing.
#[derive(Debug, Clone, Copy)]
struct Judging {
    enforce: bool,
    trace_tags: bool,
}

impl Judging {
    fn enforcing(self, enforce: bool) -> Judging {
        Judging { enforce, ..self }
    }
}

/// The line a refusal is logged as, enforced or observed.
fn refusal_line<'a>(direction: &'static str, reply: &LocalReply, about: AuditLine<'a>, enforce: bool) -> AuditLine<'a> {
    let decision = if enforce { "refused" } else { "would_refuse" };
    AuditLine { kind: "decision", direction, decision, reason: reply.reason, status: Some(reply.status), ..about }
}

/// Counts and logs a refusal, enforced or observed; the reply to send when it is enforced.
fn record_refusal<H: Host>(
    host: &mut H,
    direction: &'static str,
    reply: LocalReply,
    about: AuditLine<'_>,
    judging: Judging,
) -> Option<LocalReply> {
    let line = refusal_line(direction, &reply, about, judging.enforce);
    host.count(&format!("actorchain.{direction}.{}.{}", line.decision, reply.reason));
    let now = host.now();
    line.decided(host, now, judging.trace_tags);
    judging.enforce.then_some(reply)
}

/// An outbound request waiting for an exchange (its own call, or one another request started).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub key: String,
    pub audience: String,
    pub leader: bool,
}

pub struct OutboundFilter {
    pub cfg: Rc<OutboundConfig>,
    pub revoked: Rc<RefCell<Revocations>>,
    pub inflight: Rc<RefCell<Inflight>>,
    pub context_id: u32,
    pub pending: Option<Pending>,
    /// The exchange's outcome as trace tags, for the requests that waited for it.
    tags: TraceTags,
}

impl OutboundFilter {
    pub fn new(cfg: Rc<OutboundConfig>, revoked: Rc<RefCell<Revocations>>, inflight: Rc<RefCell<Inflight>>, context_id: u32) -> Self {
        OutboundFilter { cfg, revoked, inflight, context_id, pending: None, tags: TraceTags::new() }
    }

    /// The token of the request this call continues, found through the correlation key the app
    /// propagated (our `tracestate` or `baggage` member, or `x-request-id`), where the inbound
    /// side put it. `Err`: that work was revoked since it was accepted.
    fn continued<H: Host>(
        &self,
        host: &H,
        lists: &[Vec<&str>; 2],
        request_id: Option<&str>,
        now: u64,
    ) -> Result<Option<String>, LocalReply> {
        let found = ListHeader::ALL
            .iter()
            .zip(lists)
            .find_map(|(list, v)| correlation::key_in(v).map(|k| (k, Carrier::List(*list))))
            .or_else(|| request_id.filter(|r| correlation::is_key(r)).map(|k| (k, Carrier::RequestId)));
        let Some((key, carrier)) = found else { return Ok(None) };
        let Some(v) = self.cfg.slots.trace.get(host, key) else { return Ok(None) };
        let Some(e) = correlation::decode_record(&v, carrier).filter(|e| cache::fresh(e.exp, now, 0)) else { return Ok(None) };
        if let Some(kind) = self.revoked.borrow().set.matches(&e.handles()) {
            return Err(reply::forbidden(kind.reason(), &format!("the work this call continues belongs to a revoked {}", kind.as_str())));
        }
        Ok(Some(e.token.to_string()))
    }

    pub fn on_request_headers<H: Host>(&mut self, host: &mut H) -> Action {
        let headers = host.request_headers();
        let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        let cfg = Rc::clone(&self.cfg);
        let judging = Judging { enforce: cfg.enforce, trace_tags: cfg.trace_tags };
        let lists = ListHeader::ALL.map(|list| values(&headers, list.name()));
        let dest = match outbound::destination(&cfg, find(":authority").unwrap_or("")) {
            Ok(Some(d)) => d,
            Ok(None) => {
                strip_keys(host, &lists);
                return Action::Continue;
            }
            Err(reply) => {
                strip_keys(host, &lists);
                return refuse(host, "outbound", reply, AuditLine::default(), judging);
            }
        };
        let audience = dest.audience.as_str();
        let now = host.now();
        let about = || AuditLine { audience: Some(audience), ..AuditLine::default() };
        let auth: Vec<&str> = headers.iter().filter(|(n, _)| n == "authorization").map(|(_, v)| v.as_str()).collect();
        // The correlation key is consulted only when the app sent no token itself.
        let recorded = match bearer(&auth) {
            Ok(None) => match self.continued(host, &lists, find("x-request-id"), now) {
                Ok(r) => r,
                Err(reply) => return refuse(host, "outbound", reply, about(), judging),
            },
            _ => None,
        };
        strip_keys(host, &lists);
        let subject = match outbound::subject(&cfg, &auth, recorded) {
            Ok(s) => s,
            Err(reply) => return refuse(host, "outbound", reply, about(), judging),
        };
        let revoked = self.revoked.clone();
        let usable =
            |e: &cache::Entry<'_>, margin: u64| cache::fresh(e.exp, now, margin) && revoked.borrow().set.matches(&e.handles()).is_none();
        let key = cache::exchange_key(subject.cache_input(), audience, &dest.scope_key);
        if let Some(v) = cfg.slots.exchange.get(host, &key) {
            if let Some(e) = cache::Entry::decode(&v).filter(|e| usable(e, cfg.cache_margin_secs)) {
                host.count("actorchain.outbound.cache_hit");
                // Served from cache: the STS never sees this call, so the ledger hears of it here.
                let line = AuditLine {
                    kind: "decision",
                    direction: "outbound",
                    decision: "cache_hit",
                    reason: "granted",
                    sub: Some(e.sub),
                    sub_iss: Some(e.sub_iss),
                    jti: Some(e.jti),
                    sid: Some(e.sid),
                    audience: Some(audience),
                    ..AuditLine::default()
                };
                line.decided(host, now, cfg.trace_tags);
                if cfg.trace_tags {
                    // The entry keeps its chain as text: tagged as it is, not rebuilt for the line.
                    host.set_trace_tag("actorchain.chain", e.agents);
                }
                host.set_request_header("authorization", Some(&format!("Bearer {}", e.token)));
                return Action::Continue;
            }
        }
        host.count("actorchain.outbound.cache_miss");
        let ask = match outbound::scope_to_ask(&subject, dest.scope.as_ref(), audience) {
            Ok(a) => a,
            Err(reply) => return refuse(host, "outbound", reply, about(), judging),
        };
        let leader = self.inflight.borrow_mut().join(&key, self.context_id);
        self.pending = Some(Pending { key: key.clone(), audience: audience.to_string(), leader });
        if !leader {
            return Action::Pause;
        }
        let (hdrs, body) = outbound::token_request(&cfg.sts, &cfg.agent, &subject, audience, ask.as_ref(), find("traceparent"));
        let hdrs: Vec<(&str, &str)> = hdrs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match host.dispatch(&cfg.sts.cluster, cfg.sts.timeout, &hdrs, Some(body.as_bytes())) {
            Ok(_) => Action::Pause,
            Err(why) => {
                // Nobody else can be waiting yet: the join and this failure happen in one callback.
                self.inflight.borrow_mut().finish(&key);
                self.pending = None;
                refuse(host, "outbound", reply::unavailable("sts_unreachable", &why), about(), judging)
            }
        }
    }

    /// The STS answered this request's call (`status` `None`: no response at all). Caches a
    /// granted token and returns the verdict for this request and every request that waited for it.
    pub fn on_sts_reply<H: Host>(&mut self, host: &mut H, status: Option<u32>, body: &[u8]) -> (Verdict, Vec<u32>) {
        let Some(p) = self.pending.take() else {
            return (Verdict::Refuse(reply::unavailable("sts_reply_unexpected", "no exchange was pending")), Vec::new());
        };
        let waiters = self.inflight.borrow_mut().finish(&p.key);
        let verdict = match outbound::read_reply(status, body, host.now(), &p.audience, &self.cfg.agent) {
            Ok(outbound::Exchanged { token, claims }) => {
                let exp = claims.exp;
                let chain: Vec<String> = claims.act.agents_oldest_first().into_iter().map(String::from).collect();
                let agents = chain.join(",");
                let entry = cache::Entry {
                    exp,
                    iat: claims.iat,
                    jti: &claims.jti,
                    sid: &claims.sid,
                    sub_iss: &claims.sub_id.iss,
                    sub: &claims.sub,
                    agents: &agents,
                    token: &token,
                };
                let now = host.now();
                self.cfg.slots.exchange.put(host, &p.key, now, exp, &entry.encode());
                host.count("actorchain.outbound.exchanged");
                let line = AuditLine {
                    kind: "decision",
                    direction: "outbound",
                    decision: "exchanged",
                    reason: "granted",
                    audience: Some(&p.audience),
                    sub: Some(&claims.sub),
                    sub_iss: Some(&claims.sub_id.iss),
                    chain: Some(&chain),
                    jti: Some(&claims.jti),
                    sid: Some(&claims.sid),
                    exp: Some(exp),
                    ..AuditLine::default()
                };
                line.emit(host, now);
                if self.cfg.trace_tags {
                    self.tags = line.trace_tags();
                }
                Verdict::Forward(format!("Bearer {token}"))
            }
            Err(reply) => {
                if reply::is_revocation(&reply) {
                    // The STS knows of a revocation this worker has not seen yet: read the feed now.
                    self.revoked.borrow_mut().wanted = true;
                }
                // Counted and logged as enforced or observed; the verdict reaches every waiter too.
                let about = AuditLine { audience: Some(&p.audience), ..AuditLine::default() };
                if self.cfg.trace_tags {
                    self.tags = refusal_line("outbound", &reply, about.clone(), self.cfg.enforce).trace_tags();
                }
                match record_refusal(host, "outbound", reply, about, Judging { enforce: self.cfg.enforce, trace_tags: false }) {
                    Some(reply) => Verdict::Refuse(reply),
                    None => Verdict::Unchanged,
                }
            }
        };
        (verdict, waiters)
    }

    /// The STS's answer to this request's call, as the host addresses it: ends this request and
    /// every one that waited for the same exchange.
    pub fn on_callout<H: Host>(&mut self, host: &mut H, body_size: usize) {
        let status = host.callout_status();
        // An oversized answer is not read at all: with an empty body it is refused as malformed.
        let body = if body_size <= outbound::MAX_REPLY_BYTES { host.callout_body(body_size) } else { Vec::new() };
        let (verdict, waiters) = self.on_sts_reply(host, status, &body);
        set_tags(host, &self.tags);
        finish(host, &verdict);
        for w in waiters {
            // A waiter whose client went away is simply gone.
            if host.switch_to(w) {
                set_tags(host, &self.tags);
                finish(host, &verdict);
            }
        }
    }

    /// The request is over. If it was to make an exchange others waited for, it never will:
    /// they are refused rather than left hanging.
    pub fn on_done<H: Host>(&mut self, host: &mut H) {
        let Some(p) = self.pending.take().filter(|p| p.leader) else { return };
        let verdict = if self.cfg.enforce {
            Verdict::Refuse(reply::unavailable("exchange_abandoned", "the exchange this request waited for was abandoned; retry"))
        } else {
            Verdict::Unchanged
        };
        for w in self.inflight.borrow_mut().finish(&p.key) {
            if host.switch_to(w) {
                finish(host, &verdict);
            }
        }
    }
}

/// Ends a paused outbound request, the one the host addresses.
fn finish<H: Host>(host: &mut H, verdict: &Verdict) {
    apply(host, verdict);
    if !matches!(verdict, Verdict::Refuse(_)) {
        host.resume_request();
    }
}

/// Every value of a header, in order.
fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

/// Drops our member from the list headers: a key is this workload's alone, never let in from a
/// caller nor out with a call.
fn strip_keys<H: Host>(host: &mut H, lists: &[Vec<&str>; 2]) {
    for (list, v) in ListHeader::ALL.iter().zip(lists) {
        if correlation::has_member(v) {
            host.set_request_header(list.name(), correlation::list_without(v).as_deref());
        }
    }
}
