//! Revocation at every granularity and the tamper-evident ledger, against the real STS binary.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

async fn admin_revoke(sts: &Sts, kind: &str, value: &str) -> serde_json::Value {
    admin_ask(sts, json!({"kind": kind, "value": value, "reason": "incident INC-4711"}), 200).await
}

/// A revocation request as the admin sends it, answered with `status`.
async fn admin_ask(sts: &Sts, ask: serde_json::Value, status: u16) -> serde_json::Value {
    admin_post(sts, "/admin/revocations", ask, status).await
}

async fn admin_post(sts: &Sts, path: &str, ask: serde_json::Value, status: u16) -> serde_json::Value {
    let mut admin = sts.connect(Some("admin")).await;
    let r = admin.request("POST", path, &[("content-type", "application/json")], ask.to_string().into_bytes()).await.unwrap();
    assert_eq!(r.status, status, "{}", r.body);
    json(&r)
}

/// Waits until the clock has passed `t` (whole seconds), so what is issued next is issued after it.
async fn after(t: u64) {
    while now() <= t {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn ledger_cli(sts: &Sts, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_actorchain-sts"))
        .arg("ledger")
        .args(args)
        .arg("--db")
        .arg(sts.path("state/actorchain.db"))
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_at_every_granularity() {
    let sts = Sts::start();
    let mut oncall = sts.connect(Some("oncall")).await;
    let mut inv = sts.connect(Some("investigation")).await;
    // Two sessions of user1 and one of user2.
    let p1 = sts.person_token("user1", "oncall-agent", "incidents:read");
    let p2 = dev_person(&sts, "user1");
    let p3 = dev_person(&sts, "user2");
    let s1 = access_token(&exchange(&mut oncall, &p1, "investigation-agent", "oncall-agent", &[]).await);
    let s2 = access_token(&exchange(&mut oncall, &p2, "investigation-agent", "oncall-agent", &[]).await);
    let s3 = access_token(&exchange(&mut oncall, &p3, "investigation-agent", "oncall-agent", &[]).await);
    let sid1 = payload(&s1)["sid"].as_str().unwrap().to_string();
    assert_ne!(sid1, payload(&s2)["sid"]);

    // Only an admin SVID may revoke, and only saying why.
    let r = oncall
        .request(
            "POST",
            "/admin/revocations",
            &[("content-type", "application/json")],
            br#"{"kind":"session","value":"x","reason":"r"}"#.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let why = admin_ask(&sts, json!({"kind": "session", "value": "x"}), 400).await;
    assert_eq!(why["actorchain_reason"], "revocation_reason_missing");

    // One session: its next hop is refused, the person's other session goes on.
    admin_revoke(&sts, "session", &sid1).await;
    assert_refused(&exchange(&mut inv, &s1, "mcp-gateway", "investigation-agent", &[]).await, 400, "invalid_request", "session_revoked");
    assert_refused(
        &exchange(&mut oncall, &p1, "investigation-agent", "oncall-agent", &[]).await,
        400,
        "invalid_request",
        "session_revoked",
    );
    assert_eq!(exchange(&mut inv, &s2, "mcp-gateway", "investigation-agent", &[]).await.status, 200);

    // One token (RFC 7009, no oracle for anything else), by its holder: the workload it was issued
    // to (the on-call agent's); not by the workload it was sent to, nor by any other.
    assert_eq!(inv.post_form("/revoke", &[("token", "not-a-token")]).await.unwrap().status, 200);
    assert_refused(&inv.post_form("/revoke", &[("token", &s3)]).await.unwrap(), 400, "unauthorized_client", "token_not_held");
    assert_refused(
        &sts.connect(None).await.post_form("/revoke", &[("token", &s3)]).await.unwrap(),
        401,
        "invalid_client",
        "workload_unauthenticated",
    );
    assert_eq!(oncall.post_form("/revoke", &[("token", &s3), ("token_type_hint", "access_token")]).await.unwrap().status, 200);
    assert_refused(&exchange(&mut inv, &s3, "mcp-gateway", "investigation-agent", &[]).await, 400, "invalid_request", "token_revoked");
    let s3b = access_token(&exchange(&mut oncall, &p3, "investigation-agent", "oncall-agent", &[]).await);
    assert_eq!(exchange(&mut inv, &s3b, "mcp-gateway", "investigation-agent", &[]).await.status, 200);
    // An admin may revoke any token.
    let s3c = access_token(&exchange(&mut oncall, &p3, "investigation-agent", "oncall-agent", &[]).await);
    let mut admin = sts.connect(Some("admin")).await;
    assert_eq!(admin.post_form("/revoke", &[("token", &s3c), ("reason", "leaked in a log")]).await.unwrap().status, 200);
    assert_refused(&exchange(&mut inv, &s3c, "mcp-gateway", "investigation-agent", &[]).await, 400, "invalid_request", "token_revoked");

    // One person, named by issuer and subject: all of user1's sessions, not user2's, and not those
    // of the partner IdP's user1, who is another person.
    let partner = actorchain_sts::dev::person_token_from(
        sts.dir.path(),
        actorchain_sts::dev::PARTNER_IDP,
        "user1",
        "oncall-agent",
        "incidents:read",
        600,
        None,
        now(),
    )
    .unwrap();
    let s4 = access_token(&exchange(&mut oncall, &partner, "investigation-agent", "oncall-agent", &[]).await);
    assert_eq!(payload(&s4)["sub_id"], json!({"format": "iss_sub", "iss": actorchain_sts::dev::PARTNER_ISSUER, "sub": "user1"}));
    let bare = admin_ask(&sts, json!({"kind": "person", "value": "user1", "reason": "r"}), 400).await;
    assert!(bare["error_description"].as_str().unwrap().contains("issuer"), "{bare}");
    let person = json!({"kind": "person", "issuer": actorchain_sts::dev::IDP_ISSUER, "value": "user1", "reason": "laptop stolen"});
    let entry = admin_ask(&sts, person, 200).await;
    assert_eq!(entry["value"], format!("{} user1", actorchain_sts::dev::IDP_ISSUER));
    assert_refused(&exchange(&mut inv, &s2, "mcp-gateway", "investigation-agent", &[]).await, 400, "invalid_request", "person_revoked");
    assert_eq!(exchange(&mut inv, &s3b, "mcp-gateway", "investigation-agent", &[]).await.status, 200);
    assert_eq!(exchange(&mut inv, &s4, "mcp-gateway", "investigation-agent", &[]).await.status, 200, "the partner's user1 is not revoked");
    // A person is revoked as of a moment: after it, a new login works again.
    after(entry["revoked_at"].as_u64().unwrap()).await;
    let relogin = dev_person(&sts, "user1");
    assert_eq!(exchange(&mut oncall, &relogin, "investigation-agent", "oncall-agent", &[]).await.status, 200);
    assert_refused(&exchange(&mut oncall, &p2, "investigation-agent", "oncall-agent", &[]).await, 400, "invalid_request", "person_revoked");
    // Lifted: the old session goes on too; the lift needs a reason and an existing revocation.
    let lift = json!({"id": entry["id"], "reason": "laptop found"});
    assert_eq!(
        admin_post(&sts, "/admin/revocations/lift", json!({"id": entry["id"]}), 400).await["actorchain_reason"],
        "revocation_reason_missing"
    );
    assert_eq!(
        admin_post(&sts, "/admin/revocations/lift", json!({"id": 9999, "reason": "x"}), 404).await["actorchain_reason"],
        "revocation_unknown"
    );
    let lifted = admin_post(&sts, "/admin/revocations/lift", lift, 200).await;
    assert_eq!(lifted["lifts"], entry["id"]);
    assert_eq!(exchange(&mut inv, &s2, "mcp-gateway", "investigation-agent", &[]).await.status, 200);

    // One agent: every chain with it issued up to now; a session started later works.
    let agent = admin_revoke(&sts, "agent", "oncall-agent").await;
    assert_refused(&exchange(&mut inv, &s3b, "mcp-gateway", "investigation-agent", &[]).await, 400, "invalid_request", "agent_revoked");
    assert_refused(&exchange(&mut oncall, &p3, "investigation-agent", "oncall-agent", &[]).await, 400, "invalid_request", "agent_revoked");
    after(agent["revoked_at"].as_u64().unwrap()).await;
    assert_eq!(exchange(&mut oncall, &dev_person(&sts, "user2"), "investigation-agent", "oncall-agent", &[]).await.status, 200);

    // The feed the filters follow: everything from 0, nothing new after the cursor.
    let feed = json(&inv.send("GET", "/revocations?since=0", None, vec![]).await.unwrap());
    let kinds: Vec<&str> = feed["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["session", "token", "token", "person", "person", "agent"]);
    assert_eq!(feed["entries"][4]["lifts"], entry["id"], "the lift travels in the feed");
    // Who and why, for each, in the ledger.
    let (_, records) = ledger_cli(&sts, &["query"]);
    let said: Vec<(String, String, String)> = records
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["by"].is_string())
        .map(|r| (r["decision"].as_str().unwrap().into(), r["by"].as_str().unwrap().into(), r["why"].as_str().unwrap().into()))
        .collect();
    let admin_id = actorchain_sts::dev::workload_id("admin");
    let expected = [
        ("revoked", admin_id.clone(), "incident INC-4711"),
        ("revoked", actorchain_sts::dev::workload_id("oncall"), "revoked by its holder (RFC 7009)"),
        ("revoked", admin_id.clone(), "leaked in a log"),
        ("revoked", admin_id.clone(), "laptop stolen"),
        ("lifted", admin_id.clone(), "laptop found"),
        ("revoked", admin_id, "incident INC-4711"),
    ];
    assert_eq!(said, expected.map(|(d, b, w)| (d.to_string(), b, w.to_string())));
    let cursor = feed["cursor"].as_u64().unwrap();
    let later = json(&inv.send("GET", &format!("/revocations?since={cursor}"), None, vec![]).await.unwrap());
    assert_eq!(later["entries"], json!([]));
    assert_eq!(sts.connect(None).await.send("GET", "/revocations", None, vec![]).await.unwrap().status, 401);
}

fn dev_person(sts: &Sts, sub: &str) -> String {
    actorchain_sts::dev::person_token(sts.dir.path(), sub, "oncall-agent", "incidents:read", 600, None, now()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_records_every_decision_and_names_an_edited_row() {
    let sts = Sts::start();
    let mut oncall = sts.connect(Some("oncall")).await;
    let mut inv = sts.connect(Some("investigation")).await;
    let p = sts.person_token("user1", "oncall-agent", "incidents:read");
    let t1 = access_token(&exchange(&mut oncall, &p, "investigation-agent", "oncall-agent", &[]).await);
    let t2 = access_token(&exchange(&mut inv, &t1, "mcp-gateway", "investigation-agent", &[]).await);
    exchange(&mut oncall, &p, "mcp-gateway", "oncall-agent", &[]).await;
    let sid = payload(&t2)["sid"].as_str().unwrap().to_string();

    let (ok, out) = ledger_cli(&sts, &["verify"]);
    assert!(ok && out.contains("3 records, chain intact"), "{out}");
    let (ok, tree) = ledger_cli(&sts, &["tree", "--sid", &sid]);
    assert!(ok, "{tree}");
    let lines: Vec<&str> = tree.lines().collect();
    assert!(lines[0].starts_with("user1 (https://idp.actorchain.dev) -> oncall-agent => investigation-agent  granted"), "{tree}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  user1 (https://idp.actorchain.dev) -> oncall-agent -> investigation-agent => mcp-gateway  granted")),
        "{tree}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("user1 (https://idp.actorchain.dev) -> oncall-agent => mcp-gateway  refused (audience_not_allowed)")),
        "{tree}"
    );
    let (_, by_agent) = ledger_cli(&sts, &["query", "--agent", "investigation-agent"]);
    assert_eq!(by_agent.lines().count(), 1);

    // The same through the admin API.
    let mut admin = sts.connect(Some("admin")).await;
    let r = json(&admin.send("GET", &format!("/admin/ledger?sid={sid}"), None, vec![]).await.unwrap());
    assert_eq!(r["records"].as_array().unwrap().len(), 3);
    assert!(r["tree"].as_str().unwrap().contains("=> mcp-gateway"));

    // Someone edits one row behind the STS's back.
    let db = rusqlite::Connection::open(sts.path("state/actorchain.db")).unwrap();
    db.execute("UPDATE ledger SET body = replace(body, 'refused', 'granted') WHERE seq = 3", []).unwrap();
    drop(db);
    let (ok, out) = ledger_cli(&sts, &["verify"]);
    assert!(!ok && out.contains("record 3: record edited"), "{out}");
}
