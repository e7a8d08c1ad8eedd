//! MCP JSON-RPC bodies and `tools/list` answers: no input panics; trimming keeps valid JSON.
#![no_main]

use actorchain::config::McpConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cfg = McpConfig { path_prefix: "/mcp".into(), max_body_bytes: 64 * 1024, max_batch: 16, filter_tools_list: true };
    let _ = actorchain::mcp::parse(data, &cfg);
    if let Some(trimmed) = actorchain::mcp::filter_tools_list(data, |name| name.starts_with('a')) {
        assert!(serde_json::from_slice::<serde_json::Value>(&trimmed).is_ok());
    }
});
