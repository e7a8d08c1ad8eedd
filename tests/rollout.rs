//! Rolling out into a mesh that already runs agents, in real Envoy: with every filter observing
//! only, hostile and missing tokens all reach the apps, each counted and logged with the reason
//! enforcement would give, and `actorchain-sts would-refuse` lists them; probe and discovery paths
//! need no token, while enforcement is on or off.

use std::path::PathBuf;

use actorchain_demo::hostile::Forge;
use actorchain_demo::scenario::tools_call;
use actorchain_demo::topology::{Demo, Paths, Tuning};
use serde_json::json;

async fn start(tuning: Tuning) -> (Demo, tempfile::TempDir) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let demo = Demo::start_tuned(Paths::workspace(&root, "debug", work.path().to_path_buf()), tuning).await.expect("demo topology starts");
    (demo, work)
}

/// Hostile tokens and the reason an enforcing sidecar refuses each with (as in the attack table).
fn hostile(f: &Forge) -> Vec<(Option<String>, &'static str)> {
    let c = f.claims("observed");
    let mut expired = c.clone();
    (expired["iat"], expired["nbf"], expired["exp"]) = (json!(f.now - 600), json!(f.now - 600), json!(f.now - 120));
    let mut elsewhere = c.clone();
    elsewhere["aud"] = json!("mcp-gateway");
    let mut none = f.header();
    none["alg"] = json!("none");
    vec![
        (None, "token_missing"),
        (Some("garbage".into()), "token_malformed"),
        (Some(f.sign(&f.header(), &expired)), "token_expired"),
        (Some(f.sign(&f.header(), &elsewhere)), "audience_mismatch"),
        (Some(f.with_signature(&none, &c, b"")), "alg_not_allowed"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_only_lets_everything_through_and_reports_what_it_would_refuse() {
    let (demo, work) = start(Tuning { enforce: Some(false), ..Tuning::default() }).await;
    let f = Forge::read(&demo.dev, actorchain_sts::server::unix_now()).unwrap();
    let w = demo.workload("investigation").unwrap().clone();
    for (token, reason) in hostile(&f) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut h = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            h.push(("authorization", a.as_str()));
        }
        let (status, body) = demo.call("investigation", "oncall", "/investigate", &h, tools_call("create_pr")).await.unwrap();
        // The app answered (whatever the chain behind it did): the sidecar let the request in.
        assert!(body["agent"].is_string(), "{reason}: {status} {body}");
        assert!(body["received"].get("x-actorchain-sub").is_none(), "{reason}: no identity without a valid token");
        assert!(demo.counter(&w, &format!("actorchain.inbound.would_refuse.{reason}")).await >= 1, "{reason} not counted");
    }
    // The report lists each with its reason.
    let sts_bin = Paths::workspace(&PathBuf::from(env!("CARGO_MANIFEST_DIR")), "debug", work.path().to_path_buf()).sts_bin;
    let out = std::process::Command::new(sts_bin).arg("would-refuse").arg(work.path().join("envoy/investigation.log")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = String::from_utf8_lossy(&out.stdout);
    for (_, reason) in hostile(&f) {
        assert!(report.lines().any(|l| l.contains("inbound") && l.ends_with(reason)), "{reason} missing from:\n{report}");
    }
}
