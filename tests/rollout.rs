//! Rolling out into a mesh that already runs agents, in real Envoy: with every filter observing
//! only, hostile and missing tokens all reach the apps, each counted and logged with the reason
//! enforcement would give, and `actorchain-sts would-refuse` lists them; probe and discovery paths
//! need no token, while enforcement is on or off. With a collector configured, the spans of one
//! request through three hops (Envoy's, tagged with the filters' decisions, and the STS's) form
//! one trace with the right parents.

use std::path::PathBuf;
use std::time::Duration;

use actorchain_demo::hostile::Forge;
use actorchain_demo::otlp::{Receiver, Span};
use actorchain_demo::scenario::{oncall_calling, tools_call};
use actorchain_demo::topology::{Demo, Paths, Tuning};
use actorchain_token::wire::ExchangeRequest;
use serde_json::json;

async fn start(tuning: Tuning) -> (Demo, tempfile::TempDir) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let demo = Demo::start_tuned(Paths::workspace(&root, "debug", work.path().to_path_buf()), tuning).await.expect("demo topology starts");
    (demo, work)
}

/// Hostile tokens and the reason an enforcing sidecar refuses each with (as in the attack table).
fn hostile(f: &Forge) -> Vec<(Option<String>, &'static str)> {
    let c = f.claims("observed");
    let mut expired = c.clone();
    (expired["iat"], expired["nbf"], expired["exp"]) = (json!(f.now - 600), json!(f.now - 600), json!(f.now - 120));
    let mut elsewhere = c.clone();
    elsewhere["aud"] = json!("mcp-gateway");
    let mut none = f.header();
    none["alg"] = json!("none");
    vec![
        (None, "token_missing"),
        (Some("garbage".into()), "token_malformed"),
        (Some(f.sign(&f.header(), &expired)), "token_expired"),
        (Some(f.sign(&f.header(), &elsewhere)), "audience_mismatch"),
        (Some(f.with_signature(&none, &c, b"")), "alg_not_allowed"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_only_lets_everything_through_and_reports_what_it_would_refuse() {
    let (demo, work) = start(Tuning { enforce: Some(false), ..Tuning::default() }).await;
    let f = Forge::read(&demo.dev, actorchain_sts::server::unix_now()).unwrap();
    let w = demo.workload("investigation").unwrap().clone();
    for (token, reason) in hostile(&f) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            h.push(("authorization", a.as_str()));
        }
        let (status, body) = demo.call("investigation", "oncall", "/investigate", &h, tools_call("create_pr")).await.unwrap();
        // The app answered (whatever the chain behind it did): the sidecar let the request in.
        assert!(body["agent"].is_string(), "{reason}: {status} {body}");
        assert!(body["received"].get("x-actorchain-sub").is_none(), "{reason}: no identity without a valid token");
        assert!(demo.counter(&w, &format!("actorchain.inbound.would_refuse.{reason}")).await >= 1, "{reason} not counted");
    }
    // The report lists each with its reason.
    let sts_bin = Paths::workspace(&PathBuf::from(env!("CARGO_MANIFEST_DIR")), "debug", work.path().to_path_buf()).sts_bin;
    let out = std::process::Command::new(sts_bin).arg("would-refuse").arg(work.path().join("envoy/investigation.log")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    for (_, reason) in hostile(&f) {
        assert!(report.lines().any(|l| l.contains("inbound") && l.ends_with(reason)), "{reason} missing from:\n{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_three_hops_with_the_sts_decisions_in_it() {
    let otlp = Receiver::start().await.unwrap();
    let (demo, _work) = start(Tuning { otlp: Some(otlp.addr), ..Tuning::default() }).await;
    // The front end's own span starts the trace.
    let trace = format!("{:032x}", actorchain_sts::server::unix_now() as u128 * 7919 + 1);
    let front = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace}-{front}-01");
    let person = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let run = oncall_calling(&demo, &person, "create_pr", &[("traceparent", &traceparent)]).await.unwrap();
    assert_eq!(run.status, 200, "{}", run.response);

    let ours = |s: &Span| s.trace_id == trace;
    let spans = otlp
        .wait_for(Duration::from_secs(40), |all| {
            let decided = all.iter().filter(|s| ours(s) && !s.attr("actorchain.decision").is_empty()).count();
            decided >= 3 + 2 + 2
        })
        .await
        .unwrap();
    let spans: Vec<&Span> = spans.iter().filter(|s| ours(s)).collect();
    let one = |service: &str, decision: &str| -> &Span {
        let found: Vec<&&Span> = spans.iter().filter(|s| s.service == service && s.attr("actorchain.decision") == decision).collect();
        assert_eq!(found.len(), 1, "{service} {decision}: {spans:#?}");
        found[0]
    };
    // Each hop's ingress span carries who its sidecar let in; the first is the front end's child.
    let ingress: Vec<&Span> = ["oncall", "investigation", "mcp-server"].iter().map(|w| one(w, "accepted")).collect();
    assert_eq!(ingress[0].parent_span_id, front);
    let chains: Vec<&str> = ingress.iter().map(|s| s.attr("actorchain.chain")).collect();
    assert_eq!(chains, ["", "oncall-agent", "oncall-agent,investigation-agent"]);
    assert!(ingress.iter().all(|s| s.attr("actorchain.sub") == "user1"));
    let sts: Vec<&&Span> = spans.iter().filter(|s| s.service == "actorchain-sts").collect();
    assert_eq!(sts.len(), 2, "one STS span per exchange: {sts:#?}");
    for (i, (w, agent, audience)) in
        [("oncall", "oncall-agent", "investigation-agent"), ("investigation", "investigation-agent", "mcp-gateway")].into_iter().enumerate()
    {
        // The agent's egress span is a child of its ingress span, and the next hop's ingress a child of it.
        let egress = one(w, "exchanged");
        assert_eq!(egress.parent_span_id, ingress[i].span_id, "{w} egress");
        assert_eq!(ingress[i + 1].parent_span_id, egress.span_id, "hop {}", i + 2);
        assert_eq!(egress.attr("actorchain.audience"), audience);
        // The STS's decision sits under the request the agent was working on.
        let s = sts.iter().find(|s| s.attr("actorchain.agent") == agent).unwrap_or_else(|| panic!("no STS span for {agent}: {sts:#?}"));
        assert_eq!(s.parent_span_id, ingress[i].span_id, "{agent}'s exchange");
        assert_eq!((s.attr("actorchain.decision"), s.attr("actorchain.reason")), ("granted", "granted"));
        assert_eq!((s.attr("actorchain.person"), s.attr("actorchain.audience")), ("user1", audience));
        assert_eq!(s.attr("actorchain.chain"), egress.attr("actorchain.chain"));
        assert_eq!(s.attr("actorchain.workload"), format!("spiffe://actorchain.dev/workload/{w}"));
    }
    assert!(spans.iter().all(|s| s.attributes.values().all(|v| !v.contains("eyJ"))), "a token reached a span");

    // A refused exchange is a span too, in error, with its reason, under the caller's context.
    let asked = ExchangeRequest { subject: Some(&person), audience: "mcp-gateway", scope: None, client_id: "oncall-agent" }.form();
    let caller = "00c0ffee00c0ffee";
    let tp = format!("00-{trace}-{caller}-01");
    let h = [("content-type", "application/x-www-form-urlencoded"), ("traceparent", tp.as_str())];
    let r = demo.sts_connection(Some("oncall")).await.unwrap().request("POST", "/token", &h, asked.into_bytes()).await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    let refused = |all: &[Span]| all.iter().any(|s| s.trace_id == trace && s.attr("actorchain.decision") == "refused");
    let spans = otlp.wait_for(Duration::from_secs(20), refused).await.unwrap();
    let s = spans.iter().find(|s| s.trace_id == trace && s.attr("actorchain.decision") == "refused").unwrap();
    assert_eq!((s.parent_span_id.as_str(), s.attr("actorchain.reason")), (caller, "audience_not_allowed"));
    assert_eq!(s.status_code, 2, "error status");
}
