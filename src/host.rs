//! Everything the filter needs from the proxy, as one small trait. The proxy-wasm glue
//! implements it; native tests implement it with a fake, since a real host call does not even
//! link outside Envoy. Calls act on the request (or callout answer) the host currently addresses.

use std::time::Duration;

use crate::reply::LocalReply;

/// Envoy's shared data: one key-value store for every worker of the VM.
pub trait SharedData {
    /// The value under `key` (`None` when absent or emptied) and its version, for `shared_set`.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` unless `cas` names a version another write has replaced since; says
    /// whether it wrote.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

pub trait Host: SharedData {
    /// Seconds since the epoch.
    fn now(&self) -> u64;
    /// Milliseconds since the epoch.
    fn now_ms(&self) -> u64;
    fn request_header(&self, name: &str) -> Option<String>;
    /// All request headers, in order, names lower-case.
    fn request_headers(&self) -> Vec<(String, String)>;
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    /// SPIFFE ID (URI SAN) of the downstream peer's verified client certificate, if mTLS.
    fn peer_identity(&self) -> Option<String>;
    fn send_reply(&mut self, reply: &LocalReply);
    /// The buffered request body, its first `len` bytes.
    fn request_body(&self, len: usize) -> Vec<u8>;
    fn set_response_header(&mut self, name: &str, value: Option<&str>);
    /// The buffered response body, its first `len` bytes.
    fn response_body(&self, len: usize) -> Vec<u8>;
    /// Replaces the first `len` bytes of the buffered response body with `body`.
    fn set_response_body(&mut self, len: usize, body: &[u8]);
    /// Starts an HTTP call to `cluster`; its answer arrives later under the returned token.
    fn dispatch(&mut self, cluster: &str, timeout: Duration, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<u32, String>;
    /// In a callout's answer: its status (`None` when the call failed without a response).
    fn callout_status(&self) -> Option<u32>;
    /// In a callout's answer: the first `len` bytes of its body.
    fn callout_body(&self, len: usize) -> Vec<u8>;
    /// Addresses another request of this worker (one that waited for a callout); false when it
    /// is gone (its client went away).
    fn switch_to(&mut self, context: u32) -> bool;
    /// Lets the addressed request, paused until now, go on.
    fn resume_request(&mut self);
    /// Whether audit lines are being recorded at all (Envoy's log level), so a line nobody will
    /// see is not even built.
    fn audit_enabled(&self) -> bool;
    /// One audit line (JSON); never contains a token.
    fn audit(&self, line: &str);
    /// Whether decision lines go to the STS's ledger too.
    fn reporting(&self) -> bool;
    /// Queues one decision line (JSON, never a token) for the STS's ledger; never waits. With
    /// `repeat_key`, the same decision made again is counted on it (`report_repeat`).
    fn report(&self, line: &str, repeat_key: Option<&str>);
    /// Counts a decision already queued under `key` once more; false when none is queued.
    fn report_repeat(&self, key: &str) -> bool;
    /// A warning (JSON): something failed that the filter works around.
    fn warn(&self, line: &str);
    /// Sets `name` in the request's filter state (`wasm.<name>` in Envoy), where tracing custom
    /// tags read it.
    fn set_trace_tag(&mut self, name: &str, value: &str);
    /// Checks an ES256 signature with the host's crypto: the key as DER SubjectPublicKeyInfo, the
    /// signature as DER. `None` when the host offers none (the filter then checks it itself).
    fn verify_es256(&self, _spki_der: &[u8], _message: &[u8], _der_signature: &[u8]) -> Option<bool> {
        None
    }
    fn count(&mut self, metric: &str) {
        self.count_by(metric, 1);
    }
    fn count_by(&mut self, metric: &str, n: u64);
    fn gauge(&mut self, metric: &str, value: u64);
}
