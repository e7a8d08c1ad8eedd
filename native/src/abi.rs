//! The bindings to Envoy's dynamic-modules ABI (Envoy 1.40, `source/extensions/dynamic_modules/
//! abi/abi.h`): the only `unsafe` code of the native build. It declares the callbacks we call,
//! wraps Envoy's pointers in handles with safe methods, and exports the event hooks Envoy calls,
//! each of which turns its pointers back into our objects and hands over to `entry`, inside a
//! panic barrier: a panic fails that request (or that timer tick) closed and never unwinds into
//! Envoy.

use std::ffi::{c_char, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use actorchain::reply::LocalReply;

use crate::entry::{self, Answer, BodyStatus, FilterConfig, HeadersStatus, Stream};

/// The ABI version this module was written against, as Envoy 1.40 names it: Envoy logs whether it
/// matches its own at load.
const ABI_VERSION: &CStr = c"v0.2.0";

/// `envoy_dynamic_module_type_{envoy,module}_buffer`: bytes owned by one side, lent to the other.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Buf {
    ptr: *const u8,
    len: usize,
}

impl Buf {
    fn of(bytes: &[u8]) -> Buf {
        Buf { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    const EMPTY: Buf = Buf { ptr: ptr::null(), len: 0 };

    /// The bytes Envoy lent, valid for the current callback.
    fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            return &[];
        }
        // SAFETY: Envoy lends `len` readable bytes at `ptr` for the duration of the callback, and
        // every caller copies them before returning.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// `envoy_dynamic_module_type_{envoy,module}_http_header`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Header {
    key: Buf,
    value: Buf,
}

// Header types, body types and results, as the ABI numbers them.
const REQUEST_HEADER: u32 = 0;
const RESPONSE_HEADER: u32 = 2;
const RECEIVED_REQUEST_BODY: u32 = 0;
const BUFFERED_REQUEST_BODY: u32 = 1;
const RECEIVED_RESPONSE_BODY: u32 = 2;
const BUFFERED_RESPONSE_BODY: u32 = 3;
const CALLOUT_INIT_SUCCESS: u32 = 0;
const CALLOUT_RESULT_SUCCESS: u32 = 0;
const METRICS_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_attribute_id_ConnectionUriSanPeerCertificate`.
const ATTRIBUTE_URI_SAN_PEER_CERTIFICATE: u32 = 37;
const LOG_INFO: u32 = 2;
const LOG_WARN: u32 = 3;
const LOG_ERROR: u32 = 4;

type EnvoyPtr = *mut c_void;

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: Buf);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
    fn envoy_dynamic_module_callback_http_get_header(
        f: EnvoyPtr,
        ty: u32,
        key: Buf,
        out: *mut Buf,
        index: usize,
        count: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_headers_size(f: EnvoyPtr, ty: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(f: EnvoyPtr, ty: u32, out: *mut Header) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(f: EnvoyPtr, ty: u32, key: Buf, value: Buf) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        f: EnvoyPtr,
        status: u32,
        headers: *const Header,
        n: usize,
        body: Buf,
        details: Buf,
    );
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(f: EnvoyPtr, ty: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(f: EnvoyPtr, ty: u32, out: *mut Buf) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_size(f: EnvoyPtr, ty: u32) -> usize;
    fn envoy_dynamic_module_callback_http_drain_body(f: EnvoyPtr, ty: u32, n: usize) -> bool;
    fn envoy_dynamic_module_callback_http_append_body(f: EnvoyPtr, ty: u32, data: Buf) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(f: EnvoyPtr, id: u32, out: *mut Buf) -> bool;
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(f: EnvoyPtr, key: Buf, value: Buf) -> bool;
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(f: EnvoyPtr);
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        f: EnvoyPtr,
        id: *mut u64,
        cluster: Buf,
        headers: *const Header,
        n: usize,
        body: Buf,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(f: EnvoyPtr, id: usize, labels: *const Buf, n: usize, value: u64)
        -> u32;
    fn envoy_dynamic_module_callback_http_filter_set_gauge(f: EnvoyPtr, id: usize, labels: *const Buf, n: usize, value: u64) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        c: EnvoyPtr,
        id: *mut u64,
        cluster: Buf,
        headers: *const Header,
        n: usize,
        body: Buf,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        c: EnvoyPtr,
        name: Buf,
        labels: *const Buf,
        n: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        c: EnvoyPtr,
        name: Buf,
        labels: *const Buf,
        n: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        c: EnvoyPtr,
        id: usize,
        labels: *const Buf,
        n: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(c: EnvoyPtr, id: usize, labels: *const Buf, n: usize, value: u64) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(c: EnvoyPtr) -> EnvoyPtr;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(s: EnvoyPtr, event: u64);
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(s: EnvoyPtr);
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// Every callback above: a module loaded by an Envoy that lacks one would crash at its first use
/// (symbols bind lazily), so the load is refused instead, naming what is missing.
const CALLBACKS: &[&CStr] = &[
    c"envoy_dynamic_module_callback_log",
    c"envoy_dynamic_module_callback_log_enabled",
    c"envoy_dynamic_module_callback_http_get_header",
    c"envoy_dynamic_module_callback_http_get_headers_size",
    c"envoy_dynamic_module_callback_http_get_headers",
    c"envoy_dynamic_module_callback_http_set_header",
    c"envoy_dynamic_module_callback_http_send_response",
    c"envoy_dynamic_module_callback_http_get_body_chunks_size",
    c"envoy_dynamic_module_callback_http_get_body_chunks",
    c"envoy_dynamic_module_callback_http_get_body_size",
    c"envoy_dynamic_module_callback_http_drain_body",
    c"envoy_dynamic_module_callback_http_append_body",
    c"envoy_dynamic_module_callback_http_filter_get_attribute_string",
    c"envoy_dynamic_module_callback_http_set_filter_state_bytes",
    c"envoy_dynamic_module_callback_http_filter_continue_decoding",
    c"envoy_dynamic_module_callback_http_filter_http_callout",
    c"envoy_dynamic_module_callback_http_filter_increment_counter",
    c"envoy_dynamic_module_callback_http_filter_set_gauge",
    c"envoy_dynamic_module_callback_http_filter_config_http_callout",
    c"envoy_dynamic_module_callback_http_filter_config_define_counter",
    c"envoy_dynamic_module_callback_http_filter_config_define_gauge",
    c"envoy_dynamic_module_callback_http_filter_config_increment_counter",
    c"envoy_dynamic_module_callback_http_filter_config_set_gauge",
    c"envoy_dynamic_module_callback_http_filter_config_scheduler_new",
    c"envoy_dynamic_module_callback_http_filter_config_scheduler_commit",
    c"envoy_dynamic_module_callback_http_filter_config_scheduler_delete",
];

/// The callbacks this Envoy does not export (`RTLD_DEFAULT` is the null handle on glibc).
fn missing_callbacks() -> Vec<&'static str> {
    CALLBACKS
        .iter()
        // SAFETY: dlsym only reads the NUL-terminated name.
        .filter(|name| unsafe { dlsym(ptr::null_mut(), name.as_ptr()) }.is_null())
        .map(|name| name.to_str().unwrap_or("?"))
        .collect()
}

pub fn log(line: &str) {
    // SAFETY: the message is lent for the call.
    unsafe { envoy_dynamic_module_callback_log(LOG_INFO, Buf::of(line.as_bytes())) }
}

pub fn log_warn(line: &str) {
    // SAFETY: as above.
    unsafe { envoy_dynamic_module_callback_log(LOG_WARN, Buf::of(line.as_bytes())) }
}

pub fn log_error(line: &str) {
    // SAFETY: as above.
    unsafe { envoy_dynamic_module_callback_log(LOG_ERROR, Buf::of(line.as_bytes())) }
}

pub fn info_enabled() -> bool {
    // SAFETY: no pointers.
    unsafe { envoy_dynamic_module_callback_log_enabled(LOG_INFO) }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn header_array(headers: &[(&str, &str)]) -> Vec<Header> {
    headers.iter().map(|(k, v)| Header { key: Buf::of(k.as_bytes()), value: Buf::of(v.as_bytes()) }).collect()
}

/// A callout through a stream's or a configuration's callback (the same shape).
type CalloutFn = unsafe extern "C" fn(EnvoyPtr, *mut u64, Buf, *const Header, usize, Buf, u64) -> u32;

fn callout(f: CalloutFn, target: EnvoyPtr, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u64, u32> {
    let hs = header_array(headers);
    let mut id = 0u64;
    // SAFETY: `target` is alive (see the handles); Envoy copies what it is lent and writes `id`.
    let r = unsafe { f(target, &mut id, Buf::of(cluster.as_bytes()), hs.as_ptr(), hs.len(), Buf::of(body), timeout_ms) };
    if r == CALLOUT_INIT_SUCCESS {
        Ok(id)
    } else {
        Err(r)
    }
}

/// A counter increment or a gauge value through a stream's or a configuration's callback, with
/// the one label of a counter family.
type MetricFn = unsafe extern "C" fn(EnvoyPtr, usize, *const Buf, usize, u64) -> u32;

fn metric(f: MetricFn, target: EnvoyPtr, id: usize, label: Option<&str>, value: u64) -> bool {
    let labels: Vec<Buf> = label.iter().map(|l| Buf::of(l.as_bytes())).collect();
    // SAFETY: `target` is alive; Envoy reads the labels during the call.
    unsafe { f(target, id, labels.as_ptr(), labels.len(), value) == METRICS_SUCCESS }
}

/// Envoy's filter for one HTTP stream, valid from `on_http_filter_new` to `on_http_filter_destroy`
/// and only on the worker thread that made it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StreamHandle(EnvoyPtr);

/// Which of a stream's header maps or bodies.
#[derive(Clone, Copy)]
pub enum Side {
    Request,
    Response,
}

impl StreamHandle {
    pub fn header(self, side: Side, name: &str) -> Option<String> {
        let mut out = Buf::EMPTY;
        // SAFETY: the stream is alive (see the type); `out` is written by Envoy.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                side.header_type(),
                Buf::of(name.as_bytes()),
                &mut out,
                0,
                ptr::null_mut(),
            )
        };
        found.then(|| text(out.bytes()))
    }

    pub fn headers(self, side: Side) -> Vec<(String, String)> {
        // SAFETY: Envoy writes exactly `n` entries into a buffer of `n`.
        unsafe {
            let n = envoy_dynamic_module_callback_http_get_headers_size(self.0, side.header_type());
            let mut all = vec![Header { key: Buf::EMPTY, value: Buf::EMPTY }; n];
            if n == 0 || !envoy_dynamic_module_callback_http_get_headers(self.0, side.header_type(), all.as_mut_ptr()) {
                return Vec::new();
            }
            // Envoy's header maps hold names lower-case already.
            all.iter().map(|h| (text(h.key.bytes()), text(h.value.bytes()))).collect()
        }
    }

    /// Sets (or, with `None`, removes) a header.
    pub fn set_header(self, side: Side, name: &str, value: Option<&str>) {
        let value = value.map_or(Buf::EMPTY, |v| Buf::of(v.as_bytes()));
        // SAFETY: Envoy copies both buffers.
        unsafe { envoy_dynamic_module_callback_http_set_header(self.0, side.header_type(), Buf::of(name.as_bytes()), value) };
    }

    /// One of the filter's local replies; its reason is the response's details in Envoy's logs.
    pub fn send_reply(self, r: &LocalReply) {
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.send_response(r.status, &headers, r.body.as_bytes(), r.reason);
    }

    fn send_response(self, status: u32, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let hs = header_array(headers);
        // SAFETY: Envoy copies the headers and the body.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                hs.as_ptr(),
                hs.len(),
                Buf::of(body),
                Buf::of(details.as_bytes()),
            )
        }
    }

    /// The body so far (what earlier callbacks buffered, then what this one received), its first
    /// `limit` bytes.
    pub fn body(self, side: Side, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for ty in side.body_types() {
            // SAFETY: Envoy writes exactly `n` chunks into a buffer of `n`.
            unsafe {
                let n = envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, ty);
                let mut chunks = vec![Buf::EMPTY; n];
                if n > 0 && envoy_dynamic_module_callback_http_get_body_chunks(self.0, ty, chunks.as_mut_ptr()) {
                    for c in chunks {
                        let want = limit.saturating_sub(out.len()).min(c.len);
                        out.extend_from_slice(&c.bytes()[..want]);
                    }
                }
            }
        }
        out
    }

    pub fn body_size(self, side: Side) -> usize {
        // SAFETY: no pointers besides the live stream.
        side.body_types().iter().map(|ty| unsafe { envoy_dynamic_module_callback_http_get_body_size(self.0, *ty) }).sum()
    }

    /// Replaces the whole body seen so far with `body`.
    pub fn replace_body(self, side: Side, body: &[u8]) {
        let [buffered, received] = side.body_types();
        // SAFETY: Envoy copies `body`.
        unsafe {
            for ty in [buffered, received] {
                let n = envoy_dynamic_module_callback_http_get_body_size(self.0, ty);
                envoy_dynamic_module_callback_http_drain_body(self.0, ty, n);
            }
            envoy_dynamic_module_callback_http_append_body(self.0, received, Buf::of(body));
        }
    }

    /// The URI SAN of the downstream peer's verified certificate.
    pub fn peer_uri_san(self) -> Option<String> {
        let mut out = Buf::EMPTY;
        // SAFETY: `out` is written by Envoy.
        let found =
            unsafe { envoy_dynamic_module_callback_http_filter_get_attribute_string(self.0, ATTRIBUTE_URI_SAN_PEER_CERTIFICATE, &mut out) };
        found.then(|| text(out.bytes())).filter(|s| !s.is_empty())
    }

    pub fn set_filter_state(self, key: &str, value: &str) {
        // SAFETY: Envoy copies both.
        unsafe { envoy_dynamic_module_callback_http_set_filter_state_bytes(self.0, Buf::of(key.as_bytes()), Buf::of(value.as_bytes())) };
    }

    pub fn continue_decoding(self) {
        // SAFETY: the stream is alive.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    pub fn callout(self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u64, u32> {
        callout(envoy_dynamic_module_callback_http_filter_http_callout, self.0, cluster, headers, body, timeout_ms)
    }

    pub fn increment_counter(self, id: usize, label: Option<&str>, n: u64) -> bool {
        metric(envoy_dynamic_module_callback_http_filter_increment_counter, self.0, id, label, n)
    }

    pub fn set_gauge(self, id: usize, value: u64) -> bool {
        metric(envoy_dynamic_module_callback_http_filter_set_gauge, self.0, id, None, value)
    }
}

impl Side {
    fn header_type(self) -> u32 {
        match self {
            Side::Request => REQUEST_HEADER,
            Side::Response => RESPONSE_HEADER,
        }
    }

    /// Buffered first: it came first.
    fn body_types(self) -> [u32; 2] {
        match self {
            Side::Request => [BUFFERED_REQUEST_BODY, RECEIVED_REQUEST_BODY],
            Side::Response => [BUFFERED_RESPONSE_BODY, RECEIVED_RESPONSE_BODY],
        }
    }
}

/// Envoy's side of one filter configuration. Envoy keeps it alive until it has destroyed ours,
/// and its calls that we make (callouts, metrics) are made on the main thread, except metric
/// increments, which Envoy's stats make safe from any thread.
#[derive(Clone, Copy, Debug)]
pub struct ConfigHandle(EnvoyPtr);

// SAFETY: the handle is only an address; what may be called with it from which thread is the
// contract above, kept by `entry`.
unsafe impl Send for ConfigHandle {}
// SAFETY: as above.
unsafe impl Sync for ConfigHandle {}

impl ConfigHandle {
    /// Defines a counter (with one label, a family: Envoy names each member `<name>.<label>.<value>`).
    pub fn define_counter(self, name: &str, label: Option<&str>) -> Option<usize> {
        let labels: Vec<Buf> = label.iter().map(|l| Buf::of(l.as_bytes())).collect();
        let mut id = 0usize;
        // SAFETY: Envoy copies the names and writes `id`.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.0,
                Buf::of(name.as_bytes()),
                labels.as_ptr(),
                labels.len(),
                &mut id,
            )
        };
        (r == METRICS_SUCCESS).then_some(id)
    }

    pub fn define_gauge(self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: as above.
        let r = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_gauge(self.0, Buf::of(name.as_bytes()), ptr::null(), 0, &mut id)
        };
        (r == METRICS_SUCCESS).then_some(id)
    }

    pub fn increment_counter(self, id: usize, label: Option<&str>, n: u64) -> bool {
        metric(envoy_dynamic_module_callback_http_filter_config_increment_counter, self.0, id, label, n)
    }

    pub fn set_gauge(self, id: usize, value: u64) -> bool {
        metric(envoy_dynamic_module_callback_http_filter_config_set_gauge, self.0, id, None, value)
    }

    pub fn callout(self, cluster: &str, headers: &[(&str, &str)], body: &[u8], timeout_ms: u64) -> Result<u64, u32> {
        callout(envoy_dynamic_module_callback_http_filter_config_http_callout, self.0, cluster, headers, body, timeout_ms)
    }

    pub fn scheduler(self) -> Scheduler {
        // SAFETY: called on the main thread, during the configuration's life.
        Scheduler(unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) })
    }
}

/// Posts events to the configuration on Envoy's main thread, from any thread.
#[derive(Debug)]
pub struct Scheduler(EnvoyPtr);

// SAFETY: Envoy's scheduler posts to the main thread's dispatcher, which is thread-safe.
unsafe impl Send for Scheduler {}
// SAFETY: as above.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    pub fn commit(&self, event: u64) {
        // SAFETY: the scheduler lives until dropped.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event) }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: deleted once, after its last commit (the ticker is joined before).
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// A callout's answer, copied out of Envoy's buffers.
fn answer(result: u32, headers: *const Header, n_headers: usize, chunks: *const Buf, n_chunks: usize) -> Answer {
    // SAFETY: Envoy lends `n` entries at each pointer for the duration of the hook.
    let headers: &[Header] = if headers.is_null() { &[] } else { unsafe { std::slice::from_raw_parts(headers, n_headers) } };
    // SAFETY: as above.
    let chunks: &[Buf] = if chunks.is_null() { &[] } else { unsafe { std::slice::from_raw_parts(chunks, n_chunks) } };
    let status = (result == CALLOUT_RESULT_SUCCESS)
        .then(|| headers.iter().find(|h| h.key.bytes() == b":status"))
        .flatten()
        .and_then(|h| std::str::from_utf8(h.value.bytes()).ok()?.parse().ok());
    Answer { status, body: chunks.iter().flat_map(|c| c.bytes().iter().copied()).collect() }
}

/// Runs `f` behind the panic barrier: `fallback` when it panicked.
fn guarded<T>(what: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        log_error(&format!("{{\"kind\":\"panic\",\"in\":\"{what}\",\"result\":\"failed closed\"}}"));
        fallback
    })
}

/// Our objects as Envoy holds them.
fn config<'a>(p: *const c_void) -> Option<&'a FilterConfig> {
    // SAFETY: `p` is null or came from `Box::into_raw` in `on_http_filter_config_new`, and Envoy
    // does not use it after `on_http_filter_config_destroy`.
    unsafe { p.cast::<FilterConfig>().as_ref() }
}

fn stream<'a>(p: *mut c_void) -> Option<&'a mut Stream> {
    // SAFETY: `p` is null or came from `Box::into_raw` in `on_http_filter_new`, is used by one
    // thread at a time, and not after `on_http_filter_destroy`.
    unsafe { p.cast::<Stream>().as_mut() }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guarded("program_init", ptr::null(), || {
        let missing = missing_callbacks();
        if !missing.is_empty() {
            // Without the log callback itself, stderr is all there is.
            eprintln!("actorchain: this Envoy lacks callbacks of the dynamic-modules ABI of Envoy 1.40: {}", missing.join(", "));
            return ptr::null();
        }
        entry::program_init();
        ABI_VERSION.as_ptr()
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: EnvoyPtr,
    name_ptr: *const u8,
    name_len: usize,
    config_ptr: *const u8,
    config_len: usize,
) -> *const c_void {
    guarded("config_new", ptr::null(), || {
        let name = Buf { ptr: name_ptr, len: name_len }.bytes();
        let bytes = Buf { ptr: config_ptr, len: config_len }.bytes();
        match entry::config_new(ConfigHandle(envoy), &String::from_utf8_lossy(name), bytes) {
            Some(c) => Box::into_raw(c) as *const c_void,
            None => ptr::null(),
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config_ptr: *mut c_void) {
    if config_ptr.is_null() {
        return;
    }
    // SAFETY: from `Box::into_raw` above; Envoy destroys it once.
    let c = unsafe { Box::from_raw(config_ptr.cast::<FilterConfig>()) };
    guarded("config_destroy", (), || c.destroy());
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(_name: Buf, config: Buf) -> *const c_void {
    guarded("per_route_config_new", ptr::null(), || {
        entry::per_route_config(config.bytes());
        ptr::null()
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(_config: *mut c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(envoy: EnvoyPtr, config_ptr: *const c_void, _event: u64) {
    if let Some(c) = config(config_ptr) {
        guarded("config_scheduled", (), || c.on_tick(ConfigHandle(envoy)));
    }
}

#[allow(clippy::too_many_arguments)] // the ABI's shape
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    envoy: EnvoyPtr,
    config_ptr: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const Header,
    n_headers: usize,
    chunks: *const Buf,
    n_chunks: usize,
) {
    if let Some(c) = config(config_ptr) {
        let a = answer(result, headers, n_headers, chunks, n_chunks);
        guarded("config_callout_done", (), || c.on_callout(ConfigHandle(envoy), callout_id, a));
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(config_ptr: *const c_void, envoy: EnvoyPtr) -> *mut c_void {
    let Some(c) = config(config_ptr) else { return ptr::null_mut() };
    guarded("filter_new", ptr::null_mut(), || Box::into_raw(c.new_stream(StreamHandle(envoy))).cast())
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(stream_ptr: *mut c_void) {
    if stream_ptr.is_null() {
        return;
    }
    // SAFETY: from `Box::into_raw` in `on_http_filter_new`; Envoy destroys it once.
    let s = unsafe { Box::from_raw(stream_ptr.cast::<Stream>()) };
    guarded("filter_destroy", (), || drop(s));
}

/// A request hook: a panic refuses that request (503) and stops it.
fn request_hook<T>(what: &str, envoy: EnvoyPtr, stream_ptr: *mut c_void, stop: T, cont: T, f: impl FnOnce(&mut Stream) -> T) -> T {
    let Some(s) = stream(stream_ptr) else { return cont };
    if s.failed {
        return stop;
    }
    let out = catch_unwind(AssertUnwindSafe(|| f(s)));
    out.unwrap_or_else(|_| {
        log_error(&format!("{{\"kind\":\"panic\",\"in\":\"{what}\",\"result\":\"request refused\"}}"));
        if let Some(s) = stream(stream_ptr) {
            s.failed = true;
        }
        entry::fail_closed(StreamHandle(envoy));
        stop
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: EnvoyPtr,
    stream_ptr: *mut c_void,
    end_of_stream: bool,
) -> u32 {
    request_hook("request_headers", envoy, stream_ptr, HeadersStatus::Stop as u32, HeadersStatus::Continue as u32, |s| {
        s.request_headers(StreamHandle(envoy), end_of_stream) as u32
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(envoy: EnvoyPtr, stream_ptr: *mut c_void, end_of_stream: bool) -> u32 {
    request_hook("request_body", envoy, stream_ptr, BodyStatus::StopNoBuffer as u32, BodyStatus::Continue as u32, |s| {
        s.request_body(StreamHandle(envoy), end_of_stream) as u32
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_envoy: EnvoyPtr, _stream_ptr: *mut c_void) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: EnvoyPtr,
    stream_ptr: *mut c_void,
    _end_of_stream: bool,
) -> u32 {
    request_hook("response_headers", envoy, stream_ptr, HeadersStatus::Stop as u32, HeadersStatus::Continue as u32, |s| {
        s.response_headers(StreamHandle(envoy)) as u32
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(envoy: EnvoyPtr, stream_ptr: *mut c_void, end_of_stream: bool) -> u32 {
    request_hook("response_body", envoy, stream_ptr, BodyStatus::StopNoBuffer as u32, BodyStatus::Continue as u32, |s| {
        s.response_body(StreamHandle(envoy), end_of_stream) as u32
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_envoy: EnvoyPtr, _stream_ptr: *mut c_void) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(envoy: EnvoyPtr, stream_ptr: *mut c_void) {
    if let Some(s) = stream(stream_ptr) {
        guarded("stream_complete", (), || s.complete(StreamHandle(envoy)));
    }
}

#[allow(clippy::too_many_arguments)] // the ABI's shape
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: EnvoyPtr,
    stream_ptr: *mut c_void,
    callout_id: u64,
    result: u32,
    headers: *const Header,
    n_headers: usize,
    chunks: *const Buf,
    n_chunks: usize,
) {
    let a = answer(result, headers, n_headers, chunks, n_chunks);
    request_hook("callout_done", envoy, stream_ptr, (), (), |s| s.callout_done(StreamHandle(envoy), callout_id, a));
}

// Hooks Envoy requires but this filter has no use for.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_envoy: EnvoyPtr, _stream_ptr: *mut c_void, _event: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: EnvoyPtr,
    _stream_ptr: *mut c_void,
    _id: u64,
    _headers: *const Header,
    _n: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: EnvoyPtr,
    _stream_ptr: *mut c_void,
    _id: u64,
    _chunks: *const Buf,
    _n: usize,
    _end: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: EnvoyPtr,
    _stream_ptr: *mut c_void,
    _id: u64,
    _h: *const Header,
    _n: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(_envoy: EnvoyPtr, _stream_ptr: *mut c_void, _id: u64) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: EnvoyPtr,
    _stream_ptr: *mut c_void,
    _id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: EnvoyPtr,
    _stream_ptr: *mut c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: EnvoyPtr,
    _stream_ptr: *mut c_void,
) {
}
