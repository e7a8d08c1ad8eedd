//! The filter's VM dying under load, and Envoy's failure policies: a build of the filter that
//! panics on request (`--features fault-injection`, never shipped) runs in real Envoy. With
//! FAIL_CLOSED every request after the crash is refused (503), with FAIL_RELOAD Envoy starts a new
//! VM and the filter judges requests again. Nothing is ever let through unjudged.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actorchain_demo::apps;
use actorchain_demo::envoy::Envoy;
use actorchain_demo::hostile::{self, Row};
use actorchain_demo::topology::{lone_filter_config, FilterBuild, Paths};

/// One listener with the inbound filter in front of a direct 200, under `policy`; the Envoy and
/// the port its listener took.
async fn start(paths: &Paths, filter: &FilterBuild, policy: &str, dir: &std::path::Path) -> (Envoy, u16) {
    let plugin =
        r#"{"mode":"inbound","issuer":"https://sts.actorchain.dev","audience":"mcp-gateway","sts":{"cluster":"sts","timeout_ms":500}}"#;
    let cfg = dir.join(format!("{policy}.yaml"));
    std::fs::write(&cfg, lone_filter_config(filter, plugin, policy, 0)).unwrap();
    let envoy = Envoy::start(&paths.envoy, &cfg, "warning", &dir.join(format!("{policy}.log")), &["app"]).await.unwrap();
    let port = envoy.ports["app"];
    (envoy, port)
}

/// Status of a request without a token (the filter answers 401 when it is alive), or of a
/// request that asks the test build to panic.
async fn ask(port: u16, panic: bool) -> String {
    let headers: &[(&str, &str)] = if panic { &[("x-actorchain-fault", "panic")] } else { &[] };
    match apps::http(([127, 0, 0, 1], port).into(), "GET", "app", "/", headers, Vec::new()).await {
        Ok((200, body)) => format!("200 {}", String::from_utf8_lossy(&body)),
        Ok((status, _)) => status.to_string(),
        Err(_) => "connection closed".into(),
    }
}

async fn until(port: u16, want: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let got = ask(port, false).await;
        if got == want || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_vm_fails_closed_or_reloads_and_never_fails_open() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let paths = Paths::workspace(&root, "debug", work.path().to_path_buf());
    let wasm = root.join("target/actorchain-fault-injection.wasm");
    let wasm = FilterBuild::Wasm(wasm.canonicalize().unwrap_or_else(|_| panic!("{} (make test builds it)", wasm.display())));
    let mut rows = Vec::new();
    for (policy, after) in [("FAIL_CLOSED", "503"), ("FAIL_RELOAD", "401")] {
        let (_envoy, port) = start(&paths, &wasm, policy, work.path()).await;
        let alive = until(port, "401", Duration::from_secs(20)).await;
        let crash = ask(port, true).await;
        // FAIL_RELOAD restarts the VM after a 1 s backoff; give either policy the same time.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let then = until(port, after, Duration::from_secs(5)).await;
        let row = |id: &str, what: &str, expected: &str, observed: String| Row {
            id: format!("{}-{id}", policy.to_lowercase().replace('_', "-")),
            attack: what.into(),
            target: "Envoy",
            expected: expected.into(),
            observed,
        };
        rows.push(row("before", &format!("{policy}: a request without a token before the crash"), "401", alive));
        rows.push(row("crash", &format!("{policy}: the request that panics the VM"), "503", crash));
        rows.push(row("after", &format!("{policy}: a request without a token after the crash"), after, then));
    }
    let failed: Vec<String> =
        rows.iter().filter(|r| !r.passed()).map(|r| format!("{}: expected {}, observed {}", r.id, r.expected, r.observed)).collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    let doc = hostile::render(
        "Hardening: the filter's VM crashes",
        "Written by `tests/vm_failure.rs`: Envoy runs a build of the filter that panics when a request asks it to \
         (`--features fault-injection`, built by `make test`, never shipped), in front of a route that answers 200 \
         with `app`. A live filter answers a request without a token with 401; `200 app` would mean a request got \
         through unjudged.",
        &rows,
    );
    hostile::check_doc(&root.join("docs/hardening-vm-failure.md"), &doc).unwrap();
}

/// The native build has no VM to lose: a panic is caught where Envoy called in, refuses that one
/// request (503), and Envoy and every other request go on. Needs `make test-native`'s build that
/// panics on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_panic_fails_that_request_closed_and_envoy_lives_on() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let paths = Paths::workspace(&root, "debug", work.path().to_path_buf());
    let so = root.join("target/actorchain-envoy-fault-injection.so");
    let so = FilterBuild::Native(so.canonicalize().unwrap_or_else(|_| panic!("{} (make test-native builds it)", so.display())));
    let (envoy, port) = start(&paths, &so, "native", work.path()).await;
    assert_eq!(until(port, "401", Duration::from_secs(20)).await, "401", "the filter judges requests");
    for _ in 0..3 {
        assert_eq!(ask(port, true).await, "503", "a panicking request is refused");
        assert_eq!(ask(port, false).await, "401", "the next request is judged as ever");
    }
    assert!(envoy.running(), "Envoy survives the filter's panics");
    let log = std::fs::read_to_string(work.path().join("native.log")).unwrap();
    assert!(log.contains(r#""kind":"panic""#), "the panic is in Envoy's log: {log}");
}
