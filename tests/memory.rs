//! Sustained load with memory bounded: every accepted request is recorded for the outbound side
//! under a correlation key minted for it (and each carries a trace id never seen before), in
//! Envoy's shared data, which has no delete and no expiry. The filter keeps those records in a
//! fixed number of slots (`shared_slots`, small here so the bound is reached quickly) and empties
//! a record's slot when its request ends; the sidecar's resident memory must level off however
//! many more requests come. Writes `docs/hardening-memory.md`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use actorchain_demo::hostile::{self, Forge, Row};
use actorchain_demo::scenario::tools_call;
use actorchain_demo::topology::{Demo, Paths, Tuning};

const SLOTS: u32 = 256;
const WARM: u64 = 3_000;
const MORE: u64 = 12_000;
/// 12,000 unbounded records of ~1 KB would add ~12 MB.
const ALLOWED_GROWTH_KB: u64 = 4 * 1024;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `n` requests from four keep-alive connections at once, each with a fresh `traceparent`.
async fn load(demo: &Demo, auth: &str, n: u64, next: &AtomicU64) {
    let body = tools_call("create_pr").to_string().into_bytes();
    let client = || async {
        let mut conn = demo.ingress("investigation", "oncall").await.unwrap();
        for _ in 0..n / 4 {
            let i = next.fetch_add(1, Ordering::Relaxed) + 1;
            let tp = format!("00-{i:032x}-{i:016x}-01");
            let h = [("authorization", auth), ("traceparent", tp.as_str()), ("content-type", "application/json")];
            let r = conn.request("POST", "/investigate", &h, body.clone()).await.unwrap();
            assert_eq!(r.status, 200, "{}", r.body);
        }
    };
    tokio::join!(client(), client(), client(), client());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_under_sustained_unique_traffic() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let paths = Paths::workspace(&root, "debug", work.path().to_path_buf());
    let demo = Demo::start_tuned(paths, Tuning { shared_slots: Some(SLOTS), ..Tuning::default() }).await.expect("demo topology starts");
    let forge = Forge::read(&demo.dev, actorchain_sts::server::unix_now()).unwrap();
    let auth = format!("Bearer {}", forge.sign(&forge.header(), &forge.claims("memory")));
    let pid = demo.envoy_pid("investigation").unwrap();
    let next = AtomicU64::new(0);

    load(&demo, &auth, WARM, &next).await;
    let before = rss_kb(pid);
    load(&demo, &auth, MORE, &next).await;
    let after = rss_kb(pid);
    let growth = after.saturating_sub(before);
    eprintln!("investigation sidecar RSS: {before} kB after {WARM} requests, {after} kB after {MORE} more (+{growth} kB)");

    let rows = [Row {
        id: "unique-traces".into(),
        attack: format!("{MORE} more requests, each with a new trace id, after {WARM} (shared_slots {SLOTS})"),
        target: "Envoy (inbound + outbound)",
        expected: "resident memory grows less than 4 MB".into(),
        observed: if growth < ALLOWED_GROWTH_KB {
            "resident memory grows less than 4 MB".into()
        } else {
            format!("resident memory grew {} MB", growth / 1024)
        },
    }];
    assert!(rows[0].passed(), "{}", rows[0].observed);
    let doc = hostile::render(
        "Hardening: memory under sustained load",
        "Written by `tests/memory.rs` (real Envoy, real STS): the investigation agent's sidecar receives requests \
         that each carry a trace id never seen before, and records each accepted token for its outbound side under \
         a correlation key minted for that request, until the request ends. Envoy's shared data has no delete and \
         no expiry; the filter keeps such records in `shared_slots` fixed slots and empties a slot when its request \
         ends. The last run's figures are printed by the test.",
        &rows,
    );
    hostile::check_doc(&root.join("docs/hardening-memory.md"), &doc).unwrap();
}
