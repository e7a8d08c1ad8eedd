//! The filter's request flow, natively, against a fake host: every decision without Envoy.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

mod fake;

use actorchain::config::{Config, InboundConfig, OutboundConfig, SenderBinding};
use actorchain::correlation::{self, Minter};
use actorchain::filter::{Action, InboundFilter, OutboundFilter, Verdict};
use actorchain::root::Jwks;
use actorchain::slots::{self, SharedSlots};
use actorchain_token::{sign_compact, Alg, KeySet, PrivateKey};
use fake::*;

fn inbound_cfg() -> InboundConfig {
    let j = r#"{"mode":"inbound","issuer":"https://sts.actorchain.dev","audience":"mcp-gateway","sts":{"cluster":"sts"},
        "rules":[{"method":"POST","path_prefix":"/admin","scopes":["admin:all"]},
                  {"path_prefix":"/tools","scopes":["repo:write"],"originators":[{"issuer":"https://idp.actorchain.dev","sub":"user1"}]}]}"#;
    match Config::parse(j.as_bytes()).unwrap() {
        Config::Inbound(c) => c,
        Config::Outbound(_) => unreachable!(),
    }
}

thread_local! {
    /// One worker's minter, shared by every request it handles (as in Envoy).
    static MINTER: Rc<RefCell<Minter>> = Rc::new(RefCell::new(Minter::new([5; 32])));
}

fn minter() -> Rc<RefCell<Minter>> {
    MINTER.with(Rc::clone)
}

fn inbound_with(cfg: InboundConfig, keys: Option<KeySet>) -> InboundFilter {
    let jwks = Jwks { keys: keys.map(Rc::new), ..Default::default() };
    InboundFilter::new(Rc::new(cfg), Rc::new(RefCell::new(jwks)), Rc::default(), minter())
}

fn inbound(keys: Option<KeySet>) -> InboundFilter {
    inbound_with(inbound_cfg(), keys)
}

/// The correlation key the inbound side handed the app in `tracestate`.
fn key_handed_over(h: &Fake) -> String {
    correlation::key_in(&[h.header("tracestate").expect("tracestate set")]).expect("our member").to_string()
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn inbound_accepts_hands_identity_over_and_strips_spoofed_headers() {
    let shared = Rc::default();
    let t = token("mcp-gateway", "incidents:read repo:write", NOW + 60);
    let auth = format!("Bearer {t}");
    let mut h = Fake::with(
        &[
            (":method", "POST"),
            (":path", "/tools/call?x=1"),
            ("authorization", &auth),
            ("x-actorchain-sub", "admin"),
            ("X-Actorchain-Chain", "evil"),
            // Look-alikes a CGI/WSGI-style framework would read as x-actorchain-sub.
            ("x_actorchain_sub", "admin"),
            ("x-actorchain_sub", "admin"),
            ("traceparent", TRACEPARENT),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("baggage", "userId=alice"),
        ],
        &shared,
    );
    let mut f = inbound(Some(keyset()));
    assert_eq!(f.on_request_headers(&mut h), Action::Continue);
    assert!(h.replies.is_empty());
    assert_eq!(h.header("x-actorchain-sub"), Some("user1"));
    assert_eq!(h.header("x-actorchain-sub-issuer"), Some(IDP));
    assert_eq!(h.header("x-actorchain-agent"), Some("investigation-agent"));
    assert_eq!(h.header("x-actorchain-chain"), Some("oncall-agent,investigation-agent"));
    assert_eq!(h.header("x-actorchain-scope"), Some("incidents:read repo:write"));
    assert_eq!(h.header("x-actorchain-sid"), Some("sid-1"));
    for spoofed in ["X-Actorchain-Chain", "x_actorchain_sub", "x-actorchain_sub"] {
        assert!(h.headers.iter().all(|(k, _)| k != spoofed), "{spoofed} reached the app");
    }
    let audit: serde_json::Value = serde_json::from_str(&h.audits.borrow()[0]).unwrap();
    assert_eq!(audit["decision"], "accepted");
    assert_eq!(audit["chain"], serde_json::json!(["oncall-agent", "investigation-agent"]));
    assert_eq!(audit["sub"], "user1");
    // The trace id goes on untouched; the key is ours, fresh, first in tracestate.
    assert_eq!(h.header("traceparent"), Some(TRACEPARENT));
    let key = key_handed_over(&h);
    assert_eq!(h.header("tracestate"), Some(format!("actorchain={key},congo=t61rcWkgMzE").as_str()));
    assert_eq!(h.header("baggage"), Some(format!("actorchain={key},userId=alice").as_str()));
    // Recorded for the outbound side under that key, in a slot whose name says nothing of it.
    let slots = SharedSlots::new(slots::DEFAULT_SLOTS);
    let rec = slots.trace.get(&h, &key).unwrap();
    assert!(String::from_utf8(rec).unwrap().ends_with(&t));
    assert!(shared.borrow().keys().all(|k| !k.contains(&key[..8])));
    // When the request ends its record is gone.
    f.on_done(&mut h);
    assert!(slots.trace.get(&h, &key).is_none());
}

#[test]
fn inbound_refusals_carry_rfc6750_challenges() {
    let shared = Rc::default();
    // Request headers, then the expected status, reason and RFC 6750 error code.
    type Case<'a> = (Vec<(&'a str, String)>, u32, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (vec![], 401, "token_missing", None),
        (vec![("authorization", "Bearer a b".into())], 400, "bearer_malformed", Some("invalid_request")),
        (
            vec![("authorization", format!("Bearer {}", token("mcp-gateway", "x", NOW + 60))), ("authorization", "Bearer y".into())],
            400,
            "bearer_multiple",
            Some("invalid_request"),
        ),
        (vec![("authorization", format!("Bearer {}", token("mcp-gateway", "x", NOW - 100)))], 401, "token_expired", Some("invalid_token")),
        (
            vec![("authorization", format!("Bearer {}", token("investigation-agent", "x", NOW + 60)))],
            401,
            "audience_mismatch",
            Some("invalid_token"),
        ),
        (vec![("authorization", "Bearer garbage".into())], 401, "token_malformed", Some("invalid_token")),
        (
            vec![(":path", "/tools".into()), ("authorization", format!("Bearer {}", token("mcp-gateway", "incidents:read", NOW + 60)))],
            403,
            "scope_missing",
            Some("insufficient_scope"),
        ),
        (
            vec![
                (":method", "POST".into()),
                (":path", "/admin/x".into()),
                ("authorization", format!("Bearer {}", token("mcp-gateway", "repo:write", NOW + 60))),
            ],
            403,
            "scope_missing",
            Some("insufficient_scope"),
        ),
    ];
    for (headers, status, reason, error) in cases {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut h = Fake::with(&hs, &shared);
        assert_eq!(inbound(Some(keyset())).on_request_headers(&mut h), Action::Pause, "{reason}");
        let r = &h.replies[0];
        assert_eq!((r.status, r.reason), (status, reason));
        let challenge = &r.headers.iter().find(|(k, _)| *k == "www-authenticate").unwrap().1;
        match error {
            Some(e) => assert!(challenge.contains(&format!("error=\"{e}\"")), "{challenge}"),
            None => assert_eq!(challenge, "Bearer realm=\"actorchain\""),
        }
        assert!(h.counts.contains(&format!("actorchain.inbound.refused.{reason}")));
    }
}

#[test]
fn inbound_fails_closed_without_keys_and_asks_for_unknown_kids() {
    let shared = Rc::default();
    let auth = format!("Bearer {}", token("mcp-gateway", "x", NOW + 60));
    let mut h = Fake::with(&[("authorization", &auth)], &shared);
    inbound(None).on_request_headers(&mut h);
    assert_eq!((h.replies[0].status, h.replies[0].reason), (503, "keys_not_loaded"));

    let other = PrivateKey::from_secret_bytes(Alg::EdDsa, &[12; 32]).unwrap();
    let mut other_set = KeySet::default();
    other_set.insert("k2".into(), other.public()).unwrap();
    let mut f = inbound(Some(other_set));
    let mut h = Fake::with(&[("authorization", &auth)], &shared);
    f.on_request_headers(&mut h);
    assert_eq!(h.replies[0].reason, "kid_unknown");
    assert!(f.jwks.borrow().refetch_wanted);
    // A token that fails a claim check never asks for keys.
    let mut f = inbound(Some(keyset()));
    let expired = format!("Bearer {}", token("mcp-gateway", "x", NOW - 100));
    f.on_request_headers(&mut Fake::with(&[("authorization", &expired)], &shared));
    assert!(!f.jwks.borrow().refetch_wanted);
}

#[test]
fn jwks_fetch_schedule() {
    let mut j = Jwks::default();
    assert!(j.should_fetch(100, 60, 10));
    j.last_attempt = 100;
    assert!(!j.should_fetch(100, 60, 10));
    assert!(j.should_fetch(101, 60, 10));
    j.adopt(keyset().to_jwks().as_bytes(), 101).unwrap();
    j.last_attempt = 101;
    assert!(!j.should_fetch(150, 60, 10));
    assert!(j.should_fetch(161, 60, 10));
    j.refetch_wanted = true;
    assert!(!j.should_fetch(105, 60, 10));
    assert!(j.should_fetch(111, 60, 10));
    // A poisoned document changes nothing.
    assert!(j.adopt(b"{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\",\"kid\":\"z\"}]}", 200).is_err());
    assert_eq!(j.keys.as_ref().unwrap().len(), 1);
    j.in_flight = true;
    assert!(!j.should_fetch(1000, 60, 10));
}

#[test]
fn outbound_exchanges_once_caches_and_shares_the_answer() {
    let shared: Rc<RefCell<Shared>> = Rc::default();
    let inflight = Rc::default();
    let subject = token("investigation-agent", "repo:write", NOW + 60);
    let auth = format!("Bearer {subject}");
    let req = [(":authority", "mcp"), (":path", "/mcp"), ("authorization", auth.as_str())];

    let mut leader = outbound(&inflight, 1);
    let mut h1 = Fake::with(&req, &shared);
    assert_eq!(leader.on_request_headers(&mut h1), Action::Pause);
    assert_eq!(h1.dispatched.len(), 1);
    let (cluster, hdrs, body) = &h1.dispatched[0];
    assert_eq!(cluster, "sts");
    assert!(hdrs.contains(&(":path".into(), "/token".into())));
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(form["audience"], "mcp-gateway");
    assert_eq!(form["client_id"], "investigation-agent");
    assert_eq!(form["subject_token"], subject);

    // A concurrent miss for the same exchange waits instead of calling again.
    let mut follower = outbound(&inflight, 2);
    let mut h2 = Fake::with(&req, &shared);
    assert_eq!(follower.on_request_headers(&mut h2), Action::Pause);
    assert!(h2.dispatched.is_empty());

    let minted = token("mcp-gateway", "repo:write", NOW + 120);
    let (verdict, waiters) = leader.on_sts_reply(&mut h1, Some(200), &sts_reply(&minted));
    assert_eq!(verdict, Verdict::Forward(format!("Bearer {minted}")));
    assert_eq!(waiters, vec![2]);

    // The next request is a cache hit: no call, the cached token swapped in.
    let mut h3 = Fake::with(&req, &shared);
    assert_eq!(outbound(&inflight, 3).on_request_headers(&mut h3), Action::Continue);
    assert!(h3.dispatched.is_empty());
    assert_eq!(h3.header("authorization"), Some(format!("Bearer {minted}").as_str()));
    assert!(shared.borrow().keys().all(|k| !k.contains(&subject)), "raw token used as a cache key");
}

#[test]
fn outbound_failures_fail_closed() {
    let shared = Rc::default();
    let inflight = Rc::default();
    let auth = format!("Bearer {}", token("investigation-agent", "repo:write", NOW + 60));
    let req = [(":authority", "mcp"), ("authorization", auth.as_str())];

    let mut f = outbound(&inflight, 1);
    let mut h = Fake::with(&req, &shared);
    f.on_request_headers(&mut h);
    let (v, _) = f.on_sts_reply(&mut h, None, b"");
    assert!(matches!(v, Verdict::Refuse(ref r) if r.status == 503 && r.reason == "sts_unreachable"));

    let mut f = outbound(&inflight, 2);
    f.on_request_headers(&mut h);
    let (v, _) = f.on_sts_reply(
        &mut h,
        Some(400),
        br#"{"error":"invalid_target","error_description":"no","actorchain_reason":"audience_not_allowed"}"#,
    );
    let Verdict::Refuse(r) = v else { panic!("refused exchange must refuse the request") };
    assert_eq!(r.status, 403);
    assert!(r.body.contains("audience_not_allowed"));

    let mut h = Fake::with(&req, &shared);
    h.dispatch_fails = true;
    assert_eq!(outbound(&inflight, 3).on_request_headers(&mut h), Action::Pause);
    assert_eq!(h.replies[0].status, 503);

    let mut h = Fake::with(&[(":authority", "elsewhere"), ("authorization", auth.as_str())], &shared);
    outbound(&inflight, 4).on_request_headers(&mut h);
    assert_eq!((h.replies[0].status, h.replies[0].reason), (403, "destination_unmapped"));

    let mut h = Fake::with(&[(":authority", "mcp")], &shared);
    outbound(&inflight, 5).on_request_headers(&mut h);
    assert_eq!(h.replies[0].reason, "no_subject_token");
}

/// One accepted request at the inbound side; the filter (to end it later) and what the app got.
fn accepted(f: &mut InboundFilter, headers: &[(&str, &str)], shared: &Rc<RefCell<Shared>>) -> Fake {
    let mut h = Fake::with(headers, shared);
    assert_eq!(f.on_request_headers(&mut h), Action::Continue, "{:?}", h.replies);
    h
}

/// The subject token the outbound side asked the STS to exchange for a call with `headers`, or
/// the reason it refused.
fn exchanged_subject(headers: &[(&str, &str)], shared: &Rc<RefCell<Shared>>) -> Result<String, &'static str> {
    let mut h = Fake::with(headers, shared);
    outbound(&Rc::default(), 1).on_request_headers(&mut h);
    match (h.dispatched.first(), h.replies.first()) {
        (Some((_, _, body)), _) => {
            let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
            Ok(form["subject_token"].clone())
        }
        (None, Some(r)) => Err(r.reason),
        (None, None) => panic!("neither exchanged nor refused"),
    }
}

#[test]
fn outbound_finds_the_subject_only_through_the_key_minted_for_its_request() {
    let shared = Rc::default();
    let victim = token("mcp-gateway", "repo:write", NOW + 60);
    let attacker = token("mcp-gateway", "incidents:read", NOW + 60);
    let (victim_auth, attacker_auth) = (format!("Bearer {victim}"), format!("Bearer {attacker}"));
    // Two requests of one trace at this workload, the same trace id and x-request-id: two records.
    let mut vf = inbound(Some(keyset()));
    let v = accepted(&mut vf, &[("authorization", &victim_auth), ("traceparent", TRACEPARENT), ("x-request-id", "r-1")], &shared);
    let mut af = inbound(Some(keyset()));
    let a = accepted(&mut af, &[("authorization", &attacker_auth), ("traceparent", TRACEPARENT), ("x-request-id", "r-1")], &shared);
    let (vk, ak) = (key_handed_over(&v), key_handed_over(&a));
    assert_ne!(vk, ak);
    // Each app's outbound call continues its own request, whatever else it carries.
    let child = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
    let call = |ts: &str| {
        exchanged_subject(&[(":authority", "mcp"), ("traceparent", child), ("x-request-id", "r-1"), ("tracestate", ts)], &shared)
    };
    assert_eq!(call(&format!("actorchain={vk}")), Ok(victim.clone()));
    assert_eq!(call(&format!("actorchain={ak},congo=1")), Ok(attacker.clone()));
    // The trace id or x-request-id alone finds nothing (x-request-id is not a carrier here).
    assert_eq!(
        exchanged_subject(&[(":authority", "mcp"), ("traceparent", TRACEPARENT), ("x-request-id", "r-1")], &shared),
        Err("no_subject_token")
    );
    assert_eq!(exchanged_subject(&[(":authority", "mcp"), ("x-request-id", &vk)], &shared), Err("no_subject_token"));
    // Where Envoy's tracer rewrote tracestate, the key still travels in baggage.
    let in_baggage =
        |b: &str| exchanged_subject(&[(":authority", "mcp"), ("traceparent", child), ("tracestate", ""), ("baggage", b)], &shared);
    assert_eq!(in_baggage(&format!("userId=alice,actorchain={vk}")), Ok(victim.clone()));
    // The key never leaves the workload: the forwarded call's tracestate and baggage have lost our
    // member, whether the destination is mapped or passed through.
    let mut cfg = outbound_cfg();
    cfg.pass_unmapped = true;
    let cfg = Rc::new(cfg);
    for authority in ["mcp", "elsewhere"] {
        let ours = format!("actorchain={vk},congo=1");
        let mut h = Fake::with(&[(":authority", authority), ("tracestate", &ours), ("baggage", &ours)], &shared);
        OutboundFilter::new(cfg.clone(), Rc::default(), Rc::default(), 1).on_request_headers(&mut h);
        assert_eq!((h.header("tracestate"), h.header("baggage")), (Some("congo=1"), Some("congo=1")), "{authority}");
    }
    // A record lives exactly as long as its request.
    vf.on_done(&mut Fake::with(&[], &shared));
    assert_eq!(call(&format!("actorchain={vk}")), Err("no_subject_token"));
    assert_eq!(call(&format!("actorchain={ak}")), Ok(attacker));
}

#[test]
fn x_request_id_is_a_carrier_only_where_the_inbound_side_put_the_key_there() {
    let shared = Rc::default();
    let mut cfg = inbound_cfg();
    cfg.correlation.x_request_id = true;
    let t = token("mcp-gateway", "repo:write", NOW + 60);
    let auth = format!("Bearer {t}");
    let mut f = inbound_with(cfg, Some(keyset()));
    let h = accepted(&mut f, &[("authorization", &auth), ("x-request-id", "chosen-by-the-caller")], &shared);
    let key = key_handed_over(&h);
    assert_eq!(h.header("x-request-id"), Some(key.as_str()), "the caller's x-request-id is replaced by the key");
    assert!(h.header("traceparent").is_some_and(correlation::is_traceparent), "a trace is started so tracestate travels");
    assert_eq!(exchanged_subject(&[(":authority", "mcp"), ("x-request-id", &key)], &shared), Ok(t));
    f.on_done(&mut Fake::with(&[], &shared));
    assert_eq!(exchanged_subject(&[(":authority", "mcp"), ("x-request-id", &key)], &shared), Err("no_subject_token"));
}

#[test]
fn a_key_is_honoured_only_in_the_carriers_it_was_handed_over_in() {
    let shared = Rc::default();
    let mut cfg = inbound_cfg();
    cfg.correlation.baggage = false;
    let t = token("mcp-gateway", "repo:write", NOW + 60);
    let h = accepted(
        &mut inbound_with(cfg, Some(keyset())),
        &[("authorization", &format!("Bearer {t}")), ("baggage", "userId=alice")],
        &shared,
    );
    assert_eq!(h.header("baggage"), Some("userId=alice"), "no key in baggage when it is not a carrier");
    let key = key_handed_over(&h);
    let via = |header: &str| exchanged_subject(&[(":authority", "mcp"), (header, &format!("actorchain={key}"))], &shared);
    assert_eq!(via("tracestate"), Ok(t));
    assert_eq!(via("baggage"), Err("no_subject_token"));
}

#[test]
fn a_callers_correlation_key_is_refused_even_where_nothing_is_recorded() {
    let shared = Rc::default();
    let auth = format!("Bearer {}", token("mcp-gateway", "repo:write", NOW + 60));
    let forged = "actorchain=0123456789abcdef0123456789abcdef";
    for record in [true, false] {
        for (header, value) in
            [("tracestate", format!("rojo=1,{forged}")), ("baggage", format!("{forged};p=1")), ("tracestate", "ActorChain=x".into())]
        {
            let mut cfg = inbound_cfg();
            cfg.correlation.record = record;
            let mut h = Fake::with(&[(":path", "/tools"), ("authorization", &auth), (header, &value)], &shared);
            assert_eq!(inbound_with(cfg, Some(keyset())).on_request_headers(&mut h), Action::Pause, "{header}: {value}");
            assert_eq!((h.replies[0].status, h.replies[0].reason), (400, "correlation_forged"));
        }
    }
    // Observed, it is counted and stripped, and the request goes on.
    let mut h = Fake::with(&[(":path", "/tools"), ("authorization", &auth), ("tracestate", &format!("rojo=1,{forged}"))], &shared);
    assert_eq!(inbound_with(observing(r#""enforce":false,"#), Some(keyset())).on_request_headers(&mut h), Action::Continue);
    assert!(h.counts.contains(&"actorchain.inbound.would_refuse.correlation_forged".to_string()));
    assert!(!h.header("tracestate").unwrap_or_default().contains(forged));
    assert_eq!(h.header("x-actorchain-sub"), Some("user1"));
    assert!(h.header("baggage").is_some_and(|b| b.starts_with("actorchain=")));
    let mut cfg = inbound_cfg();
    cfg.correlation.record = false;
    let fresh = Rc::default();
    let h = accepted(&mut inbound_with(cfg, Some(keyset())), &[("authorization", &auth), ("tracestate", "rojo=1")], &fresh);
    assert_eq!(h.header("tracestate"), Some("rojo=1"));
    assert!(fresh.borrow().is_empty(), "nothing recorded");
}

#[test]
fn a_destination_gets_at_most_its_scope() {
    let shared = Rc::default();
    let j = r#"{"mode":"outbound","agent":"investigation-agent","sts":{"cluster":"sts"},
        "destinations":{"mcp":{"audience":"mcp-gateway","scope":"repo:write metrics:read"}}}"#;
    let Config::Outbound(cfg) = Config::parse(j.as_bytes()).unwrap() else { unreachable!() };
    let cfg = Rc::new(cfg);
    let call = |scope: &str| {
        let auth = format!("Bearer {}", token("investigation-agent", scope, NOW + 60));
        let mut h = Fake::with(&[(":authority", "mcp"), ("authorization", &auth)], &shared);
        OutboundFilter::new(cfg.clone(), Rc::default(), Rc::default(), 1).on_request_headers(&mut h);
        h
    };
    let h = call("incidents:read repo:read repo:write");
    let form: HashMap<String, String> = form_urlencoded::parse(h.dispatched[0].2.as_bytes()).into_owned().collect();
    assert_eq!(form["scope"], "repo:write");
    let h = call("incidents:read");
    assert_eq!((h.replies[0].status, h.replies[0].reason), (403, "scope_unavailable"));
}

#[test]
fn outbound_lets_a_scheduled_agent_act_as_itself_when_configured() {
    let shared = Rc::default();
    let inflight = Rc::default();
    let cfg = OutboundConfig { act_as_self: true, ..outbound_cfg() };
    let mut f = OutboundFilter::new(Rc::new(cfg), Rc::default(), inflight, 1);
    let mut h = Fake::with(&[(":authority", "mcp")], &shared);
    assert_eq!(f.on_request_headers(&mut h), Action::Pause);
    let form: HashMap<String, String> = form_urlencoded::parse(h.dispatched[0].2.as_bytes()).into_owned().collect();
    assert_eq!(form["grant_type"], "client_credentials");
    assert!(!form.contains_key("subject_token"));
    let minted = token("mcp-gateway", "repo:write", NOW + 60);
    let (v, _) = f.on_sts_reply(&mut h, Some(200), &sts_reply(&minted));
    assert_eq!(v, Verdict::Forward(format!("Bearer {minted}")));
}

#[test]
fn inbound_remembers_verified_tokens_until_the_keys_change() {
    let shared = Rc::default();
    let mut f = inbound(Some(keyset()));
    f.jwks.borrow_mut().verified = actorchain::verified_cache::VerifiedCache::new(16);
    let auth = format!("Bearer {}", token("mcp-gateway", "x", NOW + 60));
    assert_eq!(f.on_request_headers(&mut Fake::with(&[("authorization", &auth)], &shared)), Action::Continue);
    // With the keys gone from under it, only the cache can still accept the token.
    let other = PrivateKey::from_secret_bytes(Alg::EdDsa, &[13; 32]).unwrap();
    let mut other_set = KeySet::default();
    other_set.insert("k9".into(), other.public()).unwrap();
    f.jwks.borrow_mut().keys = Some(Rc::new(other_set.clone()));
    assert_eq!(f.on_request_headers(&mut Fake::with(&[("authorization", &auth)], &shared)), Action::Continue);
    // Adopting a different key set drops what was verified before.
    let rotated = PrivateKey::from_secret_bytes(Alg::EdDsa, &[14; 32]).unwrap();
    let mut rotated_set = KeySet::default();
    rotated_set.insert("k10".into(), rotated.public()).unwrap();
    f.jwks.borrow_mut().adopt(rotated_set.to_jwks().as_bytes(), NOW).unwrap();
    let mut h = Fake::with(&[("authorization", &auth)], &shared);
    assert_eq!(f.on_request_headers(&mut h), Action::Pause);
    assert_eq!(h.replies[0].reason, "kid_unknown");
}

#[test]
fn revoked_sessions_are_refused_inbound_and_dropped_from_the_outbound_cache() {
    use actorchain_token::{RevocationEntry, RevocationFeed, RevocationKind};
    let shared = Rc::default();
    let feed = RevocationFeed {
        cursor: 1,
        entries: vec![RevocationEntry {
            id: 1,
            kind: RevocationKind::Session,
            value: "sid-1".into(),
            revoked_at: NOW,
            expires_at: NOW + 600,
            lifts: None,
        }],
    };

    let mut f = inbound(Some(keyset()));
    let auth = format!("Bearer {}", token("mcp-gateway", "x", NOW + 60));
    assert_eq!(f.on_request_headers(&mut Fake::with(&[("authorization", &auth)], &shared)), Action::Continue);
    f.revoked.borrow_mut().merge(feed.clone(), NOW);
    let mut h = Fake::with(&[("authorization", &auth)], &shared);
    assert_eq!(f.on_request_headers(&mut h), Action::Pause);
    assert_eq!((h.replies[0].status, h.replies[0].reason), (401, "session_revoked"));

    // Outbound: a cached exchange of the revoked session is not handed out again.
    let inflight = Rc::default();
    let subject = format!("Bearer {}", token("investigation-agent", "repo:write", NOW + 60));
    let req = [(":authority", "mcp"), ("authorization", subject.as_str())];
    let mut first = outbound(&inflight, 1);
    let mut h = Fake::with(&req, &shared);
    first.on_request_headers(&mut h);
    first.on_sts_reply(&mut h, Some(200), &sts_reply(&token("mcp-gateway", "repo:write", NOW + 120)));
    let mut hit = Fake::with(&req, &shared);
    assert_eq!(outbound(&inflight, 2).on_request_headers(&mut hit), Action::Continue);
    let mut after = outbound(&inflight, 3);
    after.revoked.borrow_mut().merge(feed, NOW);
    let mut miss = Fake::with(&req, &shared);
    assert_eq!(after.on_request_headers(&mut miss), Action::Pause);
    assert_eq!(miss.dispatched.len(), 1, "the revoked cached token was not used");
    // The STS refuses it as revoked; the filter reads the feed again at once.
    let (v, _) = after.on_sts_reply(
        &mut miss,
        Some(400),
        br#"{"error":"invalid_request","actorchain_reason":"session_revoked","error_description":"d"}"#,
    );
    assert!(matches!(v, Verdict::Refuse(ref r) if r.status == 403 && r.reason == "session_revoked"));
    assert!(after.revoked.borrow().wanted);
}

#[test]
fn a_token_is_bound_to_the_workload_of_its_current_actor() {
    let shared = Rc::default();
    let auth = format!("Bearer {}", token("mcp-gateway", "x", NOW + 60));
    let from = |peer: Option<&str>| {
        let mut h = Fake::with(&[("authorization", &auth)], &shared);
        h.peer = peer.map(String::from);
        h
    };
    let monitoring = Some("spiffe://actorchain.dev/workload/monitoring");
    let reason = |f: &mut InboundFilter, mut h: Fake| {
        f.on_request_headers(&mut h);
        h.replies.first().map(|r| (r.status, r.reason))
    };
    let mut f = inbound(Some(keyset()));
    assert_eq!(reason(&mut f, from(Some(INVESTIGATION))), None);
    assert_eq!(reason(&mut f, from(monitoring)), Some((401, "sender_mismatch")));
    // No verified peer certificate (plaintext, or TLS without one): refused, unless the operator
    // said so explicitly.
    assert_eq!(reason(&mut f, from(None)), Some((401, "sender_unauthenticated")));
    let mut when_present = inbound_with(InboundConfig { sender_binding: SenderBinding::WhenPresent, ..inbound_cfg() }, Some(keyset()));
    assert_eq!(reason(&mut when_present, from(None)), None);
    assert_eq!(reason(&mut when_present, from(monitoring)), Some((401, "sender_mismatch")));
    let mut off = inbound_with(InboundConfig { sender_binding: SenderBinding::Off, ..inbound_cfg() }, Some(keyset()));
    assert_eq!(reason(&mut off, from(monitoring)), None);
}

#[test]
fn a_persons_token_comes_from_its_issuers_presenters() {
    let shared = Rc::default();
    let idp = PrivateKey::from_secret_bytes(Alg::EdDsa, &[21; 32]).unwrap();
    let mut idp_keys = KeySet::default();
    idp_keys.insert("idp".into(), idp.public()).unwrap();
    let j = format!(
        r#"{{"mode":"inbound","issuer":"{ISS}","audience":"oncall-agent","sts":{{"cluster":"sts"}},
            "people":[{{"issuer":"{IDP}","jwks":{},"presenters":["spiffe://actorchain.dev/workload/frontend"]}}]}}"#,
        idp_keys.to_jwks()
    );
    let Config::Inbound(cfg) = Config::parse(j.as_bytes()).unwrap() else { unreachable!() };
    let person = sign_compact(&serde_json::json!({"iss": IDP, "sub": "user1", "aud": "oncall-agent", "exp": NOW + 60}), &idp, "idp", None);
    let auth = format!("Bearer {person}");
    let mut f = inbound_with(cfg, Some(keyset()));
    let mut from = |peer: Option<&str>| {
        let mut h = Fake::with(&[("authorization", &auth)], &shared);
        h.peer = peer.map(String::from);
        f.on_request_headers(&mut h);
        (h.replies.first().map(|r| r.reason), h.header("x-actorchain-sub-issuer").map(String::from))
    };
    assert_eq!(from(Some("spiffe://actorchain.dev/workload/frontend")), (None, Some(IDP.to_string())));
    assert_eq!(from(Some(INVESTIGATION)).0, Some("sender_mismatch"));
    assert_eq!(from(None).0, Some("sender_unauthenticated"));
}

fn mcp_filter() -> InboundFilter {
    let j = r#"{"mode":"inbound","issuer":"https://sts.actorchain.dev","audience":"mcp-gateway","sts":{"cluster":"sts"},
        "mcp":{"path_prefix":"/mcp","max_body_bytes":2048},
        "rules":[{"id":"create-pr","mcp_method":"tools/call","name":"create_pr","scopes":["repo:write"],
                  "actors":["investigation-agent"],"chain_includes":["oncall-agent"]},
                 {"id":"read","mcp_method":"tools/call","name":"read_*"}]}"#;
    let Config::Inbound(cfg) = Config::parse(j.as_bytes()).unwrap() else { unreachable!() };
    inbound_with(cfg, Some(keyset()))
}

/// One MCP POST through the filter: headers, then the whole body.
fn mcp_call(body: &str, scope: &str) -> (Action, Fake) {
    let shared = Rc::default();
    let auth = format!("Bearer {}", token("mcp-gateway", scope, NOW + 60));
    let mut h = Fake::with(&[(":method", "POST"), (":path", "/mcp"), ("authorization", &auth)], &shared);
    h.body = body.as_bytes().to_vec();
    let mut f = mcp_filter();
    assert_eq!(f.on_request_headers(&mut h), Action::Continue);
    assert!(f.body_wanted);
    assert_eq!(f.on_request_body(&mut h, 10, false), Action::Pause, "waits for the whole body");
    let a = f.on_request_body(&mut h, body.len(), true);
    (a, h)
}

#[test]
fn mcp_calls_are_authorized_by_tool_person_and_chain() {
    let create = r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"create_pr"}}"#;
    assert_eq!(mcp_call(create, "repo:write").0, Action::Continue);
    let (a, h) = mcp_call(create, "repo:read");
    assert_eq!(a, Action::Pause);
    let r = &h.replies[0];
    assert_eq!((r.status, r.reason), (403, "scope_missing"));
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!((v["id"].as_i64(), v["error"]["data"]["rule"].as_str()), (Some(41), Some("create-pr")));
    let (_, h) = mcp_call(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_db"}}"#, "repo:write");
    assert_eq!(h.replies[0].reason, "no_rule");
    assert_eq!(mcp_call(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_logs"}}"#, "").0, Action::Continue);
    // A batch is refused whole if any call in it is, answering every id.
    let (_, h) =
        mcp_call(&format!("[{create},{}]", r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"drop_db"}}"#), "repo:write");
    let v: serde_json::Value = serde_json::from_str(&h.replies[0].body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, h) = mcp_call("{oops", "repo:write");
    assert_eq!((h.replies[0].status, h.replies[0].reason), (400, "body_malformed"));
    let (_, h) =
        mcp_call(&format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{}"}}}}"#, "x".repeat(3000)), "repo:write");
    assert_eq!(h.replies[0].status, 413);
}

#[test]
fn tools_list_answers_show_only_the_callers_tools() {
    let list = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list"}"#;
    let shared = Rc::default();
    let auth = format!("Bearer {}", token("mcp-gateway", "repo:read", NOW + 60));
    let mut h = Fake::with(&[(":method", "POST"), (":path", "/mcp"), ("authorization", &auth)], &shared);
    h.body = list.as_bytes().to_vec();
    let mut f = mcp_filter();
    f.on_request_headers(&mut h);
    assert_eq!(f.on_request_body(&mut h, list.len(), true), Action::Continue);
    h.response_headers = vec![("content-length".into(), "99".into())];
    h.response = br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"create_pr"},{"name":"read_logs"},{"name":"drop_db"}]}}"#.to_vec();
    f.on_response_headers(&mut h);
    assert!(h.response_headers.is_empty(), "the length changes");
    let len = h.response.len();
    assert_eq!(f.on_response_body(&mut h, 10, false), Action::Pause);
    assert_eq!(f.on_response_body(&mut h, len, true), Action::Continue);
    let v: serde_json::Value = serde_json::from_slice(&h.response).unwrap();
    assert_eq!(v["result"]["tools"], serde_json::json!([{"name": "read_logs"}]));
}

fn observing(extra: &str) -> InboundConfig {
    let j = format!(
        r#"{{"mode":"inbound","issuer":"https://sts.actorchain.dev","audience":"mcp-gateway","sts":{{"cluster":"sts"}},{extra}
            "mcp":{{"path_prefix":"/mcp"}},
            "exempt":[{{"method":"GET","path":"/healthz"}},{{"path_prefix":"/.well-known/"}},{{"path_prefix":"/mcp/public"}}],
            "rules":[{{"id":"tools","path_prefix":"/tools","scopes":["repo:write"]}},
                     {{"id":"trial","path_prefix":"/trial","scopes":["admin"],"enforce":false}},
                     {{"id":"create-pr","mcp_method":"tools/call","name":"create_pr","scopes":["repo:write"]}}]}}"#
    );
    let Config::Inbound(c) = Config::parse(j.as_bytes()).unwrap() else { unreachable!() };
    c
}

#[test]
fn observe_only_counts_and_logs_what_it_would_refuse_and_lets_everything_through() {
    let shared = Rc::default();
    let mut f = inbound_with(observing(r#""enforce":false,"#), Some(keyset()));
    // No token at all, a garbled one, an expired one: through, with no identity, each counted.
    for (auth, reason) in [(None, "token_missing"), (Some("Bearer garbage"), "token_malformed")] {
        let mut h = Fake::with(&[(":path", "/tools"), ("x-actorchain-sub", "admin")], &shared);
        if let Some(a) = auth {
            h.headers.push(("authorization".into(), a.into()));
        }
        assert_eq!(f.on_request_headers(&mut h), Action::Continue, "{reason}");
        assert!(h.replies.is_empty());
        assert!(h.header("x-actorchain-sub").is_none(), "spoofed identity still stripped");
        assert!(h.counts.contains(&format!("actorchain.inbound.would_refuse.{reason}")));
        let audit: serde_json::Value = serde_json::from_str(h.audits.borrow().last().unwrap()).unwrap();
        assert_eq!((audit["decision"].as_str(), audit["reason"].as_str()), (Some("would_refuse"), Some(reason)));
    }
    // A valid token a rule would refuse: through, with its verified identity.
    let auth = format!("Bearer {}", token("mcp-gateway", "incidents:read", NOW + 60));
    let mut h = Fake::with(&[(":path", "/tools"), ("authorization", &auth)], &shared);
    assert_eq!(f.on_request_headers(&mut h), Action::Continue);
    assert_eq!(h.header("x-actorchain-sub"), Some("user1"));
    assert!(h.counts.contains(&"actorchain.inbound.would_refuse.scope_missing".to_string()));
    assert!(!h.counts.contains(&"actorchain.inbound.accepted".to_string()));
    // An MCP call no rule allows goes on too.
    let mut h = Fake::with(&[(":method", "POST"), (":path", "/mcp"), ("authorization", &auth)], &shared);
    h.body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_db"}}"#.to_vec();
    assert_eq!(f.on_request_headers(&mut h), Action::Continue);
    let len = h.body.len();
    assert_eq!(f.on_request_body(&mut h, len, true), Action::Continue);
    assert!(h.counts.contains(&"actorchain.inbound.would_refuse.no_rule".to_string()));
}

#[test]
fn a_rule_can_be_observed_while_the_rest_is_enforced() {
    let shared = Rc::default();
    let mut f = inbound_with(observing(""), Some(keyset()));
    let auth = format!("Bearer {}", token("mcp-gateway", "repo:write", NOW + 60));
    let mut trial = Fake::with(&[(":path", "/trial/x"), ("authorization", &auth)], &shared);
    assert_eq!(f.on_request_headers(&mut trial), Action::Continue);
    assert!(trial.counts.contains(&"actorchain.inbound.would_refuse.scope_missing".to_string()));
    let mut none = Fake::with(&[(":path", "/trial/x")], &shared);
    assert_eq!(f.on_request_headers(&mut none), Action::Pause, "a missing token is still refused");
}

#[test]
fn exempt_paths_need_no_token_but_json_rpc_calls_are_always_judged() {
    let shared = Rc::default();
    let mut f = inbound_with(observing(""), Some(keyset()));
    for (method, path) in [("GET", "/healthz"), ("GET", "/.well-known/agent-card.json"), ("GET", "/healthz?verbose=1")] {
        let mut h = Fake::with(&[(":method", method), (":path", path), ("x_actorchain_sub", "admin")], &shared);
        assert_eq!(f.on_request_headers(&mut h), Action::Continue, "{path}");
        assert!(h.headers.iter().all(|(k, _)| k != "x_actorchain_sub"), "identity headers are stripped on exempt paths too");
        assert!(h.counts.contains(&"actorchain.inbound.exempt".to_string()));
    }
    // Not exempt: another method, a longer path, and a JSON-RPC POST under an exempt prefix.
    for (method, path) in [("POST", "/healthz"), ("GET", "/healthz/x"), ("POST", "/mcp/public/rpc")] {
        let mut h = Fake::with(&[(":method", method), (":path", path)], &shared);
        assert_eq!(f.on_request_headers(&mut h), Action::Pause, "{method} {path}");
        assert_eq!(h.replies[0].reason, "token_missing");
    }
}

#[test]
fn outbound_observe_only_forwards_the_original_call_when_the_exchange_fails() {
    let shared = Rc::default();
    let cfg = Rc::new(OutboundConfig { enforce: false, ..outbound_cfg() });
    let inflight = Rc::default();
    let auth = format!("Bearer {}", token("investigation-agent", "repo:write", NOW + 60));
    let req = [(":authority", "mcp"), ("authorization", auth.as_str())];
    let mut f = OutboundFilter::new(cfg.clone(), Rc::default(), inflight, 1);
    let mut h = Fake::with(&req, &shared);
    assert_eq!(f.on_request_headers(&mut h), Action::Pause, "it still exchanges, so the next hop can be observed");
    let (v, _) = f.on_sts_reply(&mut h, Some(400), br#"{"error":"invalid_target","actorchain_reason":"audience_not_allowed"}"#);
    assert_eq!(v, Verdict::Unchanged);
    assert!(h.counts.contains(&"actorchain.outbound.would_refuse.exchange_refused".to_string()));
    // No subject and an unmapped destination: the call goes on as the app sent it.
    for headers in [vec![(":authority", "mcp")], vec![(":authority", "elsewhere"), ("authorization", auth.as_str())]] {
        let mut h = Fake::with(&headers, &shared);
        let mut f = OutboundFilter::new(cfg.clone(), Rc::default(), Rc::default(), 2);
        assert_eq!(f.on_request_headers(&mut h), Action::Continue);
        assert!(h.replies.is_empty());
    }
}

#[test]
fn decisions_are_tagged_for_envoys_tracing_only_when_asked() {
    let shared = Rc::default();
    let auth = format!("Bearer {}", token("mcp-gateway", "repo:write", NOW + 60));
    let req = [(":path", "/tools"), ("authorization", auth.as_str())];
    // Off by default: not one host call spent on it.
    let mut h = Fake::with(&req, &shared);
    assert_eq!(inbound_with(observing(""), Some(keyset())).on_request_headers(&mut h), Action::Continue);
    assert!(h.tags.is_empty());
    let tagging = || inbound_with(observing(r#""trace_tags":true,"#), Some(keyset()));
    let mut h = Fake::with(&req, &shared);
    assert_eq!(tagging().on_request_headers(&mut h), Action::Continue);
    let tag = |h: &Fake, n: &str| h.tags.get(n).cloned().unwrap_or_default();
    assert_eq!(tag(&h, "actorchain.decision"), "accepted");
    assert_eq!(tag(&h, "actorchain.sub"), "user1");
    assert_eq!(tag(&h, "actorchain.chain"), "oncall-agent,investigation-agent");
    // A refusal is tagged with its reason, and a refused JSON-RPC call with the rule that decided.
    let mut h = Fake::with(&[(":path", "/tools")], &shared);
    assert_eq!(tagging().on_request_headers(&mut h), Action::Pause);
    assert_eq!((tag(&h, "actorchain.decision"), tag(&h, "actorchain.reason")), ("refused".into(), "token_missing".into()));
    let mut f = tagging();
    let mut h = Fake::with(&[(":method", "POST"), (":path", "/mcp"), ("authorization", &auth)], &shared);
    h.body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"drop_db"}}"#.to_vec();
    assert_eq!(f.on_request_headers(&mut h), Action::Continue);
    let len = h.body.len();
    assert_eq!(f.on_request_body(&mut h, len, true), Action::Pause);
    assert_eq!((tag(&h, "actorchain.decision"), tag(&h, "actorchain.reason")), ("refused".into(), "no_rule".into()));

    // Outbound: the exchange's outcome reaches the request that made it and every one that waited.
    let mut cfg = outbound_cfg();
    cfg.trace_tags = true;
    let cfg = Rc::new(cfg);
    let inflight: Rc<RefCell<_>> = Rc::default();
    let subject = format!("Bearer {}", token("investigation-agent", "repo:write", NOW + 60));
    let req = [(":authority", "mcp"), (":path", "/mcp"), ("authorization", subject.as_str()), ("traceparent", TRACEPARENT)];
    let mut leader = OutboundFilter::new(cfg.clone(), Rc::default(), inflight.clone(), 1);
    let mut h = Fake::with(&req, &shared);
    assert_eq!(leader.on_request_headers(&mut h), Action::Pause);
    assert!(h.dispatched[0].1.contains(&("traceparent".into(), TRACEPARENT.into())), "the STS's span joins the call's trace");
    assert_eq!(OutboundFilter::new(cfg.clone(), Rc::default(), inflight.clone(), 2).on_request_headers(&mut h), Action::Pause);
    h.callout = Some((Some(200), sts_reply(&token("mcp-gateway", "repo:write", NOW + 120))));
    h.events.clear();
    let len = h.callout.as_ref().unwrap().1.len();
    leader.on_callout(&mut h, len);
    let tagged: Vec<&String> = h.events.iter().filter(|e| e.starts_with("tag actorchain.decision=")).collect();
    assert_eq!(tagged, ["tag actorchain.decision=exchanged", "tag actorchain.decision=exchanged"], "{:?}", h.events);
    assert!(h.events.contains(&"tag actorchain.chain=oncall-agent,investigation-agent".to_string()));
    // A cache hit says so.
    let mut h = Fake::with(&req, &shared);
    assert_eq!(OutboundFilter::new(cfg, Rc::default(), inflight, 3).on_request_headers(&mut h), Action::Continue);
    assert_eq!((tag(&h, "actorchain.decision"), tag(&h, "actorchain.audience")), ("cache_hit".into(), "mcp-gateway".into()));
}

#[test]
fn a_person_is_revoked_as_of_a_moment_and_a_lift_restores_at_every_check() {
    use actorchain_token::{RevocationEntry, RevocationFeed, RevocationKind};
    let person = |id, revoked_at, lifts| RevocationEntry {
        id,
        kind: RevocationKind::Person,
        value: format!("{IDP} user1"),
        revoked_at,
        expires_at: NOW + 600,
        lifts,
    };
    let shared = Rc::default();
    // The test tokens are issued at NOW - 5.
    let auth = format!("Bearer {}", token("mcp-gateway", "x", NOW + 60));
    let judged = |entries: Vec<RevocationEntry>| {
        let mut f = inbound(Some(keyset()));
        let cursor = entries.last().map_or(0, |e| e.id);
        f.revoked.borrow_mut().merge(RevocationFeed { cursor, entries }, NOW);
        let mut h = Fake::with(&[("authorization", &auth)], &shared);
        f.on_request_headers(&mut h);
        h.replies.first().map(|r| r.reason)
    };
    assert_eq!(judged(vec![person(1, NOW - 5, None)]), Some("person_revoked"), "issued at the moment of revocation");
    assert_eq!(judged(vec![person(1, NOW - 6, None)]), None, "issued after it: a new login");
    assert_eq!(judged(vec![person(1, NOW, None), person(2, NOW, Some(1))]), None, "lifted");
    // The outbound side judges a recorded request the same way.
    let mut vf = inbound(Some(keyset()));
    let h = accepted(&mut vf, &[("authorization", &auth)], &shared);
    let key = key_handed_over(&h);
    let call = |entries: Vec<RevocationEntry>| {
        let mut f = outbound(&Rc::default(), 9);
        f.revoked.borrow_mut().merge(RevocationFeed { cursor: 9, entries }, NOW);
        let mut h = Fake::with(&[(":authority", "mcp"), ("tracestate", &format!("actorchain={key}"))], &shared);
        f.on_request_headers(&mut h);
        (h.dispatched.len(), h.replies.first().map(|r| r.reason))
    };
    assert_eq!(call(vec![person(1, NOW, None)]), (0, Some("person_revoked")));
    assert_eq!(call(vec![person(1, NOW - 100, None)]), (1, None));
}

#[test]
fn every_decision_is_reported_in_the_ledgers_wire_format() {
    use actorchain_token::wire::Report;
    let shared = Rc::default();
    let auth = format!("Bearer {}", token("mcp-gateway", "repo:write", NOW + 60));
    // Inbound: the request accepted, then each JSON-RPC call, allowed or refused, with its rule.
    let mut f = mcp_filter();
    let mut h = Fake::with(&[(":method", "POST"), (":path", "/mcp"), ("authorization", &auth)], &shared);
    h.reporting = true;
    h.body = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_pr"}},
                  {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"drop_db"}}]"#
        .to_vec();
    assert_eq!(f.on_request_headers(&mut h), Action::Continue);
    let len = h.body.len();
    f.on_request_body(&mut h, len, true);
    let reports: Vec<Report> = h.reports.borrow().iter().map(|l| serde_json::from_str(l).expect("a wire report")).collect();
    assert!(reports.iter().all(|r| r.check().is_ok() && r.ts == NOW && r.workload.is_none()), "{reports:?}");
    let said: Vec<(&str, Option<&str>, Option<&str>)> =
        reports.iter().map(|r| (r.decision.as_str(), r.name.as_deref(), r.rule.as_deref())).collect();
    assert_eq!(said, [("accepted", None, None), ("allowed", Some("create_pr"), Some("create-pr")), ("refused", Some("drop_db"), None)]);
    assert_eq!(
        (reports[1].jti.as_deref(), reports[1].sid.as_deref(), reports[1].method.as_deref()),
        (Some("jti-1"), Some("sid-1"), Some("tools/call"))
    );
    // Outbound: the exchange, and a call served from cache (the STS never sees that one).
    let inflight = Rc::default();
    let subject = format!("Bearer {}", token("investigation-agent", "repo:write", NOW + 60));
    let req = [(":authority", "mcp"), ("authorization", subject.as_str())];
    let mut first = outbound(&inflight, 1);
    let mut h = Fake::with(&req, &shared);
    h.reporting = true;
    first.on_request_headers(&mut h);
    first.on_sts_reply(&mut h, Some(200), &sts_reply(&token("mcp-gateway", "repo:write", NOW + 120)));
    let mut hit = Fake::with(&req, &shared);
    hit.reporting = true;
    outbound(&inflight, 2).on_request_headers(&mut hit);
    for (h, decision) in [(&h, "exchanged"), (&hit, "cache_hit")] {
        let r: Report = serde_json::from_str(h.reports.borrow().last().unwrap()).unwrap();
        assert_eq!((r.decision.as_str(), r.jti.as_deref(), r.audience.as_deref()), (decision, Some("jti-1"), Some("mcp-gateway")));
    }
}

/// An inbound filter whose keys hold `k1` (EdDSA) and `e1` (ES256), adopted as from a JWKS.
fn inbound_with_es256(host_signature_verification: bool) -> (InboundFilter, PrivateKey) {
    let es = PrivateKey::from_secret_bytes(Alg::Es256, &[21; 32]).unwrap();
    let mut keys = keyset();
    keys.insert("e1".into(), es.public()).unwrap();
    let mut cfg = inbound_cfg();
    cfg.host_signature_verification = host_signature_verification;
    let f = inbound_with(cfg, None);
    f.jwks.borrow_mut().adopt(keys.to_jwks().as_bytes(), NOW).unwrap();
    (f, es)
}

fn judged(f: &mut InboundFilter, token: &str, crypto: HostCrypto) -> (Action, Option<&'static str>, u32) {
    let auth = format!("Bearer {token}");
    let mut h = Fake::with(&[("authorization", &auth)], &Rc::default());
    h.host_crypto = crypto;
    let a = f.on_request_headers(&mut h);
    let calls = *h.host_crypto_calls.borrow();
    (a, h.replies.first().map(|r| r.reason), calls)
}

#[test]
fn es256_signatures_are_checked_by_the_hosts_crypto_and_its_verdict_stands() {
    let (mut f, es) = inbound_with_es256(true);
    let good = token_signed_by(&es, "e1", "mcp-gateway", "x", NOW + 60);
    // The key and signature the host is handed verify with an independent P-256 implementation.
    assert_eq!(judged(&mut f, &good, HostCrypto::Real), (Action::Continue, None, 1));
    let (mut f, es) = inbound_with_es256(true);
    let good = token_signed_by(&es, "e1", "mcp-gateway", "x", NOW + 60);
    // The host's "no" refuses a token the filter itself would have taken.
    assert_eq!(judged(&mut f, &good, HostCrypto::Says(false)), (Action::Pause, Some("signature_invalid"), 1));
    // A forged signature, checked for real by the host, is refused.
    let mut forged = good.clone();
    forged.replace_range(forged.len() - 4.., "AAAA");
    assert_eq!(judged(&mut f, &forged, HostCrypto::Real), (Action::Pause, Some("signature_invalid"), 1));
    // A host without crypto: the filter checks, with the same verdicts.
    assert_eq!(judged(&mut f, &forged, HostCrypto::Absent), (Action::Pause, Some("signature_invalid"), 1));
    assert_eq!(judged(&mut f, &good, HostCrypto::Absent), (Action::Continue, None, 1));
}

#[test]
fn only_es256_goes_to_the_host_and_only_when_configured() {
    let (mut f, es) = inbound_with_es256(true);
    // EdDSA is checked in the filter: the host is never asked, even one that says yes to all.
    let ed_forged = {
        let mut t = token("mcp-gateway", "x", NOW + 60);
        t.replace_range(t.len() - 4.., "AAAA");
        t
    };
    assert_eq!(judged(&mut f, &ed_forged, HostCrypto::Says(true)), (Action::Pause, Some("signature_invalid"), 0));
    // A signature of the wrong length never becomes a host question.
    let good = token_signed_by(&es, "e1", "mcp-gateway", "x", NOW + 60);
    let short = format!("{}A", &good[..good.rfind('.').unwrap() + 1]);
    assert_eq!(judged(&mut f, &short, HostCrypto::Says(true)).2, 0);
    // Off: the host is never asked.
    let (mut f, es) = inbound_with_es256(false);
    let good = token_signed_by(&es, "e1", "mcp-gateway", "x", NOW + 60);
    assert_eq!(judged(&mut f, &good, HostCrypto::Says(false)), (Action::Continue, None, 0));
}
