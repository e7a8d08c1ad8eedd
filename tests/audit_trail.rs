//! What agents did, in the STS's ledger, from real Envoy sidecars: each sidecar reports its
//! decisions (requests accepted or refused, every MCP/A2A call with its rule, calls served from
//! its cache) to the STS, which appends them to the one hash chain under the session they belong
//! to. With the STS down, reports wait in a bounded buffer and are all there once it is back, or
//! counted as dropped.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actorchain_demo::scenario::{claims, oncall_calling};
use actorchain_demo::topology::{Demo, Paths, Tuning};
use serde_json::Value;

async fn start(tuning: Tuning) -> (Demo, tempfile::TempDir) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let demo = Demo::start_tuned(Paths::workspace(&root, "debug", work.path().to_path_buf()), tuning).await.expect("demo topology starts");
    (demo, work)
}

/// The session's tree once it has every line in `wanted` (reports arrive within a second or so).
async fn tree_with(demo: &Demo, sid: &str, wanted: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let tree = demo.ledger_tree(sid).await.unwrap();
        if wanted.iter().all(|w| tree.contains(w)) || Instant::now() > deadline {
            return tree;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sidecar reports in the ledger about user1's work made at or after `since` (the sidecars'
/// readiness probes at start are reported too, about nobody).
async fn reports_since(demo: &Demo, since: u64) -> Vec<Value> {
    let v = demo.ledger_query(&format!("since={since}")).await.unwrap();
    v["records"].as_array().unwrap().iter().filter(|r| r["direction"].is_string() && r["sub"] == "user1").cloned().collect()
}

/// The decisions those reports stand for: a line counts the times its decision was made again.
fn decisions(reports: &[Value]) -> usize {
    reports.iter().map(|r| r["count"].as_u64().unwrap_or(1) as usize).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_tree_shows_its_tool_calls_refusals_and_calls_served_from_cache() {
    let (demo, _work) = start(Tuning::default()).await;
    let person = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let pr = oncall_calling(&demo, &person, "create_pr", &[]).await.unwrap();
    assert_eq!(pr.status, 200, "{}", pr.response);
    // The same work asks for a tool its token holds no scope for: refused at the MCP server.
    let metrics = oncall_calling(&demo, &person, "read_metrics", &[]).await.unwrap();
    assert_ne!(metrics.status, 200);
    let sid = claims(&pr.tokens[1])["sid"].as_str().unwrap().to_string();
    let wanted = [
        "[investigation] inbound accepted (valid)",
        "[investigation] inbound allowed (rule) message/send investigate rule investigate",
        "[mcp-server] inbound allowed (rule) tools/call create_pr rule create-pr",
        "[mcp-server] inbound refused (scope_missing) tools/call read_metrics rule read-metrics",
        "[oncall] outbound exchanged (granted) to investigation-agent",
        "[oncall] outbound cache_hit (granted) to investigation-agent",
        "[investigation] outbound cache_hit (granted) to mcp-gateway",
    ];
    let tree = tree_with(&demo, &sid, &wanted).await;
    for w in wanted {
        assert!(tree.contains(w), "{w} missing from:\n{tree}");
    }
    // Each under the token it judged: the MCP server's under the hop to mcp-gateway.
    let hop2 = tree.lines().position(|l| l.contains("=> mcp-gateway  granted")).unwrap();
    let call = tree.lines().position(|l| l.contains("tools/call create_pr")).unwrap();
    assert!(call > hop2 && tree.lines().nth(call).unwrap().starts_with("    "), "{tree}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_sts_down_reports_wait_and_what_does_not_fit_is_counted() {
    // One line per worker: a decision made again is counted on its line, so only a sidecar that
    // makes more than one kind of decision per run fills it.
    const BUFFER: usize = 1;
    let (demo, _work) = start(Tuning { reports_max_buffered: Some(BUFFER), ..Tuning::default() }).await;
    let person = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let dropped_so_far = || async {
        let mut n = 0;
        for w in demo.workloads.clone() {
            n += demo.counter(&w, "actorchain.reports.dropped").await as usize;
        }
        n
    };
    // One run with the STS up: how many decisions one run reports (in the ledger, or dropped).
    let before = actorchain_sts::server::unix_now();
    assert_eq!(oncall_calling(&demo, &person, "create_pr", &[]).await.unwrap().status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut per_run = 0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let n = decisions(&reports_since(&demo, before).await) + dropped_so_far().await;
        if n > 0 && n == per_run {
            break;
        }
        per_run = n;
    }
    let dropped_before = dropped_so_far().await;
    assert!((5..=12).contains(&per_run), "one run made {per_run} reports");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // The STS goes away; the work goes on from the sidecars' caches.
    demo.stop_sts();
    let down_since = actorchain_sts::server::unix_now();
    const RUNS: usize = 5;
    for _ in 0..RUNS {
        let run = oncall_calling(&demo, &person, "create_pr", &[]).await.unwrap();
        assert_eq!(run.status, 200, "served from cache with the STS down: {}", run.response);
    }
    demo.restart_sts().unwrap();
    // Back: every report made meanwhile is in the ledger, or was counted as dropped.
    let mut dropped = 0;
    let mut kept = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        kept = decisions(&reports_since(&demo, down_since).await);
        dropped = dropped_so_far().await - dropped_before;
        if kept + dropped == RUNS * per_run {
            break;
        }
    }
    assert_eq!(kept + dropped, RUNS * per_run, "{kept} in the ledger, {dropped} dropped");
    assert!(dropped > 0 && kept >= BUFFER, "{kept} in the ledger, {dropped} dropped");
}
