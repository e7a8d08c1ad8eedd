//! A fake proxy for native tests: headers, peer, bodies, shared data with versions, callouts and
//! paused requests, recording everything the filter asks of it. Shared by the filter's test files.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use actorchain::config::{Config, OutboundConfig};
use actorchain::filter::OutboundFilter;
use actorchain::host::{Host, SharedData};
use actorchain::reply::LocalReply;
use actorchain::singleflight::Inflight;
use actorchain_token::{extend_chain, sign_compact, Alg, ChainLimits, Claims, KeySet, PrivateKey, SubjectId, TYP_ACCESS_TOKEN};

pub const NOW: u64 = 1_800_000_000;
pub const ISS: &str = "https://sts.actorchain.dev";
pub const IDP: &str = "https://idp.actorchain.dev";
/// The workload the test tokens' current actor was attested on: their rightful presenter.
pub const INVESTIGATION: &str = "spiffe://actorchain.dev/workload/investigation";

/// Envoy's shared data: value and version by key.
pub type Shared = HashMap<String, (Vec<u8>, u32)>;

/// A callout made: cluster, headers, body.
pub type Callout = (String, Vec<(String, String)>, String);

#[derive(Default)]
pub struct Fake {
    pub headers: Vec<(String, String)>,
    pub peer: Option<String>,
    pub body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    pub response: Vec<u8>,
    pub shared: Rc<RefCell<Shared>>,
    pub replies: Vec<LocalReply>,
    pub dispatched: Vec<Callout>,
    pub audits: RefCell<Vec<String>>,
    pub warnings: RefCell<Vec<String>>,
    pub counts: Vec<String>,
    pub gauges: HashMap<String, u64>,
    /// Trace tags set on the request (filter state in Envoy).
    pub tags: HashMap<String, String>,
    /// Decision lines reported to the ledger, when `reporting`.
    pub reporting: bool,
    pub reports: RefCell<Vec<String>>,
    /// The keys of repeatable decisions reported, and how many were counted again on them.
    pub repeat_keys: RefCell<Vec<String>>,
    pub repeated: RefCell<u64>,
    pub dispatch_fails: bool,
    /// The callout answer being delivered: status and body.
    pub callout: Option<(Option<u32>, Vec<u8>)>,
    /// What happened to paused requests, in order: `switch <ctx>`, `gone <ctx>`, `resume`, `reply <reason>`.
    pub events: Vec<String>,
    /// Contexts whose client went away.
    pub gone: Vec<u32>,
    pub now_ms: u64,
    /// What the host's crypto does with an ES256 signature, and how often it was asked.
    pub host_crypto: HostCrypto,
    pub host_crypto_calls: RefCell<u32>,
}

/// A host's signature checking, as Envoy's `verify_signature` would do it.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub enum HostCrypto {
    /// The host has none (the native build, an Envoy without the foreign function).
    #[default]
    Absent,
    /// It checks with the DER key and signature it is handed, as BoringSSL would.
    Real,
    /// It answers this, whatever it is handed.
    Says(bool),
}

impl Fake {
    /// A request over mTLS from the workload the test tokens were issued to.
    pub fn with(headers: &[(&str, &str)], shared: &Rc<RefCell<Shared>>) -> Fake {
        Fake {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            peer: Some(INVESTIGATION.into()),
            shared: shared.clone(),
            ..Default::default()
        }
    }
    pub fn header(&self, n: &str) -> Option<&str> {
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
    fn now_ms(&self) -> u64 {
        self.now_ms
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
        self.events.push(format!("reply {}", reply.reason));
        self.replies.push(reply.clone());
    }
    fn dispatch(&mut self, cluster: &str, _timeout: Duration, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<u32, String> {
        if self.dispatch_fails {
            return Err("no healthy upstream".into());
        }
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.dispatched.push((cluster.to_string(), headers, String::from_utf8(body.unwrap_or_default().to_vec()).unwrap()));
        Ok(self.dispatched.len() as u32)
    }
    fn callout_status(&self) -> Option<u32> {
        self.callout.as_ref().and_then(|(s, _)| *s)
    }
    fn callout_body(&self, len: usize) -> Vec<u8> {
        self.callout.as_ref().map(|(_, b)| b[..len.min(b.len())].to_vec()).unwrap_or_default()
    }
    fn switch_to(&mut self, context: u32) -> bool {
        let here = !self.gone.contains(&context);
        self.events.push(format!("{} {context}", if here { "switch" } else { "gone" }));
        here
    }
    fn resume_request(&mut self) {
        self.events.push("resume".into());
    }
    fn audit_enabled(&self) -> bool {
        true
    }
    fn audit(&self, line: &str) {
        assert!(!line.contains("eyJ"), "a token reached the audit log: {line}");
        self.audits.borrow_mut().push(line.to_string());
    }
    fn warn(&self, line: &str) {
        self.warnings.borrow_mut().push(line.to_string());
    }
    fn set_trace_tag(&mut self, name: &str, value: &str) {
        self.events.push(format!("tag {name}={value}"));
        self.tags.insert(name.to_string(), value.to_string());
    }
    fn verify_es256(&self, spki_der: &[u8], message: &[u8], der_signature: &[u8]) -> Option<bool> {
        use p256::ecdsa::signature::Verifier;
        use p256::pkcs8::DecodePublicKey;
        *self.host_crypto_calls.borrow_mut() += 1;
        match self.host_crypto {
            HostCrypto::Absent => None,
            HostCrypto::Says(v) => Some(v),
            HostCrypto::Real => {
                let key = p256::ecdsa::VerifyingKey::from_public_key_der(spki_der).ok()?;
                let sig = p256::ecdsa::Signature::from_der(der_signature).ok()?;
                Some(key.verify(message, &sig).is_ok())
            }
        }
    }
    fn count_by(&mut self, metric: &str, n: u64) {
        assert!(actorchain::metrics::declared(metric), "metric {metric} is not in actorchain::metrics");
        for _ in 0..n {
            self.counts.push(metric.to_string());
        }
    }
    fn reporting(&self) -> bool {
        self.reporting
    }
    fn report(&self, line: &str, repeat_key: Option<&str>) {
        self.reports.borrow_mut().push(line.to_string());
        if let Some(k) = repeat_key {
            self.repeat_keys.borrow_mut().push(k.to_string());
        }
    }
    fn report_repeat(&self, key: &str) -> bool {
        let known = self.repeat_keys.borrow().iter().any(|k| k == key);
        if known {
            *self.repeated.borrow_mut() += 1;
        }
        known
    }
    fn gauge(&mut self, metric: &str, value: u64) {
        assert!(actorchain::metrics::GAUGES.contains(&metric), "gauge {metric} is not in actorchain::metrics");
        self.gauges.insert(metric.to_string(), value);
    }
}

pub fn key() -> PrivateKey {
    PrivateKey::from_secret_bytes(Alg::EdDsa, &[11; 32]).unwrap()
}

pub fn keyset() -> KeySet {
    let mut s = KeySet::default();
    s.insert("k1".into(), key().public()).unwrap();
    s
}

pub fn token(aud: &str, scope: &str, exp: u64) -> String {
    token_signed_by(&key(), "k1", aud, scope, exp)
}

/// As `token`, signed by `key` under `kid`.
pub fn token_signed_by(key: &PrivateKey, kid: &str, aud: &str, scope: &str, exp: u64) -> String {
    let l = ChainLimits::default();
    let a = extend_chain(None, "oncall-agent", "spiffe://actorchain.dev/workload/oncall", l).unwrap();
    let act = extend_chain(Some(&a), "investigation-agent", INVESTIGATION, l).unwrap();
    let c = Claims {
        iss: ISS.into(),
        sub: "user1".into(),
        sub_id: SubjectId::new(IDP, "user1"),
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
    sign_compact(&c, key, kid, Some(TYP_ACCESS_TOKEN))
}

/// The STS's RFC 8693 answer carrying `token`.
pub fn sts_reply(token: &str) -> Vec<u8> {
    let answer = actorchain_token::wire::ExchangeResponse {
        access_token: token.to_string(),
        issued_token_type: actorchain_token::wire::TT_ACCESS_TOKEN.into(),
        token_type: "Bearer".into(),
        expires_in: 120,
        scope: String::new(),
    };
    serde_json::to_vec(&answer).unwrap()
}

/// The investigation agent's egress: `mcp` is the MCP gateway.
pub fn outbound_cfg() -> OutboundConfig {
    let j = r#"{"mode":"outbound","agent":"investigation-agent","sts":{"cluster":"sts"},"destinations":{"mcp":"mcp-gateway"}}"#;
    match Config::parse(j.as_bytes()).unwrap() {
        Config::Outbound(c) => c,
        Config::Inbound(_) => unreachable!(),
    }
}

/// Request `ctx`'s outbound filter, sharing `inflight` with the worker's other requests.
pub fn outbound(inflight: &Rc<RefCell<Inflight>>, ctx: u32) -> OutboundFilter {
    OutboundFilter::new(Rc::new(outbound_cfg()), Rc::default(), inflight.clone(), ctx)
}
