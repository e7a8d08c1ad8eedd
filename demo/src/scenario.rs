//! Uber's on-call scenario through the demo topology, and the refusals the demo shows.

use std::time::{SystemTime, UNIX_EPOCH};

use actorchain_token::wire::{param, GRANT_TOKEN_EXCHANGE, TT_JWT};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

use crate::topology::Demo;

/// What one run of the chain produced.
#[derive(Debug, Clone)]
pub struct Run {
    pub status: u16,
    /// The token each hop's app was handed, front to back: person's, then one per exchange.
    pub tokens: Vec<String>,
    /// What each hop's sidecar told its app about the caller.
    pub identities: Vec<Value>,
    pub response: Value,
}

/// A fresh W3C trace context, as the front end would start one.
pub fn new_traceparent() -> String {
    let n = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(1);
    format!("00-{:032x}-{:016x}-01", n, n as u64 & 0xffff_ffff_ffff)
}

pub fn tools_call(name: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": {"repo": "oncall-runbooks", "title": "Raise alert threshold"}}})
}

/// The payload of a compact JWS, decoded without verification (the sidecars verified it).
pub fn claims(token: &str) -> Value {
    let t = token.strip_prefix("Bearer ").unwrap_or(token);
    t.split('.').nth(1).and_then(|p| B64.decode(p).ok()).and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Value::Null)
}

/// What the deepest hop answered (each app nests what the next hop answered under `downstream.body`).
pub fn deepest(response: &Value) -> &Value {
    let mut level = response;
    while level["downstream"]["body"].is_object() {
        level = &level["downstream"]["body"];
    }
    level
}

/// The reason the deepest refusing hop gave: a sidecar's refusal, or a JSON-RPC error's.
pub fn refusal_reason(response: &Value) -> String {
    let level = deepest(response);
    level["reason"].as_str().or(level["error"]["data"]["reason"].as_str()).unwrap_or_default().to_string()
}

/// Agents of an `act` chain, oldest first.
pub fn chain(c: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let mut a = &c["act"];
    while let Some(s) = a["sub"].as_str() {
        v.push(s.to_string());
        a = &a["act"];
    }
    v.reverse();
    v
}

/// user1 asks the on-call agent to investigate; it delegates to the investigation agent, which
/// opens a PR through the MCP server. Only the trace context travels with the work between apps.
pub async fn oncall(demo: &Demo, person_token: &str, extra: &[(&str, &str)]) -> Result<Run, String> {
    let tp = new_traceparent();
    let mut headers = vec![("traceparent", tp.as_str())];
    headers.extend_from_slice(extra);
    oncall_calling(demo, person_token, "create_pr", &headers).await
}

/// The on-call chain ending in `tool`, with exactly `headers` (besides the token) from the front end.
pub async fn oncall_calling(demo: &Demo, person_token: &str, tool: &str, headers: &[(&str, &str)]) -> Result<Run, String> {
    oncall_with(demo, person_token, tools_call(tool), headers).await
}

/// The on-call chain with the on-call agent asking the investigation agent (over A2A) for the
/// `escalate` skill rather than `investigate`.
pub async fn escalation(demo: &Demo, person_token: &str) -> Result<Run, String> {
    let mut work = tools_call("create_pr");
    work["skill"] = json!("escalate");
    oncall_with(demo, person_token, work, &[]).await
}

async fn oncall_with(demo: &Demo, person_token: &str, work: Value, headers: &[(&str, &str)]) -> Result<Run, String> {
    let auth = format!("Bearer {person_token}");
    let mut all = vec![("authorization", auth.as_str()), ("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, response) = demo.call("oncall", "frontend", "/investigate", &all, work).await?;
    Ok(Run::from_response(status, response))
}

impl Run {
    /// Each hop's token and identity, read from what every app reported it received.
    pub fn from_response(status: u16, response: Value) -> Run {
        let mut tokens = Vec::new();
        let mut identities = Vec::new();
        let mut level = &response;
        while let Some(received) = level.get("received") {
            if let Some(t) = received["authorization"].as_str() {
                tokens.push(t.trim_start_matches("Bearer ").to_string());
            }
            identities.push(received.clone());
            level = &level["downstream"]["body"];
        }
        Run { status, tokens, identities, response }
    }
}

/// One refusal the demo shows: what was tried, and the answer.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub what: &'static str,
    pub status: u16,
    pub body: Value,
}

/// Things that must not work, given the tokens the investigation agent and the MCP server
/// legitimately received.
pub async fn refusals(demo: &Demo, investigation_token: &str, mcp_token: &str) -> Result<Vec<Refusal>, String> {
    let auth = format!("Bearer {investigation_token}");
    let h = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let (s1, b1) = demo.call("mcp-server", "investigation", "/mcp", &h, tools_call("create_pr")).await?;
    let (s2, b2) = demo.call_egress("oncall", "investigation-agent", "/investigate", &h, tools_call("create_pr")).await?;
    let widen = demo
        .exchange(
            "investigation",
            &[
                (param::GRANT_TYPE, GRANT_TOKEN_EXCHANGE),
                (param::SUBJECT_TOKEN, investigation_token),
                (param::SUBJECT_TOKEN_TYPE, TT_JWT),
                (param::AUDIENCE, "mcp-gateway"),
                (param::CLIENT_ID, "investigation-agent"),
                (param::SCOPE, "repo:write incidents:write"),
            ],
        )
        .await?;
    let mcp_auth = format!("Bearer {mcp_token}");
    let h4 = [("authorization", mcp_auth.as_str()), ("content-type", "application/json")];
    let (s4, b4) = demo.call("mcp-server", "monitoring", "/mcp", &h4, tools_call("create_pr")).await?;
    let user1 = demo.person_token("user1", "incidents:read repo:read repo:write", 600)?;
    let narrowed = oncall_calling(demo, &user1, "list_incidents", &[]).await?;
    let partner = demo.partner_person_token("user1", "incidents:read repo:read repo:write", 600)?;
    let stranger = oncall_calling(demo, &partner, "create_pr", &[]).await?;
    let user2 = demo.person_token("user2", "incidents:read repo:read repo:write", 600)?;
    let escalated = escalation(demo, &user2).await?;
    Ok(vec![
        Refusal { what: "the investigation agent's token replayed straight to the MCP server (another audience)", status: s1, body: b1 },
        Refusal { what: "the same token used by the on-call agent, to whom it was not addressed", status: s2, body: b2 },
        Refusal {
            what: "the investigation agent asking the STS for more scope than it was delegated",
            status: widen.status,
            body: serde_json::from_str(&widen.body).unwrap_or(Value::Null),
        },
        Refusal { what: "the MCP server's own token replayed from the monitoring workload's connection", status: s4, body: b4 },
        Refusal {
            what: "user1's list_incidents through the chain: hop 2 carries only repo:write (least privilege per hop)",
            status: narrowed.status,
            body: deepest(&narrowed.response).clone(),
        },
        Refusal {
            what: "the partner IdP's user1 asking to open a PR (another person than our user1)",
            status: stranger.status,
            body: deepest(&stranger.response).clone(),
        },
        Refusal {
            what: "user2's work sent to the investigation agent over A2A for the escalate skill (user1's sessions only)",
            status: escalated.status,
            body: deepest(&escalated.response).clone(),
        },
    ])
}
