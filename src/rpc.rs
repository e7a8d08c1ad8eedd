//! JSON-RPC 2.0 request bodies of the two agent protocols: MCP over streamable HTTP (tools,
//! resources, prompts) and A2A (agent to agent: `message/send`, `tasks/get`...). What a body asks
//! for, refusals as JSON-RPC errors, and trimming `tools/list` answers. Bodies are bounded in
//! size, depth and batch length; malformed input gets a JSON-RPC error and never a panic.

use serde_json::{json, Value};

use crate::config::McpConfig;
use crate::policy::{Denial, McpMethod, RpcMethod};
use crate::reply::{self, LocalReply};

/// Deepest JSON nesting read from a request body.
const MAX_BODY_DEPTH: usize = 64;
/// JSON-RPC error code for a call the policy refuses (implementation-defined server error range).
const FORBIDDEN: i64 = -32001;

/// Which protocol a body speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Mcp,
    A2a,
}

/// One call in the body that names something to authorize.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// `None` for a notification.
    pub id: Option<Value>,
    pub method: RpcMethod,
    /// The tool or prompt name, resource URI, or A2A skill (`""` when the message names none).
    pub name: String,
}

/// The skill an A2A request names: `params.metadata.skill`, or the message's
/// `params.message.metadata.skill` (A2A leaves skill selection to metadata; this is ours).
fn a2a_skill(params: Option<&Value>) -> &str {
    fn skill(v: Option<&Value>) -> Option<&str> {
        v?.get("metadata")?.get("skill")?.as_str()
    }
    skill(params).or_else(|| skill(params.and_then(|p| p.get("message")))).unwrap_or("")
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    pub calls: Vec<Call>,
    pub lists_tools: bool,
    pub batch: bool,
    /// Ids of every request in the body, to answer each in a refused batch.
    pub ids: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Parse,
    Invalid(&'static str),
}

pub fn parse(body: &[u8], cfg: &McpConfig, protocol: Protocol) -> Result<Request, BodyError> {
    if body.len() > cfg.max_body_bytes {
        return Err(BodyError::TooLarge);
    }
    actorchain_token::check_json_depth(body, MAX_BODY_DEPTH).map_err(|_| BodyError::Parse)?;
    let v: Value = serde_json::from_slice(body).map_err(|_| BodyError::Parse)?;
    let (items, batch) = match v {
        Value::Array(a) if a.is_empty() => return Err(BodyError::Invalid("empty batch")),
        Value::Array(a) if a.len() > cfg.max_batch => return Err(BodyError::Invalid("batch too long")),
        Value::Array(a) => (a, true),
        other => (vec![other], false),
    };
    let mut req = Request { batch, ..Default::default() };
    for item in &items {
        let Some(obj) = item.as_object() else { return Err(BodyError::Invalid("not a JSON-RPC object")) };
        if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(BodyError::Invalid("jsonrpc must be \"2.0\""));
        }
        let id = obj.get("id").cloned();
        if let Some(id) = &id {
            req.ids.push(id.clone());
        }
        // Responses and results sent by the client (no `method`) name nothing to authorize.
        let Some(method) = obj.get("method") else { continue };
        let Some(method) = method.as_str() else { return Err(BodyError::Invalid("method must be a string")) };
        if protocol == Protocol::A2a {
            // Every A2A request is judged: by its method and the skill it names.
            req.calls.push(Call { id, method: RpcMethod::A2a(method.to_string()), name: a2a_skill(obj.get("params")).to_string() });
            continue;
        }
        if method == "tools/list" {
            req.lists_tools = true;
        }
        let Some(m) = McpMethod::parse(method) else { continue };
        let field = if m == McpMethod::ResourcesRead { "uri" } else { "name" };
        let Some(name) = obj.get("params").and_then(|p| p.get(field)).and_then(Value::as_str) else {
            return Err(BodyError::Invalid("params must name the tool, resource or prompt"));
        };
        req.calls.push(Call { id, method: RpcMethod::Mcp(m), name: name.to_string() });
    }
    Ok(req)
}

fn rpc_error(id: Value, code: i64, message: &str, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message, "data": data}})
}

/// 403 with `WWW-Authenticate: Bearer error="insufficient_scope"` and a JSON-RPC error carrying
/// the request's id (every id, for a batch), the reason and the rule.
pub fn refusal(req: &Request, call: &Call, denial: &Denial, scope: &str) -> LocalReply {
    let mut r = reply::insufficient_scope(denial.reason, &denial.detail, scope);
    let data = json!({"reason": denial.reason, "rule": denial.rule, "name": call.name});
    let message = format!("forbidden: {}", denial.detail);
    r.body = if req.batch {
        Value::Array(req.ids.iter().map(|id| rpc_error(id.clone(), FORBIDDEN, &message, data.clone())).collect()).to_string()
    } else {
        rpc_error(call.id.clone().unwrap_or(Value::Null), FORBIDDEN, &message, data).to_string()
    };
    r
}

/// 400 (or 413) with the JSON-RPC error for a body that cannot be read.
pub fn bad_body(e: BodyError) -> LocalReply {
    let (status, code, reason, message) = match e {
        BodyError::TooLarge => (413, -32600, "body_too_large", "request body too large"),
        BodyError::Parse => (400, -32700, "body_malformed", "parse error"),
        BodyError::Invalid(why) => (400, -32600, "body_invalid", why),
    };
    let mut r = reply::invalid_request(reason, message);
    r.status = status;
    r.body = rpc_error(Value::Null, code, message, json!({"reason": reason})).to_string();
    r
}

/// A `tools/list` answer with only the tools `allowed` keeps; `None` when there is nothing to
/// change or the answer is not a single JSON-RPC result with a tool list.
pub fn filter_tools_list(body: &[u8], allowed: impl Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let tools = v.get_mut("result")?.get_mut("tools")?.as_array_mut()?;
    let before = tools.len();
    tools.retain(|t| t.get("name").and_then(Value::as_str).is_some_and(&allowed));
    (tools.len() != before).then(|| v.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> McpConfig {
        McpConfig { path_prefix: "/mcp".into(), max_body_bytes: 1024, max_batch: 3, filter_tools_list: true }
    }

    #[test]
    fn reads_calls_batches_and_notifications() {
        let one = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_pr"}}"#;
        let r = parse(one, &cfg(), Protocol::Mcp).unwrap();
        assert_eq!(r.calls, vec![Call { id: Some(json!(7)), method: RpcMethod::Mcp(McpMethod::ToolsCall), name: "create_pr".into() }]);
        let batch = br#"[{"jsonrpc":"2.0","id":"a","method":"resources/read","params":{"uri":"file:///x"}},
                         {"jsonrpc":"2.0","method":"prompts/get","params":{"name":"p"}},
                         {"jsonrpc":"2.0","id":2,"method":"tools/list"}]"#;
        let r = parse(batch, &cfg(), Protocol::Mcp).unwrap();
        assert!(r.batch && r.lists_tools);
        assert_eq!(r.calls.len(), 2);
        assert_eq!(r.calls[1].id, None, "a notification has no id");
        assert_eq!(r.ids, vec![json!("a"), json!(2)]);
        assert!(parse(br#"{"jsonrpc":"2.0","id":1,"method":"initialize"}"#, &cfg(), Protocol::Mcp).unwrap().calls.is_empty());
    }

    #[test]
    fn reads_a2a_methods_and_skills() {
        let send = br#"{"jsonrpc":"2.0","id":"m1","method":"message/send","params":{"message":{"role":"user","parts":[],"metadata":{"skill":"investigate"}}}}"#;
        let r = parse(send, &cfg(), Protocol::A2a).unwrap();
        assert_eq!(
            r.calls,
            vec![Call { id: Some(json!("m1")), method: RpcMethod::A2a("message/send".into()), name: "investigate".into() }]
        );
        let get = br#"{"jsonrpc":"2.0","id":2,"method":"tasks/get","params":{"id":"t1"}}"#;
        assert_eq!(parse(get, &cfg(), Protocol::A2a).unwrap().calls[0].name, "", "no skill named");
        let top = br#"{"jsonrpc":"2.0","id":3,"method":"message/stream","params":{"metadata":{"skill":"triage"},"message":{}}}"#;
        assert_eq!(parse(top, &cfg(), Protocol::A2a).unwrap().calls[0].name, "triage");
    }

    #[test]
    fn malformed_bodies_are_refused_not_crashed_on() {
        for (body, e) in [
            (&b"{not json"[..], BodyError::Parse),
            (b"[]", BodyError::Invalid("empty batch")),
            (br#"[1,2,3,4]"#, BodyError::Invalid("batch too long")),
            (br#"[1]"#, BodyError::Invalid("not a JSON-RPC object")),
            (br#"{"jsonrpc":"1.0","method":"x"}"#, BodyError::Invalid("jsonrpc must be \"2.0\"")),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                BodyError::Invalid("params must name the tool, resource or prompt"),
            ),
            (br#"{"jsonrpc":"2.0","id":1,"method":7}"#, BodyError::Invalid("method must be a string")),
        ] {
            assert_eq!(parse(body, &cfg(), Protocol::Mcp), Err(e), "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(parse(&[b'['; 2000], &cfg(), Protocol::Mcp), Err(BodyError::TooLarge));
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse(deep.as_bytes(), &McpConfig { max_body_bytes: 4096, ..cfg() }, Protocol::Mcp), Err(BodyError::Parse));
        let r = bad_body(BodyError::Parse);
        assert_eq!(r.status, 400);
        assert!(r.body.contains("-32700"));
    }

    #[test]
    fn refusals_are_json_rpc_errors_with_the_request_id() {
        let req = parse(br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"create_pr"}}"#, &cfg(), Protocol::Mcp).unwrap();
        let d =
            Denial { rule: "create-pr".into(), reason: "chain_missing_agent", detail: "the chain must pass through oncall-agent".into() };
        let r = refusal(&req, &req.calls[0], &d, "repo:write");
        assert_eq!(r.status, 403);
        assert!(r.headers.iter().any(|(k, v)| *k == "www-authenticate" && v.contains("insufficient_scope")));
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!((v["id"].clone(), v["error"]["data"]["rule"].clone()), (json!(7), json!("create-pr")));
    }

    #[test]
    fn trims_tool_lists() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"create_pr"},{"name":"read_logs"}]}}"#;
        let out = filter_tools_list(body, |n| n == "read_logs").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["result"]["tools"], json!([{"name": "read_logs"}]));
        assert_eq!(filter_tools_list(body, |_| true), None);
        assert_eq!(filter_tools_list(b"event: message", |_| false), None);
    }
}
