//! The native module's life: a configuration per filter (parsed and checked as the wasm build
//! does, with the same field-named errors), one root on Envoy's main thread that fetches keys and
//! revocations and sends reports for every worker, and per worker thread the state the wasm build
//! keeps per VM (verified-token cache, in-flight exchanges, correlation minter), which takes up
//! what the root publishes. Every decision is made by `actorchain`'s filter code through `Host`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use actorchain::config::{Config, InboundConfig, OutboundConfig};
use actorchain::correlation::Minter;
use actorchain::filter::{Action, InboundFilter, OutboundFilter};
use actorchain::host::Host;
use actorchain::reply;
use actorchain::reports::Reports;
use actorchain::root::{Jwks, JwksSchedule, Root};
use actorchain::singleflight::Inflight;
use actorchain::verified_cache::VerifiedCache;

use crate::abi::{self, ConfigHandle, StreamHandle};
use crate::host::{self, Metrics, NativeHost, Target};
use crate::store::Store;

/// A callout's answer.
pub struct Answer {
    /// `None`: no response (reset, timeout).
    pub status: Option<u32>,
    pub body: Vec<u8>,
}

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_headers_status`.
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum HeadersStatus {
    Continue = 0,
    Stop = 1,
}

/// `envoy_dynamic_module_type_on_http_filter_{request,response}_body_status`.
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum BodyStatus {
    Continue = 0,
    StopAndBuffer = 1,
    StopNoBuffer = 3,
}

/// How often the root does its periodic work (as the wasm root's tick).
const TICK: Duration = Duration::from_millis(250);

/// The name this module's filter goes by in Envoy's `filter_name`.
pub const FILTER_NAME: &str = "actorchain";

pub fn program_init() {
    // A panic is caught at the entry point and logged there; the default hook's stderr line is
    // replaced by one in Envoy's log, with no payload (it could echo request data).
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        abi::log_error(&format!("{{\"kind\":\"panic\",\"at\":\"{at}\"}}"));
    }));
    abi::log(&format!(
        "{{\"kind\":\"module\",\"module\":\"actorchain_envoy\",\"version\":\"{}\",\"built_for\":\"Envoy 1.40\"}}",
        env!("CARGO_PKG_VERSION")
    ));
}

/// Decision lines from the workers on their way to the root, which reports them: bounded, and
/// counting repeated decisions, as the wasm build's per-worker buffer.
pub struct Inbox(Mutex<Reports>);

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Reports> {
        // A panic while holding it leaves whole lines: each push is one.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, line: &str, repeat_key: Option<&str>) {
        self.lock().push(line, repeat_key, 1);
    }

    pub fn repeat(&self, key: &str) -> bool {
        self.lock().repeat(key)
    }

    /// The lines with their counts, and how many did not fit.
    fn take(&self) -> (Vec<(String, u64)>, u64) {
        let mut r = self.lock();
        (r.take(), std::mem::take(&mut r.dropped))
    }
}

/// What every thread of one configuration shares.
pub struct Core {
    id: u64,
    bytes: Vec<u8>,
    pub metrics: Metrics,
    pub reports_enabled: bool,
    pub inbox: Inbox,
    /// A worker met a `kid` it lacks: the root should fetch keys sooner.
    jwks_wanted: AtomicBool,
    /// A worker learned of a revocation from the STS: the root should read the feed now.
    feed_wanted: AtomicBool,
}

/// One filter configuration, as Envoy holds it.
pub struct FilterConfig {
    core: Arc<Core>,
    ticker: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

/// A worker's state per configuration, with a handle that tells when the configuration is gone.
type Workers = HashMap<u64, (Weak<Core>, Rc<Worker>)>;

thread_local! {
    /// On the main thread: the root of each configuration.
    static ROOTS: RefCell<HashMap<u64, Root>> = RefCell::new(HashMap::new());
    /// On each worker: its state for each configuration.
    static WORKERS: RefCell<Workers> = RefCell::new(HashMap::new());
    static NEXT_STREAM: Cell<u32> = const { Cell::new(1) };
}

fn parse(bytes: &[u8]) -> Option<Config> {
    Config::parse(bytes).map_err(|e| abi::log_error(&e.to_string())).ok()
}

fn sts(c: &Config) -> &actorchain::config::StsConfig {
    match c {
        Config::Inbound(c) => &c.sts,
        Config::Outbound(c) => &c.sts,
    }
}

fn schedule(c: &InboundConfig) -> JwksSchedule {
    JwksSchedule { refresh: c.jwks_refresh, min_refetch: c.jwks_min_refetch }
}

pub fn config_new(handle: ConfigHandle, name: &str, bytes: &[u8]) -> Option<Box<FilterConfig>> {
    if name != FILTER_NAME {
        abi::log_error(&format!("actorchain: unknown filter_name {name:?} (this module provides {FILTER_NAME:?})"));
        return None;
    }
    let cfg = parse(bytes)?;
    let metrics = Metrics::define(handle).map_err(|m| abi::log_error(&format!("actorchain: Envoy refused to define metric {m}"))).ok()?;
    static NEXT_CONFIG: AtomicU64 = AtomicU64::new(1);
    let reports = sts(&cfg).reports;
    let core = Arc::new(Core {
        id: NEXT_CONFIG.fetch_add(1, Ordering::Relaxed),
        bytes: bytes.to_vec(),
        metrics,
        reports_enabled: reports.enabled,
        inbox: Inbox(Mutex::new(Reports::new(reports))),
        jwks_wanted: AtomicBool::new(false),
        feed_wanted: AtomicBool::new(false),
    });
    let root = match &cfg {
        Config::Inbound(c) => Root::new(c.sts.clone(), Some(schedule(c)), Jwks::default()),
        Config::Outbound(c) => Root::new(c.sts.clone(), None, Jwks::default()),
    };
    ROOTS.with(|r| r.borrow_mut().insert(core.id, root));
    // Envoy's scheduler only posts to the main thread; this thread is the clock.
    let scheduler = handle.scheduler();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let ticker = std::thread::Builder::new()
        .name("actorchain-tick".into())
        .spawn(move || {
            while !stopped.load(Ordering::Acquire) {
                std::thread::park_timeout(TICK);
                if !stopped.load(Ordering::Acquire) {
                    scheduler.commit(0);
                }
            }
        })
        .map_err(|e| abi::log_error(&format!("actorchain: cannot start the timer thread: {e}")))
        .ok()?;
    Some(Box::new(FilterConfig { core, ticker: Mutex::new(Some((stop, ticker))) }))
}

/// Envoy's per-route configuration: checked with the same errors, but not supported (a route
/// that needs other settings gets its own listener or filter chain).
pub fn per_route_config(bytes: &[u8]) {
    if parse(bytes).is_some() {
        abi::log_error("actorchain: per-route configuration is not supported by the native build; configure the filter per listener");
    }
}

/// A request the filter cannot judge (a panic, no random source) is refused, never passed.
pub fn fail_closed(s: StreamHandle) {
    s.send_reply(&reply::unavailable("filter_failed", "the actorchain filter failed on this request"));
}

impl FilterConfig {
    pub fn destroy(self) {
        if let Some((stop, ticker)) = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            stop.store(true, Ordering::Release);
            ticker.thread().unpark();
            let _ = ticker.join();
        }
        ROOTS.with(|r| r.borrow_mut().remove(&self.core.id));
    }

    /// The root's periodic work, on the main thread.
    pub fn on_tick(&self, handle: ConfigHandle) {
        let core = &self.core;
        ROOTS.with(|roots| {
            let mut roots = roots.borrow_mut();
            let Some(root) = roots.get_mut(&core.id) else { return };
            let (lines, dropped) = core.inbox.take();
            {
                let mut reports = root.reports.borrow_mut();
                for (line, count) in &lines {
                    reports.push(line, None, *count);
                }
                reports.dropped += dropped;
            }
            if core.jwks_wanted.swap(false, Ordering::Relaxed) {
                root.jwks.borrow_mut().refetch_wanted = true;
            }
            if core.feed_wanted.swap(false, Ordering::Relaxed) {
                root.revoked.borrow_mut().wanted = true;
            }
            root.on_tick(&mut NativeHost::new(core, Target::Config(handle)));
        });
    }

    pub fn on_callout(&self, handle: ConfigHandle, id: u64, answer: Answer) {
        let core = &self.core;
        ROOTS.with(|roots| {
            if let Some(root) = roots.borrow_mut().get_mut(&core.id) {
                let mut host = NativeHost::answering(core, Target::Config(handle), &answer);
                root.on_callout(&mut host, id as u32, answer.body.len());
            }
        });
    }

    pub fn new_stream(&self, envoy: StreamHandle) -> Box<Stream> {
        let id = NEXT_STREAM.with(|n| {
            let id = n.get();
            n.set(id.wrapping_add(1).max(1));
            id
        });
        host::register(id, envoy);
        let worker = Worker::for_thread(&self.core);
        let filter = worker.as_ref().map(|w| match &w.kind {
            Kind::Inbound(cfg, minter) => {
                let root = w.root.borrow();
                Filter::Inbound(InboundFilter::new(cfg.clone(), root.jwks.clone(), root.revoked.clone(), minter.clone()))
            }
            Kind::Outbound(cfg) => {
                Filter::Outbound(OutboundFilter::new(cfg.clone(), w.root.borrow().revoked.clone(), w.inflight.clone(), id))
            }
        });
        Box::new(Stream { id, core: self.core.clone(), filter, worker, failed: false })
    }
}

enum Kind {
    Inbound(Rc<InboundConfig>, Rc<RefCell<Minter>>),
    Outbound(Rc<OutboundConfig>),
}

/// One worker's state for one configuration.
struct Worker {
    kind: Kind,
    /// A root that never fetches: it takes up what the main thread's root publishes.
    root: RefCell<Root>,
    inflight: Rc<RefCell<Inflight>>,
    /// `Store::published` when this worker last looked.
    seen: Cell<u64>,
}

impl Worker {
    /// This thread's state for `core`, made on first use. `None` when it cannot be made (no
    /// random source for correlation keys): the thread's requests are refused.
    fn for_thread(core: &Arc<Core>) -> Option<Rc<Worker>> {
        WORKERS.with(|w| {
            let mut w = w.borrow_mut();
            if let Some((_, worker)) = w.get(&core.id) {
                return Some(worker.clone());
            }
            // Configurations replaced since are forgotten here too.
            w.retain(|_, (c, _)| c.strong_count() > 0);
            let worker = Rc::new(Worker::new(core)?);
            w.insert(core.id, (Arc::downgrade(core), worker.clone()));
            Some(worker)
        })
    }

    fn new(core: &Core) -> Option<Worker> {
        let (kind, root) = match parse(&core.bytes)? {
            Config::Inbound(c) => {
                let mut seed = [0u8; 32];
                getrandom::getrandom(&mut seed)
                    .map_err(|e| abi::log_error(&format!("actorchain: no random source for correlation keys: {e}")))
                    .ok()?;
                let jwks = Jwks { verified: VerifiedCache::new(c.verified_cache_size), ..Jwks::default() };
                let root = Root::new(c.sts.clone(), Some(schedule(&c)), jwks);
                (Kind::Inbound(Rc::new(c), Rc::new(RefCell::new(Minter::new(seed)))), root)
            }
            Config::Outbound(c) => {
                let root = Root::new(c.sts.clone(), None, Jwks::default());
                (Kind::Outbound(Rc::new(c)), root)
            }
        };
        Some(Worker { kind, root: RefCell::new(root), inflight: Rc::default(), seen: Cell::new(u64::MAX) })
    }

    /// Takes up newly published keys and revocations: one atomic read when there are none.
    fn sync(&self, host: &NativeHost<'_>) {
        let published = Store::global().published();
        if published != self.seen.get() {
            self.seen.set(published);
            self.root.borrow_mut().adopt_shared(host, host.now());
        }
    }

    /// Passes on to the root what this worker's requests learned.
    fn signal(&self, core: &Core) {
        let root = self.root.borrow();
        let mut jwks = root.jwks.borrow_mut();
        if jwks.refetch_wanted {
            jwks.refetch_wanted = false;
            core.jwks_wanted.store(true, Ordering::Relaxed);
        }
        let mut revoked = root.revoked.borrow_mut();
        if revoked.wanted {
            revoked.wanted = false;
            core.feed_wanted.store(true, Ordering::Relaxed);
        }
    }
}

enum Filter {
    Inbound(InboundFilter),
    Outbound(OutboundFilter),
}

/// One HTTP stream through the filter.
pub struct Stream {
    id: u32,
    core: Arc<Core>,
    filter: Option<Filter>,
    worker: Option<Rc<Worker>>,
    /// It panicked once: every later hook stops it.
    pub failed: bool,
}

impl Drop for Stream {
    fn drop(&mut self) {
        host::unregister(self.id);
    }
}

fn headers_status(a: Action) -> HeadersStatus {
    match a {
        Action::Continue => HeadersStatus::Continue,
        Action::Pause => HeadersStatus::Stop,
    }
}

fn body_status(a: Action) -> BodyStatus {
    match a {
        Action::Continue => BodyStatus::Continue,
        Action::Pause => BodyStatus::StopAndBuffer,
    }
}

impl Stream {
    pub fn request_headers(&mut self, envoy: StreamHandle, end_of_stream: bool) -> HeadersStatus {
        let mut host = NativeHost::new(&self.core, Target::Stream(envoy));
        #[cfg(feature = "fault-injection")]
        if host.request_header("x-actorchain-fault").as_deref() == Some("panic") {
            panic!("fault injection: a panic was asked for");
        }
        let (Some(filter), Some(worker)) = (self.filter.as_mut(), self.worker.as_ref()) else {
            fail_closed(envoy);
            return HeadersStatus::Stop;
        };
        worker.sync(&host);
        let action = match filter {
            Filter::Inbound(f) => match f.on_request_headers(&mut host) {
                // An MCP request's headers go on; its body is held until judged.
                Action::Continue if f.body_wanted && end_of_stream => f.on_request_body(&mut host, 0, true),
                a => a,
            },
            Filter::Outbound(f) => f.on_request_headers(&mut host),
        };
        worker.signal(&self.core);
        headers_status(action)
    }

    pub fn request_body(&mut self, envoy: StreamHandle, end_of_stream: bool) -> BodyStatus {
        let mut host = NativeHost::new(&self.core, Target::Stream(envoy));
        match self.filter.as_mut() {
            Some(Filter::Inbound(f)) => {
                let size = envoy.body_size(abi::Side::Request);
                body_status(f.on_request_body(&mut host, size, end_of_stream))
            }
            // The body waits with its headers while the exchange is in flight.
            Some(Filter::Outbound(f)) if f.pending.is_some() => BodyStatus::StopAndBuffer,
            _ => BodyStatus::Continue,
        }
    }

    pub fn response_headers(&mut self, envoy: StreamHandle) -> HeadersStatus {
        if let Some(Filter::Inbound(f)) = self.filter.as_mut() {
            f.on_response_headers(&mut NativeHost::new(&self.core, Target::Stream(envoy)));
        }
        HeadersStatus::Continue
    }

    pub fn response_body(&mut self, envoy: StreamHandle, end_of_stream: bool) -> BodyStatus {
        match self.filter.as_mut() {
            Some(Filter::Inbound(f)) => {
                let size = envoy.body_size(abi::Side::Response);
                body_status(f.on_response_body(&mut NativeHost::new(&self.core, Target::Stream(envoy)), size, end_of_stream))
            }
            _ => BodyStatus::Continue,
        }
    }

    pub fn callout_done(&mut self, envoy: StreamHandle, _id: u64, answer: Answer) {
        if let Some(Filter::Outbound(f)) = self.filter.as_mut() {
            let mut host = NativeHost::answering(&self.core, Target::Stream(envoy), &answer);
            f.on_callout(&mut host, answer.body.len());
            if let Some(w) = &self.worker {
                w.signal(&self.core);
            }
        }
    }

    pub fn complete(&mut self, envoy: StreamHandle) {
        let mut host = NativeHost::new(&self.core, Target::Stream(envoy));
        match self.filter.as_mut() {
            Some(Filter::Inbound(f)) => f.on_done(&mut host),
            Some(Filter::Outbound(f)) => f.on_done(&mut host),
            None => {}
        }
    }
}
