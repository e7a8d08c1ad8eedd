//! The proxy-wasm glue: the only code that calls the host. It implements `Host` with host calls
//! (which act on whichever context is effective) and wires the root and HTTP contexts to `root`
//! and `filter`, where every decision is made.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action as WasmAction, BufferType, ContextType, LogLevel, MapType, MetricType};

use crate::config::{Config, InboundConfig, OutboundConfig};
use crate::correlation::Minter;
use crate::filter::{Action, InboundFilter, OutboundFilter};
use crate::host::{Host, SharedData};
use crate::host_crypto;
use crate::reply::LocalReply;
use crate::reports::Reports;
use crate::root::{Jwks, JwksSchedule, Root};
use crate::singleflight::Inflight;
use crate::verified_cache::VerifiedCache;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(WasmRoot::default()) });
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

fn since_epoch() -> Duration {
    hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).unwrap_or_default()
}

/// `Host` over whatever the host currently addresses: the effective context's request, or the
/// callout answer being delivered.
struct WasmHost {
    metrics: Rc<RefCell<Metrics>>,
    /// This worker's reports to the ledger, sent by the root context.
    reports: Rc<RefCell<Reports>>,
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
        since_epoch().as_secs()
    }

    fn now_ms(&self) -> u64 {
        since_epoch().as_millis() as u64
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

    fn dispatch(&mut self, cluster: &str, timeout: Duration, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<u32, String> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
            .map_err(|s| format!("cannot call cluster {cluster}: {s:?}"))
    }

    fn callout_status(&self) -> Option<u32> {
        // A call reset before any response arrives has no headers at all.
        map_value(MapType::HttpCallResponseHeaders, ":status").and_then(|s| s.parse().ok())
    }

    fn callout_body(&self, len: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, len).ok().flatten().unwrap_or_default()
    }

    fn switch_to(&mut self, context: u32) -> bool {
        hostcalls::set_effective_context(context).is_ok()
    }

    fn resume_request(&mut self) {
        let _ = hostcalls::resume_http_request();
    }

    fn audit_enabled(&self) -> bool {
        log::log_enabled!(log::Level::Info)
    }

    fn audit(&self, line: &str) {
        log::info!("{line}");
    }

    fn reporting(&self) -> bool {
        self.reports.borrow().cfg.enabled
    }

    fn report(&self, line: &str, repeat_key: Option<&str>) {
        self.reports.borrow_mut().push(line, repeat_key, 1);
    }

    fn report_repeat(&self, key: &str) -> bool {
        self.reports.borrow_mut().repeat(key)
    }

    fn warn(&self, line: &str) {
        log::warn!("{line}");
    }

    fn set_trace_tag(&mut self, name: &str, value: &str) {
        let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
    }

    /// Envoy's `verify_signature` foreign function (BoringSSL). An Envoy without it, or one that
    /// cannot take the arguments, leaves the check to the filter; an answer that does not decode
    /// as a pass is a failed verification.
    fn verify_es256(&self, spki_der: &[u8], message: &[u8], der_signature: &[u8]) -> Option<bool> {
        let args = host_crypto::verify_signature_arguments(spki_der, message, der_signature);
        match hostcalls::call_foreign_function(host_crypto::VERIFY_SIGNATURE, Some(&args)) {
            Ok(answer) => Some(answer.is_some_and(|a| host_crypto::verify_signature_result(&a))),
            Err(_) => None,
        }
    }

    fn count_by(&mut self, metric: &str, n: u64) {
        if let Some(id) = self.metrics.borrow_mut().id(MetricType::Counter, metric) {
            let _ = hostcalls::increment_metric(id, n as i64);
        }
    }

    fn gauge(&mut self, metric: &str, value: u64) {
        if let Some(id) = self.metrics.borrow_mut().id(MetricType::Gauge, metric) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

enum Mode {
    /// With the worker's correlation-key minter.
    Inbound(Rc<InboundConfig>, Rc<RefCell<Minter>>),
    Outbound(Rc<OutboundConfig>),
}

/// The root context of one plugin on one worker: its configuration and the `Root` state machine.
#[derive(Default)]
struct WasmRoot {
    mode: Option<Mode>,
    root: Option<Root>,
    inflight: Rc<RefCell<Inflight>>,
    metrics: Rc<RefCell<Metrics>>,
}

impl WasmRoot {
    fn host(&self) -> WasmHost {
        let reports = self.root.as_ref().map(|r| r.reports.clone()).unwrap_or_default();
        WasmHost { metrics: self.metrics.clone(), reports }
    }
}

impl Context for WasmRoot {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let mut host = self.host();
        if let Some(root) = self.root.as_mut() {
            root.on_callout(&mut host, token, body_size);
        }
    }
}

impl RootContext for WasmRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        // Follow Envoy's own log level, so audit lines below it are never built (the request path).
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("actorchain plugin configuration: missing");
            return false;
        };
        let (mode, root) = match Config::parse(&bytes) {
            Ok(Config::Inbound(c)) => {
                // Correlation keys must be unpredictable: seeded from the host's CSPRNG (WASI
                // random_get), or the plugin is refused.
                let mut seed = [0u8; 32];
                if let Err(e) = getrandom::getrandom(&mut seed) {
                    log::error!("actorchain: no random source for correlation keys: {e}");
                    return false;
                }
                let schedule = JwksSchedule { refresh: c.jwks_refresh, min_refetch: c.jwks_min_refetch };
                let jwks = Jwks { verified: VerifiedCache::new(c.verified_cache_size), ..Jwks::default() };
                let root = Root::new(c.sts.clone(), Some(schedule), jwks);
                (Mode::Inbound(Rc::new(c), Rc::new(RefCell::new(Minter::new(seed)))), root)
            }
            Ok(Config::Outbound(c)) => {
                let root = Root::new(c.sts.clone(), None, Jwks::default());
                (Mode::Outbound(Rc::new(c)), root)
            }
            Err(e) => {
                log::error!("{e}");
                return false;
            }
        };
        self.mode = Some(mode);
        self.root = Some(root);
        self.set_tick_period(Duration::from_millis(250));
        true
    }

    fn on_tick(&mut self) {
        let mut host = self.host();
        if let Some(root) = self.root.as_mut() {
            root.on_tick(&mut host);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let root = self.root.as_ref()?;
        match self.mode.as_ref()? {
            Mode::Inbound(cfg, minter) => Some(Box::new(InboundCtx {
                filter: InboundFilter::new(cfg.clone(), root.jwks.clone(), root.revoked.clone(), minter.clone()),
                host: self.host(),
            })),
            Mode::Outbound(cfg) => Some(Box::new(OutboundCtx {
                filter: OutboundFilter::new(cfg.clone(), root.revoked.clone(), self.inflight.clone(), context_id),
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

impl Context for OutboundCtx {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        self.filter.on_callout(&mut self.host, body_size);
    }

    fn on_done(&mut self) -> bool {
        self.filter.on_done(&mut self.host);
        true
    }
}

impl HttpContext for OutboundCtx {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> WasmAction {
        wasm_action(self.filter.on_request_headers(&mut self.host))
    }
}
