//! The STS's HTTP interface in process: `app` answers requests as the listener would, with the
//! peer the TLS layer would have authenticated, without spawning the binary.

use actorchain_sts::app::{app, health, Peer};
use actorchain_sts::config::Config;
use actorchain_sts::dev;
use actorchain_sts::server::{unix_now, Sts};
use actorchain_token::wire::{ErrorBody, ExchangeRequest, ExchangeResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};

struct Answer {
    status: u16,
    allow: Option<String>,
    body: String,
}

async fn read(r: Response<Full<Bytes>>) -> Answer {
    let status = r.status().as_u16();
    let allow = r.headers().get("allow").and_then(|v| v.to_str().ok()).map(String::from);
    let body = String::from_utf8_lossy(&r.into_body().collect().await.unwrap().to_bytes()).into_owned();
    Answer { status, allow, body }
}

async fn call(sts: &Sts, method: &str, path: &str, content_type: &str, body: &str, peer: &Peer) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    read(app(sts, req, peer).await).await
}

/// The reason of an error answer.
fn reason(a: &Answer) -> String {
    serde_json::from_str::<ErrorBody>(&a.body).map(|e| e.actorchain_reason).unwrap_or_else(|_| a.body.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_in_process() {
    let dir = tempfile::tempdir().unwrap();
    dev::init(dir.path(), false).unwrap();
    let sts = Sts::open(Config::load(&dir.path().join("sts.toml")).unwrap()).unwrap();
    let oncall = Peer::Workload(dev::workload_id("oncall"));
    let admin = Peer::Workload(dev::workload_id("admin"));
    let form = "application/x-www-form-urlencoded";
    let json = "application/json";

    let person = dev::person_token(dir.path(), "user1", "oncall-agent", "incidents:read", 600, None, unix_now()).unwrap();
    let ask = ExchangeRequest { subject: Some(&person), audience: "investigation-agent", scope: None, client_id: "oncall-agent" }.form();
    let granted = call(&sts, "POST", "/token", form, &ask, &oncall).await;
    assert_eq!(granted.status, 200, "{}", granted.body);
    let answer: ExchangeResponse = serde_json::from_str(&granted.body).unwrap();
    assert_eq!(answer.scope, "incidents:read");

    let anonymous = call(&sts, "POST", "/token", form, &ask, &Peer::Anonymous).await;
    assert_eq!((anonymous.status, reason(&anonymous).as_str()), (401, "workload_unauthenticated"));
    let wrong_type = call(&sts, "POST", "/token", "text/plain", &ask, &oncall).await;
    assert_eq!((wrong_type.status, reason(&wrong_type).as_str()), (415, "content_type_unsupported"));
    let get = call(&sts, "GET", "/token", form, "", &oncall).await;
    assert_eq!((get.status, get.allow.as_deref(), reason(&get).as_str()), (405, Some("POST"), "method_not_allowed"));
    let huge = call(&sts, "POST", "/token", form, &"a".repeat(64 * 1024), &oncall).await;
    assert_eq!((huge.status, reason(&huge).as_str()), (413, "body_too_large"));

    // Admin operations: only with an admin SVID, and a person is named with their issuer.
    let revoke = |v: serde_json::Value, who| {
        let sts = &sts;
        async move { call(sts, "POST", "/admin/revocations", json, &v.to_string(), who).await }
    };
    let not_admin = revoke(serde_json::json!({"kind": "session", "value": "s", "reason": "r"}), &oncall).await;
    assert_eq!((not_admin.status, reason(&not_admin).as_str()), (403, "admin_required"));
    let bare = revoke(serde_json::json!({"kind": "person", "value": "user1", "reason": "r"}), &admin).await;
    assert_eq!((bare.status, reason(&bare).as_str()), (400, "revocation_issuer_missing"));
    let person_ask = serde_json::json!({"kind": "person", "issuer": dev::IDP_ISSUER, "value": "user1", "reason": "test"});
    let done = revoke(person_ask, &admin).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let refused = call(&sts, "POST", "/token", form, &ask, &oncall).await;
    assert_eq!((refused.status, reason(&refused).as_str()), (400, "person_revoked"));
    let query = call(&sts, "GET", "/admin/ledger?sub=user1&issuer=https://idp.actorchain.dev", json, "", &admin).await;
    let records: serde_json::Value = serde_json::from_str(&query.body).unwrap();
    // The grant, the refusal, and the revocation with who and why.
    assert_eq!(records["records"].as_array().map(Vec::len), Some(3), "{}", query.body);
    assert_eq!(records["records"][1]["by"], dev::workload_id("admin"));
    let bad_query = call(&sts, "GET", "/admin/ledger?colour=red", json, "", &admin).await;
    assert_eq!((bad_query.status, reason(&bad_query).as_str()), (400, "ledger_query_invalid"));

    let feed = call(&sts, "GET", "/revocations?since=0", json, "", &oncall).await;
    assert!(feed.body.contains("user1"), "{}", feed.body);
    assert_eq!(reason(&call(&sts, "GET", "/revocations", json, "", &Peer::Anonymous).await), "workload_unauthenticated");
    assert_eq!(call(&sts, "GET", "/.well-known/jwks.json", json, "", &Peer::Anonymous).await.status, 200);
    let missing = call(&sts, "GET", "/nowhere", json, "", &Peer::Anonymous).await;
    assert_eq!((missing.status, reason(&missing).as_str()), (404, "not_found"));

    let ready = read(health(&sts, "/readyz", "", None)).await;
    assert_eq!(ready.status, 200);
    assert!(read(health(&sts, "/metrics", "", None)).await.body.contains("actorchain_sts_decisions_total"));
}

#[test]
fn telemetry_is_off_unless_a_collector_is_named_and_a_bad_one_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    dev::init(dir.path(), false).unwrap();
    let file = dir.path().join("sts.toml");
    assert!(Config::load(&file).unwrap().telemetry.is_none());
    let base = std::fs::read_to_string(&file).unwrap();
    for (section, field) in [
        ("otlp_endpoint = \"https://collector:4318/v1/traces\"", "telemetry.otlp_endpoint"),
        ("otlp_endpoint = \"http://\"", "telemetry.otlp_endpoint"),
        ("otlp_endpoint = \"http://c:4318/v1/traces\"\nexport_delay_ms = 0", "telemetry.export_delay_ms"),
    ] {
        std::fs::write(&file, format!("{base}\n[telemetry]\n{section}\n")).unwrap();
        let e = Config::load(&file).unwrap_err();
        assert!(e.contains(field), "{section}: {e}");
    }
    std::fs::write(&file, format!("{base}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\n")).unwrap();
    let t = Config::load(&file).unwrap().telemetry.unwrap();
    assert_eq!((t.service_name.as_str(), t.export_delay_ms), ("actorchain-sts", 1000));
}

/// `actorchain-sts ledger verify` with a checkpoint: its outcome line, or its error.
fn verify_with(db: &std::path::Path, checkpoint: &std::path::Path, keys: &std::path::Path) -> Result<String, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_actorchain-sts"))
        .args(["ledger", "verify", "--db"])
        .arg(db)
        .arg("--checkpoint")
        .arg(checkpoint)
        .arg("--keys")
        .arg(keys)
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_checkpoints_name_what_was_cut_or_rewritten_after_them() {
    let dir = tempfile::tempdir().unwrap();
    dev::init(dir.path(), false).unwrap();
    let cfg = Config::load(&dir.path().join("sts.toml")).unwrap();
    let (db, state) = (cfg.state_dir.join("actorchain.db"), cfg.state_dir.clone());
    let sts = Sts::open(cfg).unwrap();
    let (oncall, admin) = (Peer::Workload(dev::workload_id("oncall")), Peer::Workload(dev::workload_id("admin")));
    let form = "application/x-www-form-urlencoded";
    let person = dev::person_token(dir.path(), "user1", "oncall-agent", "incidents:read", 600, None, unix_now()).unwrap();
    let ask = ExchangeRequest { subject: Some(&person), audience: "investigation-agent", scope: None, client_id: "oncall-agent" }.form();
    let exchange = || async { assert_eq!(call(&sts, "POST", "/token", form, &ask, &oncall).await.status, 200) };
    for _ in 0..6 {
        exchange().await;
    }
    // On demand, for admins only; the key is published like the JWKS.
    assert_eq!(call(&sts, "POST", "/admin/ledger/checkpoint", "application/json", "", &oncall).await.status, 403);
    let cp = call(&sts, "POST", "/admin/ledger/checkpoint", "application/json", "", &admin).await;
    assert_eq!(cp.status, 200, "{}", cp.body);
    let keys = call(&sts, "GET", "/.well-known/ledger-keys.json", "application/json", "", &Peer::Anonymous).await;
    let (cp_file, keys_file) = (dir.path().join("checkpoint.json"), dir.path().join("ledger-keys.json"));
    std::fs::write(&cp_file, &cp.body).unwrap();
    std::fs::write(&keys_file, &keys.body).unwrap();
    exchange().await;
    exchange().await;
    let ok = verify_with(&db, &cp_file, &keys_file).unwrap();
    assert!(ok.contains("8 records, chain intact; the 6 covered by the checkpoint"), "{ok}");

    // Whoever can write the database relinks an edited record: the chain alone passes, the checkpoint does not.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT seq, body FROM ledger ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev = actorchain_sts::ledger::GENESIS.to_string();
    for (seq, body) in &rows {
        let body = if *seq == 3 { body.replace("\"granted\"", "\"refused\"") } else { body.clone() };
        let hash = actorchain_sts::ledger::link_hash(&prev, *seq as u64, &body);
        conn.execute("UPDATE ledger SET body = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4", rusqlite::params![body, prev, hash, seq])
            .unwrap();
        prev = hash;
    }
    let e = verify_with(&db, &cp_file, &keys_file).unwrap_err();
    assert!(e.contains("records up to 6 are not the ones the checkpoint covers"), "{e}");
    // The newest records cut off (after the checkpoint was taken, before the auditor looks).
    conn.execute("DELETE FROM ledger WHERE seq > 4", []).unwrap();
    let e = verify_with(&db, &cp_file, &keys_file).unwrap_err();
    assert!(e.contains("2 records removed from the tail: the checkpoint covers 6, the ledger holds 4"), "{e}");
    // A checkpoint is only as good as its key: another key is refused.
    let other = actorchain_sts::checkpoint::LedgerKey::load_or_create(&dir.path().join("other-key.json")).unwrap();
    std::fs::write(&keys_file, other.published().to_jwks()).unwrap();
    let e = verify_with(&db, &cp_file, &keys_file).unwrap_err();
    assert!(e.contains("not in the pinned set"), "{e}");

    // Periodically too, into the state directory; the ledger key is never in the database.
    sts.refresh(unix_now() + 301, false);
    let kept = std::fs::read_to_string(state.join("checkpoints.jsonl")).unwrap();
    assert_eq!(kept.lines().count(), 2, "{kept}");
    let secret = serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(state.join("ledger-key.json")).unwrap()).unwrap();
    let secret = secret["secret"].as_str().unwrap().to_string();
    for file in [db.clone(), db.with_extension("db-wal")] {
        assert!(!String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).contains(&secret), "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_report_into_the_ledger_for_themselves_only() {
    let dir = tempfile::tempdir().unwrap();
    dev::init(dir.path(), false).unwrap();
    let sts = Sts::open(Config::load(&dir.path().join("sts.toml")).unwrap()).unwrap();
    let (oncall, mcp) = (Peer::Workload(dev::workload_id("oncall")), Peer::Workload(dev::workload_id("mcp-server")));
    let person = dev::person_token(dir.path(), "user1", "oncall-agent", "incidents:read", 600, None, unix_now()).unwrap();
    let ask = ExchangeRequest { subject: Some(&person), audience: "investigation-agent", scope: None, client_id: "oncall-agent" }.form();
    let granted: ExchangeResponse =
        serde_json::from_str(&call(&sts, "POST", "/token", "application/x-www-form-urlencoded", &ask, &oncall).await.body).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, granted.access_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    let (jti, sid) = (claims["jti"].as_str().unwrap(), claims["sid"].as_str().unwrap());
    let report = |decision: &str, extra: serde_json::Value| {
        let mut r = serde_json::json!({"ts": unix_now(), "kind": "decision", "direction": "inbound", "decision": decision,
                                       "reason": "rule", "sub": "user1", "jti": jti, "sid": sid});
        r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        r
    };
    let batch = |reports: Vec<serde_json::Value>| serde_json::json!({ "reports": reports }).to_string();
    let json = "application/json";
    let calls = batch(vec![
        report("allowed", serde_json::json!({"method": "tools/call", "name": "create_pr", "rule": "create-pr"})),
        report("refused", serde_json::json!({"method": "tools/call", "name": "drop_db", "reason": "no_rule"})),
    ]);
    let taken = call(&sts, "POST", "/ledger/reports", json, &calls, &mcp).await;
    assert_eq!((taken.status, taken.body.as_str()), (200, r#"{"taken":2}"#));
    // Only for itself: naming another workload is a forgery, and nothing of the batch is taken.
    let forged = batch(vec![
        report("accepted", serde_json::json!({})),
        report("accepted", serde_json::json!({"workload": dev::workload_id("oncall")})),
    ]);
    let refused = call(&sts, "POST", "/ledger/reports", json, &forged, &mcp).await;
    assert_eq!((refused.status, reason(&refused).as_str()), (403, "report_forged"));
    for (bad, why) in [
        (batch(vec![report("granted", serde_json::json!({}))]), "reports[0].decision"),
        (batch(vec![report("allowed", serde_json::json!({"name": "x\ny"}))]), "reports[0].name"),
        ("{\"reports\":[{\"ts\":1}]}".to_string(), "missing field"),
    ] {
        let r = call(&sts, "POST", "/ledger/reports", json, &bad, &mcp).await;
        assert_eq!((r.status, reason(&r).as_str()), (400, "report_malformed"), "{bad}");
        assert!(r.body.contains(why), "{}", r.body);
    }
    let anonymous = call(&sts, "POST", "/ledger/reports", json, &calls, &Peer::Anonymous).await;
    assert_eq!((anonymous.status, reason(&anonymous).as_str()), (401, "workload_unauthenticated"));
    // In the session's tree, under the token the calls came with, attributed to their sidecar.
    let admin = Peer::Workload(dev::workload_id("admin"));
    let tree: serde_json::Value =
        serde_json::from_str(&call(&sts, "GET", &format!("/admin/ledger?sid={sid}"), json, "", &admin).await.body).unwrap();
    let tree = tree["tree"].as_str().unwrap().to_string();
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 3, "{tree}");
    assert!(lines[0].starts_with("user1 (https://idp.actorchain.dev) -> oncall-agent => investigation-agent  granted"), "{tree}");
    assert!(lines[1].starts_with("  [mcp-server] inbound allowed (rule) tools/call create_pr rule create-pr  at "), "{tree}");
    assert!(lines[2].starts_with("  [mcp-server] inbound refused (no_rule) tools/call drop_db  at "), "{tree}");
}
