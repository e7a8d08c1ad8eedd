//! The proxy-wasm glue: the only code that calls the host. It implements `Host` with host calls
//! (which act on whichever context is effective), wires the root and HTTP contexts to `filter`,
//! and fetches the JWKS from the root context.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as WasmAction, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::cache;
use crate::config::{Config, InboundConfig, StsConfig};
use crate::correlation::Minter;
use crate::filter::{apply, Action, InboundFilter, Jwks, OutboundFilter, Verdict, JWKS_KEY};
use crate::host::{Host, SharedData};
use crate::reply::{self, LocalReply};
use crate::revocation_feed::{self, Revocations};
use crate::singleflight::Inflight;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Metric ids by name, defined on first use (per worker).
#[derive(Default)]
struct Metrics(HashMap<String, u32>);

impl Metrics {
    fn id(&mut self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.0.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        self.0.insert(name.to_string(), id);
        Some(id)
    }

    fn count(&mut self, name: &str) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn gauge(&mut self, name: &str, value: u64) {
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// A header value as text. The SDK's string getters panic on bytes that are not UTF-8, which one
/// request could use to crash the VM for every other; such bytes become U+FFFD instead, so a
/// token carrying them is still there, and still refused as malformed.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn map_value(map: MapType, name: &str) -> Option<String> {
    hostcalls::get_map_value_bytes(map, name).ok().flatten().map(text)
}

fn now_secs() -> u64 {
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
}

/// `Host` over the effective context's request.
struct WasmHost {
    metrics: Rc<RefCell<Metrics>>,
}

impl SharedData for WasmHost {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match hostcalls::get_shared_data(key) {
            Ok((v, cas)) => (v.filter(|v| !v.is_empty()), cas),
            Err(_) => (None, None),
        }
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

impl Host for WasmHost {
    fn now(&self) -> u64 {
        now_secs()
    }

    fn request_header(&self, name: &str) -> Option<String> {
        map_value(MapType::HttpRequestHeaders, name)
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        let all = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        all.into_iter().map(|(k, v)| (k, text(v))).collect()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn peer_identity(&self) -> Option<String> {
        let san = hostcalls::get_property(vec!["connection", "uri_san_peer_certificate"]).ok().flatten()?;
        String::from_utf8(san).ok().filter(|s| !s.is_empty())
    }

    fn send_reply(&mut self, r: &LocalReply) {
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let _ = hostcalls::send_http_response(r.status, headers, Some(r.body.as_bytes()));
    }

    fn request_body(&self, len: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, len).ok().flatten().unwrap_or_default()
    }

    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn response_body(&self, len: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, len).ok().flatten().unwrap_or_default()
    }

    fn set_response_body(&mut self, len: usize, body: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, len, body);
    }

    fn dispatch(&mut self, sts: &StsConfig, headers: &[(&str, &str)], body: &[u8]) -> Result<u32, String> {
        hostcalls::dispatch_http_call(&sts.cluster, headers.to_vec(), Some(body), vec![], sts.timeout)
            .map_err(|s| format!("cannot call cluster {}: {s:?}", sts.cluster))
    }

    fn audit_enabled(&self) -> bool {
        log::log_enabled!(log::Level::Info)
    }

    fn audit(&self, line: &str) {
        log::info!("{line}");
    }

    fn count(&mut self, metric: &str) {
        self.metrics.borrow_mut().count(metric);
    }
}

enum Mode {
    /// With the worker's correlation-key minter.
    Inbound(Rc<InboundConfig>, Rc<RefCell<Minter>>),
    Outbound(Rc<crate::config::OutboundConfig>),
}

#[derive(Default)]
struct Root {
    mode: Option<Mode>,
    jwks: Rc<RefCell<Jwks>>,
    revoked: Rc<RefCell<Revocations>>,
    inflight: Rc<RefCell<Inflight>>,
    metrics: Rc<RefCell<Metrics>>,
    jwks_call: Option<u32>,
    feed_call: Option<u32>,
}

impl Root {
    fn host(&self) -> WasmHost {
        WasmHost { metrics: self.metrics.clone() }
    }

    /// Takes up a JWKS another worker fetched, if there is a newer one.
    fn adopt_shared(&self) {
        let Ok((Some(data), cas)) = hostcalls::get_shared_data(JWKS_KEY) else { return };
        let mut jwks = self.jwks.borrow_mut();
        if cas.is_none() || cas == jwks.adopted_cas {
            return;
        }
        if let Some((fetched_at, json)) = cache::unstamp(&data) {
            if jwks.adopt(json.as_bytes(), fetched_at).is_ok() {
                jwks.adopted_cas = cas;
            }
        }
    }
}

impl Root {
    fn sts(&self) -> Option<&StsConfig> {
        match self.mode.as_ref()? {
            Mode::Inbound(c, _) => Some(&c.sts),
            Mode::Outbound(c) => Some(&c.sts),
        }
    }

    /// Takes up the revocations another worker merged, if they are ahead of ours.
    fn adopt_shared_revocations(&self, now: u64) {
        let Ok((Some(data), cas)) = hostcalls::get_shared_data(revocation_feed::SHARED_KEY) else { return };
        let mut r = self.revoked.borrow_mut();
        if cas.is_some() && cas != r.adopted_cas && r.adopt(&data, now) {
            r.adopted_cas = cas;
        }
    }

    fn poll_revocations(&mut self, now: u64) {
        self.adopt_shared_revocations(now);
        let Some(sts) = self.sts().cloned() else { return };
        let now_ms = hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis() as u64);
        let mut r = self.revoked.borrow_mut();
        r.prune(now);
        let mut metrics = self.metrics.borrow_mut();
        metrics.gauge("actorchain.revocations.entries", r.len() as u64);
        if r.fetched_at > 0 {
            metrics.gauge("actorchain.revocations.lag_seconds", now.saturating_sub(r.fetched_at));
        }
        if !r.should_fetch(now_ms, sts.revocation_refresh.as_millis() as u64) {
            return;
        }
        r.last_attempt_ms = now_ms;
        let path = format!("{}?since={}", sts.revocations_path, r.cursor);
        let headers = vec![(":method", "GET"), (":path", path.as_str()), (":authority", sts.authority.as_str())];
        match hostcalls::dispatch_http_call(&sts.cluster, headers, None, vec![], sts.timeout) {
            Ok(t) => {
                r.in_flight = true;
                self.feed_call = Some(t);
            }
            Err(s) => {
                log::warn!("{}", serde_json::json!({"kind": "revocations", "error": format!("cannot call cluster {}: {s:?}", sts.cluster)}))
            }
        }
    }

    fn on_feed(&mut self, status: Option<String>, body: &[u8], now: u64) {
        let mut r = self.revoked.borrow_mut();
        r.in_flight = false;
        let feed =
            (status.as_deref() == Some("200")).then(|| serde_json::from_slice::<actorchain_token::RevocationFeed>(body).ok()).flatten();
        let mut metrics = self.metrics.borrow_mut();
        match feed {
            Some(f) => {
                r.merge(f, now);
                metrics.count("actorchain.revocations.fetch_ok");
                let _ = hostcalls::set_shared_data(revocation_feed::SHARED_KEY, Some(&r.snapshot()), None);
                r.adopted_cas = hostcalls::get_shared_data(revocation_feed::SHARED_KEY).ok().and_then(|(_, c)| c);
            }
            None => {
                // What we know stays enforced; the next tick tries again.
                metrics.count("actorchain.revocations.fetch_failed");
                log::warn!("{}", serde_json::json!({"kind": "revocations", "result": "kept previous", "status": status}));
            }
        }
    }
}

/// Largest revocation feed read in one answer.
const MAX_FEED_BYTES: usize = 1 << 20;

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let now = now_secs();
        let status = map_value(MapType::HttpCallResponseHeaders, ":status");
        if self.feed_call == Some(token) {
            self.feed_call = None;
            let body = (body_size <= MAX_FEED_BYTES)
                .then(|| hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten())
                .flatten()
                .unwrap_or_default();
            return self.on_feed(status, &body, now);
        }
        if self.jwks_call != Some(token) {
            return;
        }
        self.jwks_call = None;
        self.jwks.borrow_mut().in_flight = false;
        let body = (body_size <= actorchain_token::MAX_JWKS_BYTES)
            .then(|| hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten())
            .flatten()
            .unwrap_or_default();
        let result = match status.as_deref() {
            Some("200") => self.jwks.borrow_mut().adopt(&body, now).map_err(|e| e.reason().to_string()),
            other => Err(format!("status {}", other.unwrap_or("none"))),
        };
        let mut host = self.host();
        match result {
            Ok(()) => {
                host.count("actorchain.jwks.fetch_ok");
                let doc = cache::stamp(now, std::str::from_utf8(&body).unwrap_or_default());
                let _ = hostcalls::set_shared_data(JWKS_KEY, Some(&doc), None);
                self.jwks.borrow_mut().adopted_cas = hostcalls::get_shared_data(JWKS_KEY).ok().and_then(|(_, c)| c);
            }
            Err(why) => {
                // Keys we had stay in force; a failed or poisoned fetch never empties them.
                host.count("actorchain.jwks.fetch_failed");
                log::warn!("{}", serde_json::json!({"kind": "jwks", "result": "kept previous keys", "error": why}));
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Follow Envoy's own log level, so audit lines below it are never built (the request path).
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("actorchain plugin configuration: missing");
            return false;
        };
        match Config::parse(&bytes) {
            Ok(Config::Inbound(c)) => {
                // Correlation keys must be unpredictable: seeded from the host's CSPRNG (WASI
                // random_get), or the plugin is refused.
                let mut seed = [0u8; 32];
                if let Err(e) = getrandom::getrandom(&mut seed) {
                    log::error!("actorchain: no random source for correlation keys: {e}");
                    return false;
                }
                self.jwks.borrow_mut().verified = crate::verified_cache::VerifiedCache::new(c.verified_cache_size);
                self.mode = Some(Mode::Inbound(Rc::new(c), Rc::new(RefCell::new(Minter::new(seed)))));
                self.set_tick_period(Duration::from_millis(250));
                true
            }
            Ok(Config::Outbound(c)) => {
                self.mode = Some(Mode::Outbound(Rc::new(c)));
                self.set_tick_period(Duration::from_millis(250));
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let now = now_secs();
        self.poll_revocations(now);
        let Some(Mode::Inbound(cfg, _)) = &self.mode else { return };
        self.adopt_shared();
        let fetched_at = self.jwks.borrow().fetched_at;
        if fetched_at > 0 {
            self.metrics.borrow_mut().gauge("actorchain.jwks.age_seconds", now.saturating_sub(fetched_at));
        }
        let due = self.jwks.borrow().should_fetch(now, cfg.jwks_refresh.as_secs(), cfg.jwks_min_refetch.as_secs());
        if !due {
            return;
        }
        let headers = vec![(":method", "GET"), (":path", cfg.sts.jwks_path.as_str()), (":authority", cfg.sts.authority.as_str())];
        let mut jwks = self.jwks.borrow_mut();
        jwks.last_attempt = now;
        match hostcalls::dispatch_http_call(&cfg.sts.cluster, headers, None, vec![], cfg.sts.timeout) {
            Ok(t) => {
                jwks.in_flight = true;
                self.jwks_call = Some(t);
            }
            Err(s) => {
                log::warn!("{}", serde_json::json!({"kind": "jwks", "error": format!("cannot call cluster {}: {s:?}", cfg.sts.cluster)}))
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.mode.as_ref()? {
            Mode::Inbound(cfg, minter) => Some(Box::new(InboundCtx {
                filter: InboundFilter::new(cfg.clone(), self.jwks.clone(), self.revoked.clone(), minter.clone()),
                host: self.host(),
            })),
            Mode::Outbound(cfg) => Some(Box::new(OutboundCtx {
                filter: OutboundFilter {
                    cfg: cfg.clone(),
                    revoked: self.revoked.clone(),
                    inflight: self.inflight.clone(),
                    context_id,
                    pending: None,
                },
                host: self.host(),
            })),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn wasm_action(a: Action) -> WasmAction {
    match a {
        Action::Continue => WasmAction::Continue,
        Action::Pause => WasmAction::Pause,
    }
}

struct InboundCtx {
    filter: InboundFilter,
    host: WasmHost,
}

impl Context for InboundCtx {
    fn on_done(&mut self) -> bool {
        self.filter.on_done(&mut self.host);
        true
    }
}

impl HttpContext for InboundCtx {
    fn on_http_request_headers(&mut self, _n: usize, end_of_stream: bool) -> WasmAction {
        // Only in the test build: lets the hardening tests crash the VM on purpose.
        #[cfg(feature = "fault-injection")]
        if map_value(MapType::HttpRequestHeaders, "x-actorchain-fault").as_deref() == Some("panic") {
            panic!("fault injection: a panic was asked for");
        }
        let action = self.filter.on_request_headers(&mut self.host);
        // An MCP request's headers go on (Envoy would otherwise hold the body from this filter
        // too); its body is held until judged, and a refusal then resets the upstream request.
        match (action, self.filter.body_wanted, end_of_stream) {
            (Action::Continue, true, true) => wasm_action(self.filter.on_request_body(&mut self.host, 0, true)),
            (a, _, _) => wasm_action(a),
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> WasmAction {
        wasm_action(self.filter.on_request_body(&mut self.host, body_size, end_of_stream))
    }

    fn on_http_response_headers(&mut self, _n: usize, _eos: bool) -> WasmAction {
        self.filter.on_response_headers(&mut self.host);
        WasmAction::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> WasmAction {
        wasm_action(self.filter.on_response_body(&mut self.host, body_size, end_of_stream))
    }
}

struct OutboundCtx {
    filter: OutboundFilter,
    host: WasmHost,
}

impl OutboundCtx {
    /// Ends a paused request, this one (already effective) or a waiter.
    fn finish(&mut self, verdict: &Verdict) {
        apply(&mut self.host, verdict);
        if matches!(verdict, Verdict::Forward(_)) {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl Context for OutboundCtx {
    fn on_http_call_response(&mut self, _token: u32, num_headers: usize, body_size: usize, _trailers: usize) {
        // A call reset before any response arrives with no headers at all.
        let status =
            (num_headers > 0).then(|| map_value(MapType::HttpCallResponseHeaders, ":status")).flatten().and_then(|s| s.parse::<u32>().ok());
        // An oversized answer is not read at all: with an empty body it is refused as malformed.
        let body = if body_size <= crate::outbound::MAX_REPLY_BYTES {
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default()
        } else {
            Vec::new()
        };
        let (verdict, waiters) = self.filter.on_sts_reply(&mut self.host, status, &body);
        self.finish(&verdict);
        for w in waiters {
            // A waiter whose client went away is simply gone.
            if hostcalls::set_effective_context(w).is_ok() {
                self.finish(&verdict);
            }
        }
    }

    fn on_done(&mut self) -> bool {
        // The leader vanished before its answer: release the requests that waited for it.
        if let Some(p) = self.filter.pending.take().filter(|p| p.leader) {
            let verdict =
                Verdict::Refuse(reply::unavailable("exchange_abandoned", "the exchange this request waited for was abandoned; retry"));
            for w in self.filter.inflight.borrow_mut().finish(&p.key) {
                if hostcalls::set_effective_context(w).is_ok() {
                    apply(&mut self.host, &verdict);
                }
            }
        }
        true
    }
}

impl HttpContext for OutboundCtx {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> WasmAction {
        wasm_action(self.filter.on_request_headers(&mut self.host))
    }
}
