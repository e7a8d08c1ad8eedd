//! The root context's work natively, against the fake host: fetching and sharing the JWKS and the
//! revocation feed, keeping what a worker had when a fetch fails, and ending the requests that
//! waited for one exchange.

mod fake;

use std::rc::Rc;
use std::time::Duration;

use actorchain::config::{Config, StsConfig};
use actorchain::filter::{Action, OutboundFilter};
use actorchain::root::{Jwks, JwksSchedule, Root};
use actorchain_token::RevocationKind;
use fake::*;

fn sts() -> StsConfig {
    let j = r#"{"mode":"outbound","agent":"investigation-agent","sts":{"cluster":"sts","authority":"sts.example"},"destinations":{"mcp":"mcp-gateway"}}"#;
    match Config::parse(j.as_bytes()).unwrap() {
        Config::Outbound(c) => c.sts,
        Config::Inbound(_) => unreachable!(),
    }
}

fn inbound_root() -> Root {
    let schedule = JwksSchedule { refresh: Duration::from_secs(60), min_refetch: Duration::from_secs(10) };
    Root::new(sts(), Some(schedule), Jwks::default())
}

/// The paths of the callouts made so far, and the last one's token.
fn paths(h: &Fake) -> Vec<String> {
    h.dispatched.iter().map(|(_, hdrs, _)| hdrs.iter().find(|(k, _)| k == ":path").unwrap().1.clone()).collect()
}

/// Delivers `status` and `body` as the answer to callout `token`.
fn answer(root: &mut Root, h: &mut Fake, token: u32, status: Option<u32>, body: &[u8]) -> bool {
    h.callout = Some((status, body.to_vec()));
    root.on_callout(h, token, body.len())
}

#[test]
fn keys_are_fetched_shared_and_kept_when_a_fetch_fails() {
    let shared = Rc::default();
    let mut root = inbound_root();
    let mut h = Fake::with(&[], &shared);
    h.now_ms = NOW * 1000;
    root.on_tick(&mut h);
    assert_eq!(paths(&h), ["/revocations?since=0", "/.well-known/jwks.json"]);
    assert_eq!(h.dispatched[1].0, "sts");
    assert!(h.dispatched[1].1.contains(&(":authority".into(), "sts.example".into())));
    // A fetch in flight is not started again.
    root.on_tick(&mut h);
    assert_eq!(h.dispatched.len(), 2);
    // Callouts that are not ours are left alone.
    assert!(!answer(&mut root, &mut h, 99, Some(200), b"{}"));

    assert!(answer(&mut root, &mut h, 2, Some(200), keyset().to_jwks().as_bytes()));
    assert_eq!(root.jwks.borrow().keys.as_deref(), Some(&keyset()));
    assert!(h.counts.contains(&"actorchain.jwks.fetch_ok".to_string()));
    // Another worker takes the keys up from shared data instead of fetching them.
    let mut other = inbound_root();
    let mut h2 = Fake::with(&[], &shared);
    other.on_tick(&mut h2);
    assert_eq!(other.jwks.borrow().keys.as_deref(), Some(&keyset()));
    assert!(!paths(&h2).iter().any(|p| p.contains("jwks")), "no second JWKS fetch: {:?}", paths(&h2));

    // An unknown kid asks for a refetch; a poisoned answer, or none, keeps the keys.
    root.jwks.borrow_mut().refetch_wanted = true;
    root.jwks.borrow_mut().last_attempt = NOW - 10;
    root.on_tick(&mut h);
    let token = h.dispatched.len() as u32;
    assert_eq!(paths(&h).last().map(String::as_str), Some("/.well-known/jwks.json"));
    assert!(answer(&mut root, &mut h, token, Some(200), br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA","kid":"z"}]}"#));
    assert_eq!(root.jwks.borrow().keys.as_deref(), Some(&keyset()));
    assert!(h.counts.contains(&"actorchain.jwks.fetch_failed".to_string()));
    assert!(h.warnings.borrow().iter().any(|w| w.contains("kept previous keys")));
    assert!(!root.jwks.borrow().in_flight);
}

#[test]
fn a_fetch_that_cannot_start_is_reported_and_tried_again() {
    let shared = Rc::default();
    let mut root = inbound_root();
    let mut h = Fake::with(&[], &shared);
    h.dispatch_fails = true;
    root.on_tick(&mut h);
    assert!(h.warnings.borrow().iter().any(|w| w.contains("no healthy upstream")));
    assert!(!root.jwks.borrow().in_flight && !root.revoked.borrow().in_flight);
    h.dispatch_fails = false;
    h.now_ms += 1000;
    root.jwks.borrow_mut().last_attempt -= 1;
    root.on_tick(&mut h);
    assert_eq!(paths(&h), ["/revocations?since=0", "/.well-known/jwks.json"]);
}

#[test]
fn the_revocation_feed_is_followed_shared_and_kept_when_the_sts_fails() {
    let shared = Rc::default();
    let mut root = Root::new(sts(), None, Jwks::default());
    let mut h = Fake::with(&[], &shared);
    h.now_ms = NOW * 1000;
    root.on_tick(&mut h);
    assert_eq!(paths(&h), ["/revocations?since=0"], "an outbound root fetches no keys");
    let feed =
        format!(r#"{{"cursor":7,"entries":[{{"id":7,"kind":"session","value":"sid-1","revoked_at":{NOW},"expires_at":{}}}]}}"#, NOW + 600);
    assert!(answer(&mut root, &mut h, 1, Some(200), feed.as_bytes()));
    assert!(root.revoked.borrow().set.contains(RevocationKind::Session, "sid-1"));
    // The next read asks from the cursor; the other worker adopts the merged state.
    h.now_ms += 1000;
    root.on_tick(&mut h);
    assert_eq!(paths(&h).last().map(String::as_str), Some("/revocations?since=7"));
    let mut other = Root::new(sts(), None, Jwks::default());
    other.on_tick(&mut Fake::with(&[], &shared));
    assert!(other.revoked.borrow().set.contains(RevocationKind::Session, "sid-1"));
    // The STS failing changes nothing that was known.
    assert!(answer(&mut root, &mut h, 2, Some(503), b"upstream connect error"));
    assert!(root.revoked.borrow().set.contains(RevocationKind::Session, "sid-1"));
    assert!(h.counts.contains(&"actorchain.revocations.fetch_failed".to_string()));
    assert_eq!(h.gauges.get("actorchain.revocations.entries"), Some(&1));
}

#[test]
fn one_answer_ends_every_request_that_waited_for_it() {
    let shared = Rc::default();
    let inflight = Rc::default();
    let auth = format!("Bearer {}", token("investigation-agent", "repo:write", NOW + 60));
    let req = [(":authority", "mcp"), ("authorization", auth.as_str())];
    let mut filters: Vec<OutboundFilter> = (1..=3).map(|ctx| outbound(&inflight, ctx)).collect();
    for f in &mut filters {
        assert_eq!(f.on_request_headers(&mut Fake::with(&req, &shared)), Action::Pause);
    }
    // The third request's client went away meanwhile.
    let mut h = Fake::with(&req, &shared);
    h.gone = vec![3];
    h.callout = Some((Some(200), sts_reply(&token("mcp-gateway", "repo:write", NOW + 120))));
    let body_size = h.callout.as_ref().unwrap().1.len();
    filters[0].on_callout(&mut h, body_size);
    assert_eq!(h.events, ["resume", "switch 2", "resume", "gone 3"]);
    assert!(h.header("authorization").is_some_and(|a| a.starts_with("Bearer ey")));
}

#[test]
fn requests_waiting_for_an_abandoned_exchange_are_refused_not_left_hanging() {
    let shared = Rc::default();
    let inflight = Rc::default();
    let auth = format!("Bearer {}", token("investigation-agent", "repo:write", NOW + 60));
    let req = [(":authority", "mcp"), ("authorization", auth.as_str())];
    let mut leader = outbound(&inflight, 1);
    let mut follower = outbound(&inflight, 2);
    leader.on_request_headers(&mut Fake::with(&req, &shared));
    follower.on_request_headers(&mut Fake::with(&req, &shared));
    let mut h = Fake::with(&[], &shared);
    // A follower ending changes nothing; the leader ending releases the follower with a refusal.
    follower.on_done(&mut h);
    assert!(h.events.is_empty());
    leader.on_done(&mut h);
    assert_eq!(h.events, ["switch 2", "reply exchange_abandoned"]);
}
