//! Identity that cannot be borrowed, in real Envoy (1.40) with the real STS: whatever a caller
//! chooses — trace id, `x-request-id`, `tracestate`, timing, no client certificate, an issuer —
//! no call travels on under another person's identity.

use std::path::PathBuf;

use actorchain_demo::otlp::Receiver;
use actorchain_demo::scenario::{self, deepest, oncall_calling, refusal_reason, tools_call, Run};
use actorchain_demo::topology::{Demo, Ingress, Paths, Tuning};
use actorchain_sts::dev;
use actorchain_token::wire::ExchangeRequest;
use serde_json::Value;

async fn start(tuning: Tuning) -> (Demo, tempfile::TempDir) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let demo = Demo::start_tuned(Paths::workspace(&root, "debug", work.path().to_path_buf()), tuning).await.expect("demo topology starts");
    (demo, work)
}

/// The person each hop's sidecar handed its app, front to back.
fn people_seen(run: &Run) -> Vec<String> {
    run.identities.iter().map(|i| format!("{} of {}", i["x-actorchain-sub"], i["x-actorchain-sub-issuer"])).collect()
}

fn is_person(seen: &str, sub: &str) -> bool {
    seen == format!("\"{sub}\" of \"{}\"", dev::IDP_ISSUER)
}

/// What the MCP server said it did, if it did anything.
fn done_for(run: &Run) -> Option<String> {
    deepest(&run.response)["result"]["content"][0]["text"].as_str().map(String::from)
}

/// Round `i`'s trace context, shared by both people's requests of that round.
fn shared_context(i: usize) -> (String, String) {
    (format!("00-{:032x}-{:016x}-01", 0xac7_0000 + i, 0xfeed + i), format!("rid-{i}"))
}

/// One run of the on-call chain from the front end with exactly `headers`.
async fn run(demo: &Demo, headers: &[(&str, &str)]) -> Run {
    let (s, r) = demo.call("oncall", "frontend", "/investigate", headers, tools_call("create_pr")).await.unwrap();
    Run::from_response(s, r)
}

/// The same, held in flight at the on-call agent until finished.
async fn held(demo: &Demo, headers: &[(&str, &str)]) -> actorchain_demo::topology::HeldCall {
    demo.call_held("oncall", "frontend", "/investigate", headers, tools_call("create_pr")).await.unwrap()
}

/// A victim (user1, whose work may open PRs) and an attacker (user3, whose work may not) send
/// the same trace context to the on-call agent at once (a guessed key is refused outright: see the
/// attack table and the tracing test below), in both orders with one of them held in
/// flight, and plainly concurrently; each result must be its sender's own, at every hop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_context_never_carries_another_persons_identity() {
    let (demo, _work) = start(Tuning::default()).await;
    let victim = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let attacker = demo.person_token("user3", "incidents:read repo:write", 600).unwrap();
    let (va, aa) = (format!("Bearer {victim}"), format!("Bearer {attacker}"));
    const ROUNDS: usize = 50;
    let mut borrowed = Vec::new();
    for i in 0..ROUNDS * 3 {
        let (tp, rid) = shared_context(i);
        let v_headers = [
            ("authorization", va.as_str()),
            ("traceparent", tp.as_str()),
            ("x-request-id", rid.as_str()),
            ("content-type", "application/json"),
        ];
        let a_headers = [
            ("authorization", aa.as_str()),
            ("traceparent", tp.as_str()),
            ("x-request-id", rid.as_str()),
            ("content-type", "application/json"),
        ];
        let (v, a) = match i % 3 {
            // The victim's request is in flight at the agent while the attacker's runs through.
            0 => {
                let h = held(&demo, &v_headers).await;
                let a = run(&demo, &a_headers).await;
                let (s, r) = h.finish().await.unwrap();
                (Run::from_response(s, r), a)
            }
            // The attacker's is in flight while the victim's runs.
            1 => {
                let h = held(&demo, &a_headers).await;
                let v = run(&demo, &v_headers).await;
                let (s, r) = h.finish().await.unwrap();
                (v, Run::from_response(s, r))
            }
            _ => {
                tokio::join!(run(&demo, &v_headers), run(&demo, &a_headers))
            }
        };
        if !people_seen(&v).iter().all(|p| is_person(p, "user1")) || v.status != 200 {
            borrowed.push(format!("round {i}: the victim's call {} {:?} {:?}", v.status, people_seen(&v), done_for(&v)));
        }
        if !people_seen(&a).iter().all(|p| is_person(p, "user3")) || a.status == 200 || done_for(&a).is_some() {
            borrowed.push(format!("round {i}: the attacker's call {} {:?} {:?}", a.status, people_seen(&a), done_for(&a)));
        }
        assert_eq!(v.identities.len(), 3, "round {i}: {}", v.response);
        assert_eq!(refusal_reason(&a.response), "originator_not_allowed", "round {i}: {}", a.response);
        // Each request got a key of its own, whatever the trace context they share.
        let key = |r: &Run| r.identities[0]["tracestate"].as_str().unwrap_or_default().to_string();
        assert_ne!(key(&v), key(&a), "round {i}");
    }
    assert!(borrowed.is_empty(), "calls under another person's identity:\n{}", borrowed.join("\n"));

    // Fan-in: two honest people in one trace, at once, every round: each call carries its own.
    let user2 = demo.person_token("user2", "incidents:read repo:write", 600).unwrap();
    for i in 0..ROUNDS {
        let (tp, rid) = shared_context(10_000 + i);
        let h1 = [("traceparent", tp.as_str()), ("x-request-id", rid.as_str())];
        let (one, two) = tokio::join!(oncall_calling(&demo, &victim, "create_pr", &h1), oncall_calling(&demo, &user2, "create_pr", &h1));
        for (run, who) in [(one.unwrap(), "user1"), (two.unwrap(), "user2")] {
            assert_eq!(run.status, 200, "fan-in round {i}: {}", run.response);
            assert!(people_seen(&run).iter().all(|p| is_person(p, who)), "fan-in round {i}: {who} -> {:?}", people_seen(&run));
            assert_eq!(done_for(&run), Some(format!("create_pr done for {who} via oncall-agent,investigation-agent")));
        }
    }

    // A request's record ends with it: its key, replayed later with no token, finds nothing.
    let done = oncall_calling(&demo, &victim, "create_pr", &[]).await.unwrap();
    assert_eq!(done.status, 200);
    let stale_state = done.identities[0]["tracestate"].as_str().unwrap().to_string();
    let stale_parent = done.identities[0]["traceparent"].as_str().unwrap().to_string();
    let h = [("tracestate", stale_state.as_str()), ("traceparent", stale_parent.as_str()), ("content-type", "application/json")];
    let (status, body) = demo.call_egress("oncall", "investigation-agent", "/investigate", &h, tools_call("create_pr")).await.unwrap();
    assert_eq!((status, body["reason"].as_str()), (403, Some("no_subject_token")), "{body}");
}

/// With Envoy's own tracing on, Envoy hands the app the `tracestate` its tracer read from the
/// caller before any filter ran, so stripping a caller's key is not enough: it is refused, in
/// `tracestate` or `baggage`, and the chain still works through the key in `baggage`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_envoys_tracing_on_a_callers_key_never_reaches_an_app() {
    let otlp = Receiver::start().await.unwrap();
    let (demo, _work) = start(Tuning { otlp: Some(otlp.addr), ..Tuning::default() }).await;
    let victim = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let attacker = demo.person_token("user3", "incidents:read repo:write", 600).unwrap();
    let honest = oncall_calling(&demo, &victim, "create_pr", &[]).await.unwrap();
    assert_eq!(honest.status, 200, "{}", honest.response);
    assert!(people_seen(&honest).iter().all(|p| is_person(p, "user1")));
    // Envoy's tracer did rewrite tracestate: the key the app got was not ours.
    assert!(!honest.identities[0]["tracestate"].as_str().unwrap_or_default().contains("actorchain="), "{}", honest.identities[0]);
    let aa = format!("Bearer {attacker}");
    let forged = "actorchain=0123456789abcdef0123456789abcdef";
    let (tp, _) = shared_context(0);
    for header in ["tracestate", "baggage"] {
        let h = [("authorization", aa.as_str()), ("traceparent", tp.as_str()), (header, forged), ("content-type", "application/json")];
        let a = run(&demo, &h).await;
        assert_eq!((a.status, refusal_reason(&a.response).as_str()), (400, "correlation_forged"), "{header}: {}", a.response);
        assert!(a.identities.is_empty(), "{header}: the app was reached: {}", a.response);
    }
    drop(demo);
    // Why stripping is not enough: observed only, the stripped key is back in the app's tracestate.
    // (Envoy's tracer takes a caller's tracestate along with its traceparent.)
    let (demo, _work) = start(Tuning { otlp: Some(otlp.addr), enforce: Some(false), ..Tuning::default() }).await;
    let aa = format!("Bearer {}", demo.person_token("user3", "incidents:read repo:write", 600).unwrap());
    let (tp, _) = shared_context(0);
    let h = [("authorization", aa.as_str()), ("traceparent", tp.as_str()), ("tracestate", forged), ("content-type", "application/json")];
    let a = run(&demo, &h).await;
    assert!(a.identities[0]["tracestate"].as_str().unwrap_or_default().contains(forged), "{}", a.response);
    assert!(demo.counter(demo.workload("oncall").unwrap(), "actorchain.inbound.would_refuse.correlation_forged").await >= 1);
}

/// Apps that propagate only `x-request-id`: with `correlation.x_request_id` the sidecar replaces
/// the caller's value with the key it minted, so the chain works, a shared or chosen
/// `x-request-id` borrows nothing, and a finished request's id finds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_request_id_carries_only_a_key_the_sidecar_minted() {
    let tuning =
        Tuning { correlation_x_request_id: true, app_propagates: Some(actorchain_demo::apps::REQUEST_ID_ONLY), ..Tuning::default() };
    let (demo, _work) = start(tuning).await;
    let victim = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let attacker = demo.person_token("user3", "incidents:read repo:write", 600).unwrap();
    for i in 0..20 {
        let rid = format!("shared-request-id-{i}");
        let h = [("x-request-id", rid.as_str())];
        let (v, a) = tokio::join!(oncall_calling(&demo, &victim, "create_pr", &h), oncall_calling(&demo, &attacker, "create_pr", &h));
        let (v, a) = (v.unwrap(), a.unwrap());
        assert_eq!(v.status, 200, "round {i}: {}", v.response);
        assert!(people_seen(&v).iter().all(|p| is_person(p, "user1")), "round {i}: {:?}", people_seen(&v));
        assert!(people_seen(&a).iter().all(|p| is_person(p, "user3")), "round {i}: {:?}", people_seen(&a));
        assert_eq!(refusal_reason(&a.response), "originator_not_allowed", "round {i}: {}", a.response);
        // Each app saw its sidecar's key, never the caller's request id (nor the previous hop's).
        assert_ne!(v.identities[0]["x-request-id"].as_str(), Some(rid.as_str()));
        assert_ne!(v.identities[1]["x-request-id"], v.identities[0]["x-request-id"]);
    }
    let done = oncall_calling(&demo, &victim, "create_pr", &[]).await.unwrap();
    let stale = done.identities[0]["x-request-id"].as_str().unwrap().to_string();
    let h = [("x-request-id", stale.as_str()), ("content-type", "application/json")];
    let (status, body) = demo.call_egress("oncall", "investigation-agent", "/investigate", &h, tools_call("create_pr")).await.unwrap();
    assert_eq!((status, body["reason"].as_str()), (403, Some("no_subject_token")), "{body}");
}

/// The same subject from two identity providers is two people, for rules and for revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_of_two_issuers_are_told_apart() {
    let (demo, _work) = start(Tuning::default()).await;
    let ours = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let theirs = demo.partner_person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let run = scenario::oncall(&demo, &ours, &[]).await.unwrap();
    assert_eq!(run.status, 200, "{}", run.response);
    let hop1 = scenario::claims(&run.tokens[1]);
    assert_eq!(hop1["sub_id"], serde_json::json!({"format": "iss_sub", "iss": dev::IDP_ISSUER, "sub": "user1"}));
    // The partner's user1 gets through the chain, as the partner's user1: the create-pr rule
    // names our user1, so the MCP server refuses.
    let run = scenario::oncall(&demo, &theirs, &[]).await.unwrap();
    let seen: Vec<&str> = run.identities.iter().filter_map(|i| i["x-actorchain-sub-issuer"].as_str()).collect();
    assert_eq!(seen, [dev::PARTNER_ISSUER, dev::PARTNER_ISSUER], "{}", run.response);
    assert_eq!(scenario::claims(&run.tokens[1])["sub_id"]["iss"], dev::PARTNER_ISSUER);
    assert_eq!((run.status, refusal_reason(&run.response).as_str()), (403, "originator_not_allowed"), "{}", run.response);

    // Revoking the partner's user1 leaves ours alone.
    demo.revoke_person(dev::PARTNER_ISSUER, "user1").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let run = scenario::oncall(&demo, &theirs, &[]).await.unwrap();
        if refusal_reason(&run.response) == "person_revoked" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the partner's user1 still not refused as revoked: {}", run.response);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(scenario::oncall(&demo, &ours, &[]).await.unwrap().status, 200, "our user1 is another person");
    // A person is named by issuer and subject: a bare subject is refused.
    assert!(demo.revoke("person", "user1").await.unwrap_err().contains("issuer"));
    // People's tokens come from the front end only (`presenters`): our user1's token presented by
    // the monitoring workload is refused.
    let auth = format!("Bearer {ours}");
    let h = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let (status, body) = demo.call("oncall", "monitoring", "/investigate", &h, tools_call("create_pr")).await.unwrap();
    assert_eq!((status, body["reason"].as_str()), (401, Some("sender_mismatch")), "{body}");
}

/// `subject` exchanged at the STS by `agent` on `workload`, for `audience`.
async fn exchanged(demo: &Demo, workload: &str, agent: &str, subject: &str, audience: &str) -> String {
    let params = ExchangeRequest { subject: Some(subject), audience, scope: None, client_id: agent }.params();
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply = demo.exchange(workload, &params).await.unwrap();
    let v: Value = serde_json::from_str(&reply.body).unwrap();
    v["access_token"].as_str().unwrap_or_else(|| panic!("not granted: {}", reply.body)).to_string()
}

/// A token stolen from the MCP server, presented at an ingress that does not demand a client
/// certificate (as Istio's PERMISSIVE mode allows): refused as `sender_unauthenticated`.
async fn stolen_token_without_a_certificate(ingress: Ingress, tls: bool) {
    let (demo, _work) = start(Tuning { ingress, ..Tuning::default() }).await;
    let person = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    // The legitimate hop-2 token, minted for the investigation workload (straight at the STS).
    let hop1 = exchanged(&demo, "oncall", "oncall-agent", &person, "investigation-agent").await;
    let hop2 = exchanged(&demo, "investigation", "investigation-agent", &hop1, "mcp-gateway").await;
    let stolen = format!("Bearer {hop2}");
    let h = [("authorization", stolen.as_str()), ("content-type", "application/json")];
    let (status, body) = demo.call_anonymous("mcp-server", tls, "/mcp", &h, tools_call("create_pr")).await.unwrap();
    assert_eq!((status, body["reason"].as_str()), (401, Some("sender_unauthenticated")), "{body}");
    // A person's own token from an anonymous peer: the same.
    let p = format!("Bearer {person}");
    let h = [("authorization", p.as_str()), ("content-type", "application/json")];
    let (status, body) = demo.call_anonymous("oncall", tls, "/investigate", &h, tools_call("create_pr")).await.unwrap();
    assert_eq!((status, body["reason"].as_str()), (401, Some("sender_unauthenticated")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_without_a_client_certificate_a_stolen_token_is_refused() {
    stolen_token_without_a_certificate(Ingress::TlsClientCertOptional, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_plaintext_a_stolen_token_is_refused() {
    stolen_token_without_a_certificate(Ingress::Plaintext, false).await;
}

/// `sender_binding: "when_present"` is the documented weaker mode: over plaintext nothing is
/// compared, so the whole chain runs, and so would a stolen token; a certificate that is present
/// is still compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_present_lets_unauthenticated_peers_through_as_documented() {
    let (demo, _work) = start(Tuning { ingress: Ingress::Plaintext, sender_binding: Some("when_present"), ..Tuning::default() }).await;
    let person = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let p = format!("Bearer {person}");
    let h = [("authorization", p.as_str()), ("content-type", "application/json")];
    let (status, body) = demo.call_anonymous("oncall", false, "/investigate", &h, tools_call("create_pr")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let run = Run::from_response(status, body);
    let stolen = format!("Bearer {}", run.tokens[2]);
    let h = [("authorization", stolen.as_str()), ("content-type", "application/json")];
    assert_eq!(demo.call_anonymous("mcp-server", false, "/mcp", &h, tools_call("create_pr")).await.unwrap().0, 200);
}
