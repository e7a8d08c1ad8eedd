//! A small OpenTelemetry collector stand-in: takes OTLP/HTTP trace exports in protobuf (`POST
//! /v1/traces`, as Envoy's tracer and the STS send them) and keeps every span, for tests to read.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message;
use tokio::net::TcpListener;

/// One received span; ids in lower-case hex, attribute values as text (arrays joined by `,`).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// The exporter's `service.name`.
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
    /// OTLP status code: 0 unset, 1 ok, 2 error.
    pub status_code: i32,
}

impl Span {
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::ArrayValue(a)) => a.values.iter().map(|v| text(&Some(v.clone()))).collect::<Vec<_>>().join(","),
        _ => String::new(),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every span of one export.
fn spans_of(export: &ExportTraceServiceRequest) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in &export.resource_spans {
        let resource = rs.resource.as_ref().map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            out.push(Span {
                service: service.clone(),
                name: s.name.clone(),
                trace_id: hex(&s.trace_id),
                span_id: hex(&s.span_id),
                parent_span_id: hex(&s.parent_span_id),
                attributes: attributes(&s.attributes),
                status_code: s.status.as_ref().map_or(0, |st| st.code),
            });
        }
    }
    out
}

pub struct Receiver {
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Receiver {
    /// Listens on a loopback port of the kernel's choosing until the process ends.
    pub async fn start() -> Result<Receiver, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let kept = spans.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let status = match ExportTraceServiceRequest::decode(body) {
                                Ok(export) => {
                                    kept.lock().unwrap_or_else(|p| p.into_inner()).extend(spans_of(&export));
                                    200
                                }
                                Err(_) => 400,
                            };
                            // An empty ExportTraceServiceResponse: everything accepted.
                            let mut r = Response::new(Full::new(Bytes::new()));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_REQUEST);
                            r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/x-protobuf"));
                            Ok::<_, Infallible>(r)
                        }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
                });
            }
        });
        Ok(Receiver { addr, spans })
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The spans received once `done` holds of them, or an error naming what had arrived by `timeout`.
    pub async fn wait_for(&self, timeout: Duration, done: impl Fn(&[Span]) -> bool) -> Result<Vec<Span>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return Ok(spans);
            }
            if Instant::now() > deadline {
                let seen: Vec<String> = spans.iter().map(|s| format!("{} {} {:?}", s.service, s.name, s.attributes)).collect();
                return Err(format!("spans received by then:\n{}", seen.join("\n")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
