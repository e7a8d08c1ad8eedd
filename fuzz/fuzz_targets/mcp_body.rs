//! MCP and A2A JSON-RPC bodies and `tools/list` answers: no input panics; trimming keeps valid JSON.
#![no_main]

use actorchain::config::McpConfig;
use actorchain::rpc::{self, Protocol};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = McpConfig { path_prefix: "/mcp".into(), max_body_bytes: 64 * 1024, max_batch: 16, filter_tools_list: true };
    for protocol in [Protocol::Mcp, Protocol::A2a] {
        let _ = rpc::parse(data, &cfg, protocol);
    }
    if let Some(trimmed) = rpc::filter_tools_list(data, |name| name.starts_with('a')) {
        assert!(serde_json::from_slice::<serde_json::Value>(&trimmed).is_ok());
    }
});
