//! `Host` over Envoy's dynamic-modules callbacks: what the filter's decision code needs, for the
//! stream a hook addresses (or, on the main thread, the configuration that fetches keys,
//! revocations and sends reports). The same trait the wasm build implements with proxy-wasm.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actorchain::host::{Host, SharedData};
use actorchain::metrics;
use actorchain::reply::LocalReply;

use crate::abi::{self, ConfigHandle, Side, StreamHandle};
use crate::entry::{Answer, Core};
use crate::store::Store;

/// Whom host calls act on.
#[derive(Clone, Copy)]
pub enum Target {
    Stream(StreamHandle),
    /// The configuration, on the main thread: no request there.
    Config(ConfigHandle),
}

thread_local! {
    /// This worker's streams, by the context id the filter code knows them by (for resuming the
    /// requests that waited for another's exchange).
    static STREAMS: RefCell<HashMap<u32, StreamHandle>> = RefCell::new(HashMap::new());
}

pub fn register(id: u32, s: StreamHandle) {
    STREAMS.with(|m| m.borrow_mut().insert(id, s));
}

pub fn unregister(id: u32) {
    STREAMS.with(|m| m.borrow_mut().remove(&id));
}

/// Metric ids, defined when the configuration loaded (Envoy allows no definitions later).
#[derive(Debug, Default)]
pub struct Metrics {
    pub counters: HashMap<&'static str, usize>,
    pub gauges: HashMap<&'static str, usize>,
    /// One counter family per `metrics::FAMILIES` entry, labelled by reason.
    pub families: Vec<usize>,
}

impl Metrics {
    /// Defines every metric of `actorchain::metrics`; `None` names the first Envoy refused.
    pub fn define(c: ConfigHandle) -> Result<Metrics, String> {
        let mut m = Metrics::default();
        for name in metrics::COUNTERS {
            m.counters.insert(name, c.define_counter(name, None).ok_or(*name)?);
        }
        for name in metrics::GAUGES {
            m.gauges.insert(name, c.define_gauge(name).ok_or(*name)?);
        }
        for (base, decision) in metrics::FAMILIES {
            // Envoy names a labelled counter `<name>.<label>.<value>`: the family's counters come
            // out named exactly as the wasm build names them.
            m.families.push(c.define_counter(base, Some(decision)).ok_or(*base)?);
        }
        Ok(m)
    }
}

/// A metric name the module did not define is a bug in `actorchain::metrics`: said once.
fn undeclared(name: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        abi::log_warn(&format!("{{\"kind\":\"metrics\",\"error\":\"not declared in actorchain::metrics\",\"metric\":\"{name}\"}}"));
    }
}

pub struct NativeHost<'a> {
    pub target: Target,
    core: &'a Core,
    answer: Option<&'a Answer>,
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl<'a> NativeHost<'a> {
    pub fn new(core: &'a Core, target: Target) -> Self {
        NativeHost { target, core, answer: None }
    }

    /// Addressing a callout's answer.
    pub fn answering(core: &'a Core, target: Target, answer: &'a Answer) -> Self {
        NativeHost { target, core, answer: Some(answer) }
    }

    fn stream(&self) -> Option<StreamHandle> {
        match self.target {
            Target::Stream(s) => Some(s),
            Target::Config(_) => None,
        }
    }
}

impl SharedData for NativeHost<'_> {
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let (v, cas) = Store::global().get(key);
        (v.filter(|v| !v.is_empty()), cas)
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        Store::global().set(key, value, cas)
    }
}

impl Host for NativeHost<'_> {
    fn now(&self) -> u64 {
        since_epoch().as_secs()
    }

    fn now_ms(&self) -> u64 {
        since_epoch().as_millis() as u64
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.stream()?.header(Side::Request, name)
    }

    fn request_headers(&self) -> Vec<(String, String)> {
        self.stream().map(|s| s.headers(Side::Request)).unwrap_or_default()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        if let Some(s) = self.stream() {
            s.set_header(Side::Request, name, value);
        }
    }

    fn peer_identity(&self) -> Option<String> {
        self.stream()?.peer_uri_san()
    }

    fn send_reply(&mut self, r: &LocalReply) {
        if let Some(s) = self.stream() {
            s.send_reply(r);
        }
    }

    fn request_body(&self, len: usize) -> Vec<u8> {
        self.stream().map(|s| s.body(Side::Request, len)).unwrap_or_default()
    }

    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        if let Some(s) = self.stream() {
            s.set_header(Side::Response, name, value);
        }
    }

    fn response_body(&self, len: usize) -> Vec<u8> {
        self.stream().map(|s| s.body(Side::Response, len)).unwrap_or_default()
    }

    /// The filter only ever replaces the whole body it has read (`len` is all of it).
    fn set_response_body(&mut self, _len: usize, body: &[u8]) {
        if let Some(s) = self.stream() {
            s.replace_body(Side::Response, body);
        }
    }

    fn dispatch(&mut self, cluster: &str, timeout: Duration, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<u32, String> {
        let body = body.unwrap_or_default();
        let ms = timeout.as_millis() as u64;
        let id = match self.target {
            Target::Stream(s) => s.callout(cluster, headers, body, ms),
            Target::Config(c) => c.callout(cluster, headers, body, ms),
        };
        // Envoy numbers callouts from 1 per filter; the filter code keys them by u32.
        id.map(|id| id as u32).map_err(|r| format!("cannot call cluster {cluster}: callout refused ({r})"))
    }

    fn callout_status(&self) -> Option<u32> {
        self.answer?.status
    }

    fn callout_body(&self, len: usize) -> Vec<u8> {
        self.answer.map(|a| a.body[..len.min(a.body.len())].to_vec()).unwrap_or_default()
    }

    fn switch_to(&mut self, context: u32) -> bool {
        match STREAMS.with(|m| m.borrow().get(&context).copied()) {
            Some(s) => {
                self.target = Target::Stream(s);
                true
            }
            None => false,
        }
    }

    fn resume_request(&mut self) {
        if let Some(s) = self.stream() {
            s.continue_decoding();
        }
    }

    fn audit_enabled(&self) -> bool {
        abi::info_enabled()
    }

    fn audit(&self, line: &str) {
        abi::log(line);
    }

    fn reporting(&self) -> bool {
        self.core.reports_enabled
    }

    fn report(&self, line: &str, repeat_key: Option<&str>) {
        self.core.inbox.push(line, repeat_key);
    }

    fn report_repeat(&self, key: &str) -> bool {
        self.core.inbox.repeat(key)
    }

    fn warn(&self, line: &str) {
        abi::log_warn(line);
    }

    /// Under the same filter-state names as the wasm build (`wasm.actorchain.*`), so one tracing
    /// configuration serves both builds.
    fn set_trace_tag(&mut self, name: &str, value: &str) {
        if let Some(s) = self.stream() {
            s.set_filter_state(&format!("wasm.{name}"), value);
        }
    }

    fn count_by(&mut self, metric: &str, n: u64) {
        let m = &self.core.metrics;
        let (id, label) = match m.counters.get(metric) {
            Some(id) => (*id, None),
            None => match metrics::family_member(metric) {
                Some((family, reason)) => (m.families[family], Some(reason)),
                None => return undeclared(metric),
            },
        };
        match self.target {
            Target::Stream(s) => s.increment_counter(id, label, n),
            Target::Config(c) => c.increment_counter(id, label, n),
        };
    }

    fn gauge(&mut self, metric: &str, value: u64) {
        let Some(id) = self.core.metrics.gauges.get(metric).copied() else { return undeclared(metric) };
        match self.target {
            Target::Stream(s) => s.set_gauge(id, value),
            Target::Config(c) => c.set_gauge(id, value),
        };
    }
}
