//! Everything the filter needs from the proxy, as one small trait. The proxy-wasm glue
//! implements it; native tests implement it with a fake, since a real host call does not even
//! link outside Envoy.

use crate::config::StsConfig;
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
    /// Starts an HTTP call to the STS cluster; the answer arrives later.
    fn dispatch(&mut self, sts: &StsConfig, headers: &[(&str, &str)], body: &[u8]) -> Result<u32, String>;
    /// Whether audit lines are being recorded at all (Envoy's log level), so a line nobody will
    /// see is not even built.
    fn audit_enabled(&self) -> bool;
    /// One audit line (JSON); never contains a token.
    fn audit(&self, line: &str);
    fn count(&mut self, metric: &str);
}
