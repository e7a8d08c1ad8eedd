//! The STS's HTTP interface as one in-process function: a request and the peer the TLS layer
//! authenticated in, a response out. The listeners (`server`) only accept connections; tests
//! call `app` directly. Every error body comes from `ExchangeError`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA};
use hyper::{Method, Request, Response, StatusCode};

use crate::error::{ExchangeError, OAuthCode};
use actorchain_token::wire::{MAX_REPORTS_BYTES, REPORTS_PATH};

use crate::form::MAX_FORM_BYTES;
use crate::state::{unix_now, Sts};

pub type Body = Full<Bytes>;

/// Who the TLS layer says is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// No client certificate: only a JWT-SVID actor token can authenticate this caller.
    Anonymous,
    Workload(String),
    /// A certificate that chains to the bundle but is not a usable X.509-SVID.
    Invalid(String),
}

fn json(status: u16, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An error reply: every refusal of every endpoint is an `ExchangeError` (RFC 6749 §5.2 body
/// with `actorchain_reason`).
fn refused(e: &ExchangeError) -> Response<Body> {
    json(e.status(), e.body())
}

fn no_store(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// A request body of at most `MAX_FORM_BYTES`.
async fn body<B>(req: Request<B>) -> Result<bytes::Bytes, ExchangeError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    body_of_at_most(req, MAX_FORM_BYTES).await
}

async fn body_of_at_most<B>(req: Request<B>, limit: usize) -> Result<bytes::Bytes, ExchangeError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Limited::new(req.into_body(), limit).collect().await.map(|b| b.to_bytes()).map_err(|_| {
        ExchangeError::new(OAuthCode::InvalidRequest, "body_too_large", format!("request body exceeds {limit} bytes")).with_status(413)
    })
}

fn is_form<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")))
}

/// Answers one request from `peer`.
pub async fn app<B>(sts: &Sts, req: Request<B>, peer: &Peer) -> Response<Body>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let admin_only =
        || ExchangeError::new(OAuthCode::AccessDenied, "admin_required", "admin endpoints need an admin SVID named in admin_ids");
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/token") => {
            if !is_form(&req) {
                let e = ExchangeError::new(OAuthCode::InvalidRequest, "content_type_unsupported", "send application/x-www-form-urlencoded");
                return no_store(refused(&e.with_status(415)));
            }
            // Read only when spans are made; the body consumes the request.
            let traceparent =
                sts.telemetry.enabled().then(|| req.headers().get("traceparent").and_then(|v| v.to_str().ok()).map(String::from)).flatten();
            match body(req).await {
                Ok(b) => {
                    let (status, answer) = sts.exchange(&b, peer, traceparent.as_deref(), unix_now()).await;
                    no_store(json(status, answer))
                }
                Err(e) => no_store(refused(&e)),
            }
        }
        (_, "/token") => {
            let e = ExchangeError::new(OAuthCode::InvalidRequest, "method_not_allowed", "use POST").with_status(405);
            let mut r = no_store(refused(&e));
            r.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
            r
        }
        (&Method::POST, "/revoke") => match body(req).await {
            Ok(b) => match sts.revoke_token(&b, peer, unix_now()).await {
                Ok(()) => no_store(json(200, "{}".into())),
                Err(e) => no_store(refused(&e)),
            },
            Err(e) => no_store(refused(&e)),
        },
        (&Method::POST, "/admin/revocations") if sts.is_admin(peer) => match body(req).await {
            Ok(b) => match sts.revocation_request(&b, peer, unix_now()).await {
                Ok(entry) => json(200, actorchain_token::to_json(&entry)),
                Err(e) => refused(&e),
            },
            Err(e) => refused(&e),
        },
        (&Method::POST, "/admin/revocations/lift") if sts.is_admin(peer) => match body(req).await {
            Ok(b) => match sts.lift_request(&b, peer, unix_now()).await {
                Ok(entry) => json(200, actorchain_token::to_json(&entry)),
                Err(e) => refused(&e),
            },
            Err(e) => refused(&e),
        },
        (&Method::POST, REPORTS_PATH) => match body_of_at_most(req, MAX_REPORTS_BYTES).await {
            Ok(b) => match sts.take_reports(&b, peer).await {
                Ok(n) => json(200, format!("{{\"taken\":{n}}}")),
                Err(e) => refused(&e),
            },
            Err(e) => refused(&e),
        },
        (&Method::POST, "/admin/ledger/checkpoint") if sts.is_admin(peer) => match sts.checkpoint(unix_now()) {
            Ok(file) => no_store(json(200, actorchain_token::to_json(&file))),
            Err(e) => refused(&ExchangeError::new(OAuthCode::ServerError, "ledger_unavailable", e).with_status(503)),
        },
        (&Method::GET, "/admin/ledger") if sts.is_admin(peer) => match sts.ledger_query(req.uri().query().unwrap_or("")) {
            Ok(v) => json(200, v.to_string()),
            Err(e) => refused(&e),
        },
        (_, "/admin/revocations") | (_, "/admin/revocations/lift") | (_, "/admin/ledger") | (_, "/admin/ledger/checkpoint") => {
            refused(&admin_only())
        }
        (&Method::GET, "/revocations") if matches!(peer, Peer::Workload(_)) => {
            let since = req
                .uri()
                .query()
                .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "since").and_then(|(_, v)| v.parse().ok()))
                .unwrap_or(0);
            no_store(json(200, actorchain_token::to_json(&sts.revocations.feed(since, unix_now()))))
        }
        (_, "/revocations") => {
            refused(&ExchangeError::new(OAuthCode::InvalidClient, "workload_unauthenticated", "present a workload SVID"))
        }
        (&Method::GET, "/.well-known/jwks.json") => {
            let mut r = json(200, sts.jwks());
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("max-age=60"));
            r
        }
        (&Method::GET, "/.well-known/ledger-keys.json") => {
            let mut r = json(200, sts.ledger_key.published().to_jwks());
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
            r
        }
        (&Method::GET, "/.well-known/oauth-authorization-server") => json(200, sts.metadata()),
        _ => refused(&ExchangeError::new(OAuthCode::NotFound, "not_found", "no such endpoint")),
    }
}

/// A compiled-in file of the lineage page, under its content security policy.
fn page_file(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("content-security-policy", HeaderValue::from_static(crate::lineage::CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r
}

/// The lineage page's data: the ledger's, so never cached.
fn lineage_data(answer: Result<String, String>) -> Response<Body> {
    match answer {
        Ok(body) => no_store(json(200, body)),
        Err(e) => refused(&ExchangeError::new(OAuthCode::InvalidRequest, "lineage_query_invalid", e)),
    }
}

/// The admin listener (plain HTTP, for probes, scrapers and, when configured, the lineage page):
/// health, readiness, metrics. `host` is the request's `Host`.
pub fn health(sts: &Sts, path: &str, query: &str, host: Option<&str>) -> Response<Body> {
    if path.starts_with("/lineage") && sts.lineage_page() && !crate::lineage::host_allowed(host) {
        return refused(&ExchangeError::new(OAuthCode::AccessDenied, "host_not_allowed", "open the lineage page by address, not by name"));
    }
    match path {
        "/lineage" if sts.lineage_page() => page_file("text/html; charset=utf-8", crate::lineage::PAGE),
        "/lineage/app.js" if sts.lineage_page() => page_file("text/javascript; charset=utf-8", crate::lineage::SCRIPT),
        "/lineage/app.css" if sts.lineage_page() => page_file("text/css; charset=utf-8", crate::lineage::STYLE),
        "/lineage/sessions" if sts.lineage_page() => lineage_data(sts.lineage_sessions(query, unix_now())),
        "/lineage/session" if sts.lineage_page() => lineage_data(sts.lineage_session(query)),
        "/healthz" => json(200, r#"{"status":"ok"}"#.into()),
        "/readyz" if sts.can_sign(unix_now()) => json(200, r#"{"status":"ready"}"#.into()),
        "/readyz" => json(503, r#"{"status":"no signing key"}"#.into()),
        "/metrics" => {
            let mut r = Response::new(Full::new(Bytes::from(sts.metrics.render())));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        _ => refused(&ExchangeError::new(OAuthCode::NotFound, "not_found", "no such endpoint")),
    }
}
