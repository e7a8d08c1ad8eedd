//! The root context's work, once per worker: fetching the STS's JWKS (inbound) and revocation feed
//! (both directions) on a timer, adopting what another worker fetched first (shared data),
//! sending the worker's decision reports to the ledger, and reading the answers. One state machine keyed by callout token, talking to the proxy only
//! through `Host`, so it runs the same in Envoy and in native tests.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use actorchain_token::{KeySet, RevocationFeed, MAX_JWKS_BYTES};
use serde_json::json;

use crate::cache;
use crate::config::StsConfig;
use crate::host::Host;
use crate::reports::{Reports, Sent};
use crate::revocation_feed::{self, Revocations};
use crate::verified_cache::VerifiedCache;

/// The verification keys of one worker, and when to fetch them again.
#[derive(Debug, Default)]
pub struct Jwks {
    pub keys: Option<Rc<KeySet>>,
    /// Shared-data version last adopted, to notice what another worker fetched.
    pub adopted_cas: Option<u32>,
    pub fetched_at: u64,
    pub last_attempt: u64,
    pub in_flight: bool,
    /// A token named a `kid` we lack: fetch again soon, rate-limited.
    pub refetch_wanted: bool,
    /// Tokens verified under these keys.
    pub verified: VerifiedCache,
    /// The DER key of each P-256 `kid`, for a host that checks ES256 signatures itself.
    pub spki: HashMap<String, Vec<u8>>,
}

/// Shared-data key of the JWKS document every worker adopts: `"<fetched_at>\n<jwks json>"`, one
/// per STS (`shared_key`).
pub const JWKS_KEY: &str = "actorchain.jwks";

/// The shared-data key of what the STS of `sts` publishes under `base`: filters of one VM
/// (natively, of one Envoy) that talk to different STSes never adopt each other's keys or
/// revocations.
pub fn shared_key(base: &str, sts: &StsConfig) -> String {
    format!("{base}/{}/{}", sts.cluster, sts.authority)
}

impl Jwks {
    /// Whether to start a fetch now. Until keys arrive, retry every second; then refresh on
    /// schedule, or sooner (bounded by `min_refetch`) after an unknown `kid`.
    pub fn should_fetch(&self, now: u64, refresh: u64, min_refetch: u64) -> bool {
        if self.in_flight {
            return false;
        }
        let since_attempt = now.saturating_sub(self.last_attempt);
        match self.keys {
            None => since_attempt >= 1,
            Some(_) => {
                now.saturating_sub(self.fetched_at) >= refresh && since_attempt >= 1 || self.refetch_wanted && since_attempt >= min_refetch
            }
        }
    }

    /// Adopts a JWKS document. A document that does not parse changes nothing: the old keys stay.
    pub fn adopt(&mut self, json: &[u8], fetched_at: u64) -> Result<(), actorchain_token::TokenError> {
        let set = KeySet::from_jwks(json)?;
        if self.keys.as_deref() != Some(&set) {
            self.verified.clear();
            self.spki = set.iter().filter_map(|(kid, k)| Some((kid.to_string(), k.p256_spki_der()?))).collect();
        }
        self.keys = Some(Rc::new(set));
        self.fetched_at = fetched_at;
        self.refetch_wanted = false;
        Ok(())
    }
}

/// Largest revocation feed read in one answer.
const MAX_FEED_BYTES: usize = 1 << 20;

/// What a callout in flight was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetch {
    Jwks,
    Revocations,
    Reports,
}

/// How often the keys are fetched: on schedule, and sooner (rate-limited) after an unknown `kid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksSchedule {
    pub refresh: Duration,
    pub min_refetch: Duration,
}

pub struct Root {
    sts: StsConfig,
    /// Inbound roots verify tokens, so they keep keys; outbound ones do not.
    jwks_schedule: Option<JwksSchedule>,
    pub jwks: Rc<RefCell<Jwks>>,
    pub revoked: Rc<RefCell<Revocations>>,
    /// This worker's decisions on their way to the ledger (the host appends, the root sends).
    pub reports: Rc<RefCell<Reports>>,
    pending: HashMap<u32, Fetch>,
    /// This STS's keys and revocations in shared data.
    jwks_key: String,
    feed_key: String,
}

impl Root {
    pub fn new(sts: StsConfig, jwks_schedule: Option<JwksSchedule>, jwks: Jwks) -> Root {
        let reports = Rc::new(RefCell::new(Reports::new(sts.reports)));
        let (jwks_key, feed_key) = (shared_key(JWKS_KEY, &sts), shared_key(revocation_feed::SHARED_KEY, &sts));
        Root {
            sts,
            jwks_schedule,
            jwks: Rc::new(RefCell::new(jwks)),
            revoked: Rc::default(),
            reports,
            pending: HashMap::new(),
            jwks_key,
            feed_key,
        }
    }

    /// Calls `path` on the STS (a GET, or a POST of a JSON `body`); the token its answer will
    /// come under.
    fn fetch<H: Host>(&mut self, host: &mut H, what: Fetch, path: &str, body: Option<&[u8]>) -> bool {
        let method = if body.is_some() { "POST" } else { "GET" };
        let mut headers = vec![(":method", method), (":path", path), (":authority", self.sts.authority.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        match host.dispatch(&self.sts.cluster, self.sts.timeout, &headers, body) {
            Ok(token) => {
                self.pending.insert(token, what);
                true
            }
            Err(e) => {
                let kind = match what {
                    Fetch::Jwks => "jwks",
                    Fetch::Revocations => "revocations",
                    Fetch::Reports => "reports",
                };
                host.warn(&json!({"kind": kind, "error": e}).to_string());
                false
            }
        }
    }

    pub fn on_tick<H: Host>(&mut self, host: &mut H) {
        let now = host.now();
        self.tick_revocations(host, now);
        self.tick_reports(host);
        if let Some(schedule) = self.jwks_schedule {
            self.tick_jwks(host, now, schedule);
        }
    }

    /// Takes up the keys and revocations another worker published in shared data (natively: the
    /// one root that fetches for every worker), if they are newer than what this one holds.
    pub fn adopt_shared<H: Host>(&mut self, host: &H, now: u64) {
        self.adopt_revocations(host, now);
        if self.jwks_schedule.is_some() {
            self.adopt_jwks(host);
        }
    }

    fn adopt_revocations<H: Host>(&mut self, host: &H, now: u64) {
        if let (Some(data), cas) = host.shared_get(&self.feed_key) {
            let mut r = self.revoked.borrow_mut();
            if cas.is_some() && cas != r.adopted_cas && r.adopt(&data, now) {
                r.adopted_cas = cas;
            }
        }
    }

    fn adopt_jwks<H: Host>(&mut self, host: &H) {
        if let (Some(data), cas) = host.shared_get(&self.jwks_key) {
            let mut jwks = self.jwks.borrow_mut();
            if cas.is_some() && cas != jwks.adopted_cas {
                if let Some((fetched_at, doc)) = cache::unstamp(&data) {
                    if jwks.adopt(doc.as_bytes(), fetched_at).is_ok() {
                        jwks.adopted_cas = cas;
                    }
                }
            }
        }
    }

    fn tick_revocations<H: Host>(&mut self, host: &mut H, now: u64) {
        self.adopt_revocations(host, now);
        let now_ms = host.now_ms();
        let path = {
            let mut r = self.revoked.borrow_mut();
            r.prune(now);
            host.gauge("actorchain.revocations.entries", r.len() as u64);
            if r.fetched_at > 0 {
                host.gauge("actorchain.revocations.lag_seconds", now.saturating_sub(r.fetched_at));
            }
            if !r.should_fetch(now_ms, self.sts.revocation_refresh.as_millis() as u64) {
                return;
            }
            r.last_attempt_ms = now_ms;
            format!("{}?since={}", self.sts.revocations_path, r.cursor)
        };
        let started = self.fetch(host, Fetch::Revocations, &path, None);
        self.revoked.borrow_mut().in_flight = started;
    }

    /// Sends a batch of decision reports when one is due; counts what the buffer could not hold.
    fn tick_reports<H: Host>(&mut self, host: &mut H) {
        let now_ms = host.now_ms();
        let body = {
            let mut r = self.reports.borrow_mut();
            host.gauge("actorchain.reports.buffered", r.len() as u64);
            if r.dropped > r.dropped_counted {
                host.count_by("actorchain.reports.dropped", r.dropped - r.dropped_counted);
                r.dropped_counted = r.dropped;
            }
            if !r.due(now_ms) {
                return;
            }
            r.next_batch(now_ms)
        };
        if !self.fetch(host, Fetch::Reports, actorchain_token::wire::REPORTS_PATH, Some(&body)) {
            self.reports.borrow_mut().answered(Sent::Failed);
        }
    }

    fn tick_jwks<H: Host>(&mut self, host: &mut H, now: u64, schedule: JwksSchedule) {
        self.adopt_jwks(host);
        let (fetched_at, due) = {
            let j = self.jwks.borrow();
            (j.fetched_at, j.should_fetch(now, schedule.refresh.as_secs(), schedule.min_refetch.as_secs()))
        };
        if fetched_at > 0 {
            host.gauge("actorchain.jwks.age_seconds", now.saturating_sub(fetched_at));
        }
        if due {
            self.jwks.borrow_mut().last_attempt = now;
            let path = self.sts.jwks_path.clone();
            let started = self.fetch(host, Fetch::Jwks, &path, None);
            self.jwks.borrow_mut().in_flight = started;
        }
    }

    /// The answer to callout `token`, if it is one of ours (the host addresses it). A failed or
    /// garbled fetch keeps what this worker had.
    pub fn on_callout<H: Host>(&mut self, host: &mut H, token: u32, body_size: usize) -> bool {
        let Some(what) = self.pending.remove(&token) else { return false };
        let now = host.now();
        let status = host.callout_status();
        if what == Fetch::Reports {
            // Taken only when the STS says so; a batch it cannot take as it is goes, counted; any
            // other answer keeps the batch for the next try.
            let outcome = Sent::of(status);
            let gone = self.reports.borrow_mut().answered(outcome) as u64;
            match outcome {
                Sent::Taken => host.count_by("actorchain.reports.sent", gone),
                Sent::Rejected => {
                    host.count_by("actorchain.reports.rejected", gone);
                    let why = String::from_utf8_lossy(&host.callout_body(body_size.min(512))).into_owned();
                    host.warn(&json!({"kind": "reports", "result": "batch refused, dropped", "status": status, "error": why}).to_string());
                }
                Sent::Failed => {
                    host.count("actorchain.reports.send_failed");
                    host.warn(&json!({"kind": "reports", "result": "kept for the next try", "status": status}).to_string());
                }
            }
            return true;
        }
        let limit = if what == Fetch::Jwks { MAX_JWKS_BYTES } else { MAX_FEED_BYTES };
        let body = if body_size <= limit { host.callout_body(body_size) } else { Vec::new() };
        match what {
            Fetch::Jwks => self.on_jwks(host, status, &body, now),
            _ => self.on_feed(host, status, &body, now),
        }
        true
    }

    fn on_jwks<H: Host>(&mut self, host: &mut H, status: Option<u32>, body: &[u8], now: u64) {
        let result = {
            let mut jwks = self.jwks.borrow_mut();
            jwks.in_flight = false;
            match status {
                Some(200) => jwks.adopt(body, now).map_err(|e| e.reason().to_string()),
                other => Err(format!("status {}", other.map_or("none".to_string(), |s| s.to_string()))),
            }
        };
        match result {
            Ok(()) => {
                host.count("actorchain.jwks.fetch_ok");
                let doc = cache::stamp(now, std::str::from_utf8(body).unwrap_or_default());
                host.shared_set(&self.jwks_key, &doc, None);
                self.jwks.borrow_mut().adopted_cas = host.shared_get(&self.jwks_key).1;
            }
            Err(why) => {
                // Keys we had stay in force; a failed or poisoned fetch never empties them.
                host.count("actorchain.jwks.fetch_failed");
                host.warn(&json!({"kind": "jwks", "result": "kept previous keys", "error": why}).to_string());
            }
        }
    }

    fn on_feed<H: Host>(&mut self, host: &mut H, status: Option<u32>, body: &[u8], now: u64) {
        let feed = (status == Some(200)).then(|| serde_json::from_slice::<RevocationFeed>(body).ok()).flatten();
        let mut r = self.revoked.borrow_mut();
        r.in_flight = false;
        match feed {
            Some(f) => {
                r.merge(f, now);
                host.count("actorchain.revocations.fetch_ok");
                host.shared_set(&self.feed_key, &r.snapshot(), None);
                r.adopted_cas = host.shared_get(&self.feed_key).1;
            }
            None => {
                // What we know stays enforced; the next tick tries again.
                host.count("actorchain.revocations.fetch_failed");
                host.warn(&json!({"kind": "revocations", "result": "kept previous", "status": status}).to_string());
            }
        }
    }
}
