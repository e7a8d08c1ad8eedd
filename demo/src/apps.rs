//! The toy apps behind the sidecars. They contain no auth code: an agent forwards what it is asked
//! to its next hop through its own sidecar's egress listener, propagating only the trace context
//! (`traceparent`, `tracestate`, `baggage`, `x-request-id`),
//! and reports what it received so the demo can show each hop's token; the MCP server answers
//! JSON-RPC `tools/call` and reports the identity its sidecar handed it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};

/// Where an agent sends its work: its sidecar's egress listener, the destination's name, and
/// which of the incoming request's headers go along (its trace context; never the token).
#[derive(Debug, Clone)]
pub struct Next {
    pub egress: SocketAddr,
    pub authority: String,
    pub path: String,
    pub propagates: &'static [&'static str],
    /// The next hop is an agent spoken to over A2A: the work goes as a data part of
    /// `message/send`, naming a skill (the work's `skill` member, else `investigate`).
    pub a2a: bool,
}

/// The A2A `message/send` carrying `work` (JSON) for `skill`.
fn a2a_message(work: &Value) -> Value {
    let skill = work.get("skill").and_then(Value::as_str).unwrap_or("investigate");
    json!({"jsonrpc": "2.0", "id": work.get("id").cloned().unwrap_or(json!(1)), "method": "message/send",
           "params": {"message": {"role": "user", "messageId": "m-1", "parts": [{"kind": "data", "data": work}],
                                  "metadata": {"skill": skill}}}})
}

/// The work an A2A `message/send` carries in its first data part; other bodies are the work.
fn work_of(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v["params"]["message"]["parts"][0]["data"].clone() {
        Value::Null => v,
        work if v["method"] == "message/send" => work,
        _ => v,
    }
}

const SHOWN: [&str; 5] = ["authorization", "traceparent", "tracestate", "baggage", "x-request-id"];
/// What an agent propagates to its next hop by default: the W3C trace context and baggage (as
/// OpenTelemetry SDKs do) and `x-request-id`.
pub const TRACE_CONTEXT: &[&str] = &["traceparent", "tracestate", "baggage", "x-request-id"];
/// What an app with a tracing library that knows no baggage propagates.
pub const TRACE_CONTEXT_ONLY: &[&str] = &["traceparent", "tracestate", "x-request-id"];
/// What an app that knows only request ids propagates.
pub const REQUEST_ID_ONLY: &[&str] = &["x-request-id"];
/// The toy MCP server's tools; its sidecar decides who may see and call which.
pub const TOOLS: [&str; 3] = ["create_pr", "read_metrics", "list_incidents"];

/// Whether a framework that folds `_` into `-` (CGI/WSGI style) would read a header as identity.
fn read_as_identity(name: &str) -> bool {
    name.replace('_', "-").to_ascii_lowercase().starts_with("x-actorchain-")
}

/// The headers the sidecar handed over: the token, the trace context, and every header the app
/// could take for identity.
fn received(req: &Request<Incoming>) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in req.headers() {
        let k = k.as_str();
        if SHOWN.contains(&k) || read_as_identity(k) {
            m.insert(k.to_string(), json!(v.to_str().unwrap_or("")));
        }
    }
    Value::Object(m)
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    r
}

/// A plain HTTP/1.1 request on a fresh connection; the answer's status and body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, Bytes), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("{addr}: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path).header("host", authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send.send_request(req.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

async fn agent(name: String, next: Option<Next>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let seen = received(&req);
    let propagates = next.as_ref().map_or(&[][..], |n| n.propagates);
    let trace: Vec<(String, String)> = propagates
        .iter()
        .filter_map(|h| req.headers().get(*h).and_then(|v| v.to_str().ok()).map(|v| (h.to_string(), v.to_string())))
        .collect();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let Some(next) = next else {
        return reply(200, json!({"agent": name, "received": seen}));
    };
    let mut headers: Vec<(&str, &str)> = trace.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    headers.push(("content-type", "application/json"));
    let work = work_of(&body);
    let out = if next.a2a { a2a_message(&work) } else { work };
    match http(next.egress, "POST", &next.authority, &next.path, &headers, out.to_string().into_bytes()).await {
        Ok((status, b)) => {
            let downstream = serde_json::from_slice::<Value>(&b).unwrap_or_else(|_| json!(String::from_utf8_lossy(&b)));
            reply(status, json!({"agent": name, "received": seen, "downstream": {"status": status, "body": downstream}}))
        }
        Err(e) => reply(502, json!({"agent": name, "received": seen, "downstream": {"error": e}})),
    }
}

async fn mcp(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let seen = received(&req);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let Ok(rpc) = serde_json::from_slice::<Value>(&body) else {
        return reply(400, json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "parse error"}}));
    };
    let id = rpc.get("id").cloned().unwrap_or(Value::Null);
    if rpc["method"] == "tools/list" {
        let tools: Vec<Value> = TOOLS.iter().map(|t| json!({"name": t, "inputSchema": {"type": "object"}})).collect();
        return reply(200, json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools}}));
    }
    if rpc["method"] != "tools/call" {
        return reply(200, json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "method not found"}}));
    }
    let who = seen.get("x-actorchain-sub").and_then(Value::as_str).unwrap_or("nobody");
    let chain = seen.get("x-actorchain-chain").and_then(Value::as_str).unwrap_or("");
    let text = format!("{} done for {who} via {chain}", rpc["params"]["name"].as_str().unwrap_or("?"));
    reply(200, json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": text}]}, "received": seen}))
}

/// Serves a toy agent (with `next`) or the toy MCP server (without) until the process ends.
pub async fn serve(listener: TcpListener, name: String, next: Option<Next>, is_mcp: bool) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (name, next) = (name.clone(), next.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (name, next) = (name.clone(), next.clone());
                async move {
                    Ok::<_, Infallible>(match (req.method().as_str(), req.uri().path()) {
                        // What probes and A2A discovery ask for; the sidecars let them through untouched.
                        ("GET", "/healthz") => reply(200, json!({"status": "ok", "received": received(&req)})),
                        ("GET", "/.well-known/agent-card.json") => reply(200, json!({"name": name, "skills": []})),
                        _ if is_mcp => mcp(req).await,
                        _ => agent(name, next, req).await,
                    })
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}
