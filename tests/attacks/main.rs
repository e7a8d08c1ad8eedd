//! Attacks against the token rules, sent for real: each hostile token goes to the investigation
//! agent's Envoy sidecar (inbound filter, presented over mTLS by the on-call workload the token
//! names) and, as `subject_token`, to the STS's `/token` (presented by the investigation
//! workload). Every outcome is compared with the expected one and the whole table is what
//! `docs/hardening-attacks.md` says; `make hardening-docs` rewrites it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actorchain_demo::hostile::{self, der_signature, non_canonical_s, Forge, Row, P256_N};
use actorchain_demo::scenario::tools_call;
use actorchain_demo::topology::{Demo, Paths, Tuning};
use actorchain_sts::dev;
use actorchain_sts::https_client::{Connection, Reply};
use actorchain_token::wire::{GRANT_TOKEN_EXCHANGE as TOKEN_EXCHANGE, TT_JWT};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};

mod ecdsa;
mod filter_requests;
mod sts_requests;
mod tokens;

use ecdsa::{ecdsa_filter_rows, ecdsa_sts_rows};
use filter_requests::{borrowing_rows, kid_storm_row, nested_act_row, revocation_rows};
use sts_requests::request_rows;
use tokens::{token_cases, token_rows};

/// What a target is expected to answer: an HTTP status and the machine-readable reason.
#[derive(Clone, Copy)]
struct Expect(u16, &'static str);

impl Expect {
    fn show(self) -> String {
        format!("{} {}", self.0, self.1)
    }
}

const ACCEPTED: Expect = Expect(200, "accepted");
const GRANTED: Expect = Expect(200, "granted");

fn deny(reason: &'static str) -> (Option<Expect>, Option<Expect>) {
    (Some(Expect(401, reason)), Some(Expect(400, reason)))
}

struct Case {
    id: &'static str,
    attack: String,
    /// `Authorization` values sent to the sidecar, as bytes (some are not UTF-8 on purpose).
    authorization: Vec<Vec<u8>>,
    subject: Option<String>,
    filter: Option<Expect>,
    sts: Option<Expect>,
}

fn token_case(id: &'static str, attack: &str, token: String, (filter, sts): (Option<Expect>, Option<Expect>)) -> Case {
    Case { id, attack: attack.to_string(), authorization: vec![format!("Bearer {token}").into_bytes()], subject: Some(token), filter, sts }
}

fn header_case(id: &'static str, attack: &str, values: Vec<Vec<u8>>, expect: Expect) -> Case {
    Case { id, attack: attack.to_string(), authorization: values, subject: None, filter: Some(expect), sts: None }
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

/// Replaces `"key":<value as serialized>` in the JSON text with `replacement` text.
fn raw_member(v: &Value, key: &str, replacement: &str) -> String {
    let text = v.to_string();
    let old = format!("\"{key}\":{}", v[key]);
    assert!(text.contains(&old), "{key} not found in {text}");
    text.replace(&old, replacement)
}

/// Status and reason of a sidecar reply: the filter's JSON, its JSON-RPC refusal for MCP, or a
/// reply Envoy itself made before any filter ran.
fn filter_outcome(r: &Reply) -> String {
    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    let reason = v["reason"].as_str().or(v["error"]["data"]["reason"].as_str());
    match (r.status, reason) {
        // The app answered: whatever happened further down the chain, this sidecar let it in.
        (_, _) if v["agent"].is_string() => ACCEPTED.show(),
        (431, None) => "431 envoy_header_limit".to_string(),
        (s, Some(reason)) => {
            // RFC 6750: every 401 carries the challenge, with the error code when a token was sent.
            if s == 401 && !r.www_authenticate.as_deref().is_some_and(|c| c.starts_with("Bearer")) {
                return format!("{s} {reason} without WWW-Authenticate");
            }
            format!("{s} {reason}")
        }
        (s, None) => format!("{s} {}", r.body.chars().take(60).collect::<String>()),
    }
}

fn sts_outcome(r: &Reply) -> String {
    let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
    match (r.status, v["actorchain_reason"].as_str()) {
        (200, _) if v["access_token"].is_string() => GRANTED.show(),
        (s, Some(reason)) if v["error"].is_string() => format!("{s} {reason}"),
        (s, _) => format!("{s} {}", r.body.chars().take(60).collect::<String>()),
    }
}

async fn at_filter(demo: &Demo, values: &[Vec<u8>]) -> String {
    let mut conn = demo.ingress("investigation", "oncall").await.unwrap();
    let mut headers: Vec<(&str, &[u8])> = values.iter().map(|v| ("authorization", v.as_slice())).collect();
    headers.push(("content-type", b"application/json"));
    let body = tools_call("create_pr").to_string().into_bytes();
    match conn.request_raw("POST", "/investigate", &headers, body).await {
        Ok(r) => filter_outcome(&r),
        Err(e) => format!("no reply: {e}"),
    }
}

async fn at_sts(conn: &mut Connection, params: &[(&str, &str)]) -> String {
    sts_outcome(&conn.post_form("/token", params).await.unwrap())
}

fn exchange_params(subject: &str) -> Vec<(&str, &str)> {
    vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", TT_JWT),
        ("audience", "mcp-gateway"),
        ("client_id", "investigation-agent"),
    ]
}

/// Counts connections to a port an attacker would own; nothing may ever connect.
fn canary() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for _ in l.incoming() {
            h.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

fn row(id: &str, attack: &str, target: &'static str, expected: String, observed: String) -> Row {
    Row { id: id.to_string(), attack: attack.to_string(), target, expected, observed }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_is_refused_for_the_named_reason() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let demo = Demo::start(Paths::workspace(&root, "debug", work.path().to_path_buf())).await.expect("demo topology starts");
    let f = Forge::read(&demo.dev, actorchain_sts::server::unix_now()).unwrap();
    let (canary_port, canary_hits) = canary();

    let mut rows = token_rows(&demo, &f, canary_port).await;
    rows.extend(ecdsa_sts_rows(&demo, &f).await);
    rows.extend(ecdsa_filter_rows(&root).await);
    rows.extend(request_rows(&demo, &f).await);
    rows.push(nested_act_row(&demo, &f).await);
    rows.extend(revocation_rows(&demo, &f).await);
    rows.extend(borrowing_rows(&demo, &f).await);
    rows.push(kid_storm_row(&demo, &f).await);
    let hits = canary_hits.load(Ordering::SeqCst);
    rows.push(row(
        "no-fetch",
        "`jku`/`x5u` URLs above: connections the attacker's server received",
        "both",
        "0 connections".into(),
        format!("{hits} connections"),
    ));

    let failed: Vec<String> = rows
        .iter()
        .filter(|r| !r.passed())
        .map(|r| format!("{} @{}: expected {}, observed {}", r.id, r.target, r.expected, r.observed))
        .collect();
    assert!(failed.is_empty(), "{} of {} cases did not go as expected:\n{}", failed.len(), rows.len(), failed.join("\n"));
    let doc = hostile::render(
        "Hardening: attacks",
        "Written by `tests/attacks.rs` from what real Envoy (with the actorchain filter) and the real STS answered; \
         the test fails when an outcome or this file differs. Filter: the investigation agent's sidecar, token presented \
         over mTLS by the workload it names. STS: `/token` with the token as `subject_token`, from the investigation workload.",
        &rows,
    );
    hostile::check_doc(&root.join("docs/hardening-attacks.md"), &doc).unwrap();
}

/// Rolling out: with every sidecar observing only (`"enforce": false`), each token and header
/// attack of the table above reaches the app, and is counted under exactly the reason an
/// enforcing sidecar refuses it with; the same sidecar enforcing refuses them (the test above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observed_only_every_token_attack_reaches_the_app_counted_with_its_reason() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let tuning = Tuning { enforce: Some(false), ..Tuning::default() };
    let demo = Demo::start_tuned(Paths::workspace(&root, "debug", work.path().to_path_buf()), tuning).await.expect("demo topology starts");
    let f = Forge::read(&demo.dev, actorchain_sts::server::unix_now()).unwrap();
    let (canary_port, _) = canary();
    let w = demo.workload("investigation").unwrap().clone();
    let (mut observed_cases, mut wrong, mut reasons) = (0, Vec::new(), std::collections::BTreeSet::new());
    for case in token_cases(&f, canary_port) {
        // Envoy's own header limit answers before any filter runs, observing or not.
        let Some(expect) = case.filter.filter(|e| e.0 != 200 && e.0 != 431) else { continue };
        let counter = format!("actorchain.inbound.would_refuse.{}$", expect.1);
        let before = demo.counter(&w, &counter).await;
        let outcome = at_filter(&demo, &case.authorization).await;
        let counted = demo.counter(&w, &counter).await - before;
        if outcome != ACCEPTED.show() || counted != 1 {
            wrong.push(format!("{}: {outcome}, would_refuse.{} counted {counted} times", case.id, expect.1));
        }
        observed_cases += 1;
        reasons.insert(expect.1);
    }
    assert!(observed_cases > 80, "only {observed_cases} cases");
    // The operator's report lists every one of those reasons.
    let sts_bin = Paths::workspace(&root, "debug", work.path().to_path_buf()).sts_bin;
    let out = std::process::Command::new(sts_bin).arg("would-refuse").arg(work.path().join("envoy/investigation.log")).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    for reason in reasons {
        if !report.lines().any(|l| l.contains("inbound") && l.ends_with(reason)) {
            wrong.push(format!("{reason} missing from the would-refuse report"));
        }
    }
    assert!(wrong.is_empty(), "{} of {observed_cases} observed attacks went otherwise:\n{}", wrong.len(), wrong.join("\n"));
}
