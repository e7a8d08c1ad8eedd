//! The lineage page in a real browser: headless Chromium (Debian's) opens the STS's admin listener
//! on the demo session — after the on-call chain opened a PR and was refused another tool — and
//! the drawn tree holds its hops, the allowed call with its rule and the refused one with its
//! reason. A screenshot is saved as `.work/lineage.png`. Reached under a host name (DNS rebinding)
//! it answers nothing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use actorchain_demo::scenario::{claims, oncall_calling};
use actorchain_demo::topology::{Demo, Paths};

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("Debian's chromium (make test installs it)")
}

/// Headless Chromium on `url` with `extra` (`--dump-dom`, `--screenshot=...`): its standard output.
fn headless(url: &str, extra: &[&str], profile: &Path) -> String {
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=15000", "--window-size=1600,1000"])
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lineage_page_draws_the_demo_session_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let demo = Demo::start(Paths::workspace(&root, "debug", work.path().to_path_buf())).await.expect("demo topology starts");
    let person = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let pr = oncall_calling(&demo, &person, "create_pr", &[]).await.unwrap();
    assert_eq!(pr.status, 200, "{}", pr.response);
    assert_ne!(oncall_calling(&demo, &person, "read_metrics", &[]).await.unwrap().status, 200);
    let sid = claims(&pr.tokens[1])["sid"].as_str().unwrap().to_string();
    // The sidecars' reports arrive within a second or so.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !demo.ledger_tree(&sid).await.unwrap().contains("read_metrics") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let url = format!("http://{}/lineage#sid={sid}", demo.sts_admin);
    let dom = headless(&url, &["--dump-dom"], &work.path().join("chromium"));
    for drawn in [
        "data-ready=\"true\"",
        "user1 (https://idp.actorchain.dev)",
        "oncall-agent ⇒ investigation-agent",
        "oncall-agent → investigation-agent ⇒ mcp-gateway",
        "[mcp-server] inbound tools/call create_pr",
        "allowed (rule) rule create-pr",
        "[mcp-server] inbound tools/call read_metrics",
        "refused (scope_missing) rule read-metrics",
        "class=\"node refused\"",
        "[oncall] outbound to investigation-agent",
    ] {
        assert!(dom.contains(drawn), "{drawn} not drawn:\n{dom}");
    }
    // The session list, by person and time.
    assert!(dom.contains(&format!("data-sid=\"{sid}\"")), "the session is not listed:\n{dom}");

    let shot = root.join(".work/lineage.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&shot);
    headless(&url, &[&format!("--screenshot={}", shot.display())], &work.path().join("chromium"));
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());

    // The page names nothing outside itself; and reached under a name (as a DNS-rebinding site
    // would reach it from a browser on this machine) it answers nothing.
    let at = demo.sts_admin.to_string();
    let (status, page) = actorchain_demo::apps::http(demo.sts_admin, "GET", &at, "/lineage", &[], vec![]).await.unwrap();
    assert_eq!(status, 200);
    assert!(!String::from_utf8_lossy(&page).contains("http"), "the page names no outside address");
    for path in ["/lineage", &format!("/lineage/session?sid={sid}")] {
        let (status, _) = actorchain_demo::apps::http(demo.sts_admin, "GET", "attacker.example", path, &[], vec![]).await.unwrap();
        assert_eq!(status, 403, "{path} under another name");
    }
}
