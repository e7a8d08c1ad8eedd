//! The filter's request flow, natively, against a fake host: every decision without Envoy.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use actorchain::config::{Config, InboundConfig, OutboundConfig, StsConfig};
use actorchain::filter::{Action, InboundFilter, Jwks, OutboundFilter, Verdict};
use actorchain::host::{Host, SharedData};
use actorchain::reply::LocalReply;
use actorchain::singleflight::Inflight;
use actorchain::slots::{self, SharedSlots};
use actorchain_token::{extend_chain, sign_compact, Alg, ChainLimits, Claims, KeySet, PrivateKey, TYP_ACCESS_TOKEN};

const NOW: u64 = 1_800_000_000;
const ISS: &str = "https://sts.actorchain.dev";

/// Envoy's shared data: value and version by key.
type Shared = HashMap<String, (Vec<u8>, u32)>;

#[derive(Default)]
struct Fake {
    headers: Vec<(String, String)>,
    peer: Option<String>,
    body: Vec<u8>,
    response_headers: Vec<(String, String)>,
    response: Vec<u8>,
    shared: Rc<RefCell<Shared>>,
    replies: Vec<LocalReply>,
    dispatched: Vec<(Vec<(String, String)>, String)>,
    audits: RefCell<Vec<String>>,
    counts: Vec<String>,
    dispatch_fails: bool,
}

impl Fake {
    fn with(headers: &[(&str, &str)], shared: &Rc<RefCell<Shared>>) -> Fake {
        Fake {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            shared: shared.clone(),
            ..Default::default()
        }
    }
    fn header(&self, n: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str())
    }
}

impl SharedData for Fake {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()).filter(|v| !v.is_empty()), Some(*cas)),
            None => (None, None),
        }
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let mut map = self.shared.borrow_mut();
        let version = map.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != version {
            return false;
        }
        map.insert(key.to_string(), (value.to_vec(), version.unwrap_or(0) + 1));
        true
    }
}

impl Host for Fake {
    fn now(&self) -> u64 {
        NOW
    }
    fn request_header(&self, name: &str) -> Option<String> {
        self.header(name).map(String::from)
    }
    fn request_headers(&self) -> Vec<(String, String)> {
        self.headers.clone()
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        self.headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.headers.push((name.to_string(), v.to_string()));
        }
    }
    fn peer_identity(&self) -> Option<String> {
        self.peer.clone()
    }
    fn request_body(&self, len: usize) -> Vec<u8> {
        self.body[..len.min(self.body.len())].to_vec()
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        self.response_headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            self.response_headers.push((name.to_string(), v.to_string()));
        }
    }
    fn response_body(&self, len: usize) -> Vec<u8> {
        self.response[..len.min(self.response.len())].to_vec()
    }
    fn set_response_body(&mut self, len: usize, body: &[u8]) {
        self.response.splice(..len.min(self.response.len()), body.iter().copied());
    }
    fn send_reply(&mut self, reply: &LocalReply) {
        self.replies.push(reply.clone());
    }
    fn dispatch(&mut self, _sts: &StsConfig, headers: &[(&str, &str)], body: &[u8]) -> Result<u32, String> {
        if self.dispatch_fails {
            return Err("no healthy upstream".into());
        }
        self.dispatched
            .push((headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), String::from_utf8(body.to_vec()).unwrap()));
        Ok(self.dispatched.len() as u32)
    }
    fn audit_enabled(&self) -> bool {
        true
    }
    fn audit(&self, line: &str) {
        assert!(!line.contains("eyJ"), "a token reached the audit log: {line}");
        self.audits.borrow_mut().push(line.to_string());
    }
    fn count(&mut self, metric: &str) {
        self.counts.push(metric.to_string());
    }
}

fn key() -> PrivateKey {
    PrivateKey::from_secret_bytes(Alg::EdDsa, &[11; 32]).unwrap()
}

fn keyset() -> KeySet {
    let mut s = KeySet::default();
    s.insert("k1".into(), key().public()).unwrap();
    s
}

fn token(aud: &str, scope: &str, exp: u64) -> String {
    let l = ChainLimits::default();
    let a = extend_chain(None, "oncall-agent", "spiffe://actorchain.dev/workload/oncall", l).unwrap();
    let act = extend_chain(Some(&a), "investigation-agent", "spiffe://actorchain.dev/workload/investigation", l).unwrap();
    let c = Claims {
        iss: ISS.into(),
        sub: "user1".into(),
        aud: aud.into(),
        client_id: "investigation-agent".into(),
        act,
        scope: scope.into(),
        iat: exp.min(NOW) - 5,
        nbf: exp.min(NOW) - 5,
        exp,
        jti: "jti-1".into(),
        sid: "sid-1".into(),
        ext: Default::default(),
    };
    sign_compact(&c, &key(), "k1", Some(TYP_ACCESS_TOKEN))
}

/// The STS's RFC 8693 answer carrying `token`.
fn sts_reply(token: &str) -> Vec<u8> {
    serde_json::json!({"access_token": token, "expires_in": 120, "token_type": "Bearer"}).to_string().into_bytes()
}

fn inbound_cfg() -> InboundConfig {
    let j = r#"{"mode":"inbound","issuer":"https://sts.actorchain.dev","audience":"mcp-gateway","sts":{"cluster":"sts"},
        "rules":[{"method":"POST","path_prefix":"/admin","scopes":["admin:all"]},
                  {"path_prefix":"/tools","scopes":["repo:write"],"originators":["user1"]}]}"#;
    match Config::parse(j.as_bytes()).unwrap() {
        Config::Inbound(c) => c,
        Config::Outbound(_) => unreachable!(),
    }
}

fn outbound_cfg() -> OutboundConfig {
    let j = r#"{"mode":"outbound","agent":"investigation-agent","sts":{"cluster":"sts"},"destinations":{"mcp":"mcp-gateway"}}"#;
    match Config::parse(j.as_bytes()).unwrap() {
        Config::Outbound(c) => c,
        Config::Inbound(_) => unreachable!(),
    }
}

fn inbound(keys: Option<KeySet>) -> InboundFilter {
    let jwks = Jwks { keys: keys.map(Rc::new), ..Default::default() };
    InboundFilter::new(Rc::new(inbound_cfg()), Rc::new(RefCell::new(jwks)), Rc::default())
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
            ("traceparent", TRACEPARENT),
        ],
        &shared,
    );
    let mut f = inbound(Some(keyset()));
    assert_eq!(f.on_request_headers(&mut h), Action::Continue);
    assert!(h.replies.is_empty());
    assert_eq!(h.header("x-actorchain-sub"), Some("user1"));
    assert_eq!(h.header("x-actorchain-agent"), Some("investigation-agent"));
    assert_eq!(h.header("x-actorchain-chain"), Some("oncall-agent,investigation-agent"));
    assert_eq!(h.header("x-actorchain-scope"), Some("incidents:read repo:write"));
    assert_eq!(h.header("x-actorchain-sid"), Some("sid-1"));
    assert!(h.headers.iter().all(|(k, _)| k != "X-Actorchain-Chain"));
    let audit: serde_json::Value = serde_json::from_str(&h.audits.borrow()[0]).unwrap();
    assert_eq!(audit["decision"], "accepted");
    assert_eq!(audit["chain"], serde_json::json!(["oncall-agent", "investigation-agent"]));
    assert_eq!(audit["sub"], "user1");
    // Recorded for the outbound side under the trace id.
    let slots = SharedSlots::new(slots::DEFAULT_SLOTS);
    let rec = slots.trace.get(&h, "actorchain.subject.trace.4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    assert!(String::from_utf8(rec).unwrap().ends_with(&t));
    // In a bounded slot, under a name that says nothing about the request.
    assert!(shared.borrow().keys().all(|k| !k.contains("4bf92f35")));
    // When the request ends the record is marked done (it gives way first), still readable.
    f.on_done(&mut h);
    assert!(slots.trace.get(&h, "actorchain.subject.trace.4bf92f3577b34da6a3ce929d0e0e4736").is_some());
    assert!(shared.borrow().values().any(|(v, _)| String::from_utf8_lossy(v).lines().next().is_some_and(|l| l.ends_with(" D"))));
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

fn outbound(inflight: &Rc<RefCell<Inflight>>, ctx: u32) -> OutboundFilter {
    OutboundFilter { cfg: Rc::new(outbound_cfg()), revoked: Rc::default(), inflight: inflight.clone(), context_id: ctx, pending: None }
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
    let (hdrs, body) = &h1.dispatched[0];
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

#[test]
fn outbound_finds_the_subject_through_trace_context() {
    let shared = Rc::default();
    let t = token("mcp-gateway", "repo:write", NOW + 60);
    let auth = format!("Bearer {t}");
    // The inbound side of the same sidecar accepted a request in this trace...
    inbound(Some(keyset())).on_request_headers(&mut Fake::with(&[("authorization", &auth), ("traceparent", TRACEPARENT)], &shared));
    // ...and the app's outbound call carries only the trace context.
    let child_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01";
    let mut h = Fake::with(&[(":authority", "mcp"), ("traceparent", child_span)], &shared);
    let inflight = Rc::default();
    assert_eq!(outbound(&inflight, 1).on_request_headers(&mut h), Action::Pause);
    let form: HashMap<String, String> = form_urlencoded::parse(h.dispatched[0].1.as_bytes()).into_owned().collect();
    assert_eq!(form["subject_token"], t);
}

#[test]
fn outbound_lets_a_scheduled_agent_act_as_itself_when_configured() {
    let shared = Rc::default();
    let inflight = Rc::default();
    let cfg = OutboundConfig { act_as_self: true, ..outbound_cfg() };
    let mut f = OutboundFilter { cfg: Rc::new(cfg), revoked: Rc::default(), inflight, context_id: 1, pending: None };
    let mut h = Fake::with(&[(":authority", "mcp")], &shared);
    assert_eq!(f.on_request_headers(&mut h), Action::Pause);
    let form: HashMap<String, String> = form_urlencoded::parse(h.dispatched[0].1.as_bytes()).into_owned().collect();
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
    let mut f = inbound(Some(keyset()));
    let mut from_owner = Fake::with(&[("authorization", &auth)], &shared);
    from_owner.peer = Some("spiffe://actorchain.dev/workload/investigation".into());
    assert_eq!(f.on_request_headers(&mut from_owner), Action::Continue);
    let mut stolen = Fake::with(&[("authorization", &auth)], &shared);
    stolen.peer = Some("spiffe://actorchain.dev/workload/monitoring".into());
    assert_eq!(f.on_request_headers(&mut stolen), Action::Pause);
    assert_eq!((stolen.replies[0].status, stolen.replies[0].reason), (401, "sender_mismatch"));
    // Without mTLS there is no peer to compare; with binding off, nothing is compared.
    assert_eq!(f.on_request_headers(&mut Fake::with(&[("authorization", &auth)], &shared)), Action::Continue);
    let mut off = inbound(Some(keyset()));
    off.cfg = Rc::new(InboundConfig { sender_binding: false, ..inbound_cfg() });
    let mut stolen = Fake::with(&[("authorization", &auth)], &shared);
    stolen.peer = Some("spiffe://actorchain.dev/workload/monitoring".into());
    assert_eq!(off.on_request_headers(&mut stolen), Action::Continue);
}

fn mcp_filter() -> InboundFilter {
    let j = r#"{"mode":"inbound","issuer":"https://sts.actorchain.dev","audience":"mcp-gateway","sts":{"cluster":"sts"},
        "mcp":{"path_prefix":"/mcp","max_body_bytes":2048},
        "rules":[{"id":"create-pr","mcp_method":"tools/call","name":"create_pr","scopes":["repo:write"],
                  "actors":["investigation-agent"],"chain_includes":["oncall-agent"]},
                 {"id":"read","mcp_method":"tools/call","name":"read_*"}]}"#;
    let Config::Inbound(cfg) = Config::parse(j.as_bytes()).unwrap() else { unreachable!() };
    let jwks = Jwks { keys: Some(Rc::new(keyset())), ..Default::default() };
    InboundFilter::new(Rc::new(cfg), Rc::new(RefCell::new(jwks)), Rc::default())
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
