//! Two STS replicas on one real PostgreSQL (Debian's server, started here on a data directory in
//! a temp dir, loopback only, TLS only, its certificate from the dev CA): they reach it with
//! `sslmode=verify-full` semantics, publish the same keys (kept in the database sealed, never in
//! the clear), decisions from both go into one hash chain, a revocation made at one is enforced
//! by the other within the refresh period, a replica killed under load loses nothing it
//! acknowledged, and a registry stored in the database is applied by every replica.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use actorchain_sts::dev_postgres::DevPostgres;

use common::*;
use serde_json::json;

async fn exchange_at(sts: &Sts, person: &str) -> Option<String> {
    let mut conn = sts.connect(Some("oncall")).await;
    let r = exchange(&mut conn, person, "investigation-agent", "oncall-agent", &[]).await;
    (r.status == 200).then(|| payload(&access_token(&r))["jti"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_ledger_revocations_keys_and_registry() {
    let (mut pg, mut url) = (None, String::new());
    let a = Sts::start_with(|dir| {
        // The synchronous PostgreSQL client may not block a runtime thread without saying so.
        let server = tokio::task::block_in_place(|| DevPostgres::start_tls(dir)).unwrap();
        url = server.url();
        pg = Some(server);
        let toml = std::fs::read_to_string(dir.join("sts.toml")).unwrap();
        std::fs::write(dir.join("sts.toml"), format!("database = \"{url}\"\n{toml}")).unwrap();
    });
    // The server lives as long as the test.
    let _pg = pg.unwrap();
    assert!(url.contains("sslmode=verify-full&sslrootcert="), "{url}");
    // TLS only: in the clear the server takes nothing, and a server whose certificate another CA
    // signed is not taken for it.
    let plain = url.split_once('?').unwrap().0.to_string();
    let e = tokio::task::block_in_place(|| actorchain_sts::pg::connect(&plain)).err().unwrap();
    assert!(e.contains("no encryption") || e.contains("pg_hba"), "{e}");
    let stranger = tempfile::tempdir().unwrap();
    actorchain_sts::dev::init(stranger.path(), false).unwrap();
    let wrong_ca = format!("{plain}?sslmode=verify-full&sslrootcert={}", stranger.path().join("bundle.pem").display());
    let e = tokio::task::block_in_place(|| actorchain_sts::pg::connect(&wrong_ca)).err().unwrap();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // Replica B keeps nothing locally in common with A: its own state directory.
    let toml = std::fs::read_to_string(a.path("sts.toml")).unwrap();
    std::fs::write(a.path("sts.toml"), toml.replace("state_dir = \"state\"", "state_dir = \"state-b\"")).unwrap();
    let b = a.replica();
    assert!(!a.path("state-b/signing-keys.json").exists() && !a.path("state/signing-keys.json").exists(), "keys live in the database");
    // Both publish the same keys: one signs, either verifies.
    let mut jwks = Vec::new();
    for s in [&a, &b] {
        let mut c = s.connect(Some("oncall")).await;
        jwks.push(c.request("GET", "/.well-known/jwks.json", &[], Vec::new()).await.unwrap().body);
    }
    assert!(jwks[0].contains("\"kid\"") && jwks[0] == jwks[1], "{jwks:?}");

    // Both replicas grant, each recording in the shared ledger.
    let p1 = a.person_token("user1", "oncall-agent", "incidents:read");
    let mut received = Vec::new();
    for i in 0..20 {
        let at = if i % 2 == 0 { &a } else { &b };
        received.push(exchange_at(at, &p1).await.expect("granted"));
    }

    // A session revoked at replica A is refused by replica B within its refresh period (1 s).
    let sid = {
        let mut conn = b.connect(Some("oncall")).await;
        let r = exchange(&mut conn, &p1, "investigation-agent", "oncall-agent", &[]).await;
        received.push(payload(&access_token(&r))["jti"].as_str().unwrap().to_string());
        payload(&access_token(&r))["sid"].as_str().unwrap().to_string()
    };
    let mut admin = a.connect(Some("admin")).await;
    let body = json!({"kind": "session", "value": sid, "reason": "replica test"}).to_string().into_bytes();
    let r = admin.request("POST", "/admin/revocations", &[("content-type", "application/json")], body).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let revoked_at = Instant::now();
    let mut conn = b.connect(Some("oncall")).await;
    loop {
        let r = exchange(&mut conn, &p1, "investigation-agent", "oncall-agent", &[]).await;
        if r.status != 200 {
            assert_refused(&r, 400, "invalid_request", "session_revoked");
            break;
        }
        received.push(payload(&access_token(&r))["jti"].as_str().unwrap().to_string());
        assert!(revoked_at.elapsed() < Duration::from_secs(2), "replica B still grants the revoked session");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And B's feed carries it to every filter that asks B.
    let mut plain = b.connect(Some("investigation")).await;
    let feed = plain.request("GET", "/revocations?since=0", &[], Vec::new()).await.unwrap();
    assert!(feed.body.contains(&sid), "{}", feed.body);

    // Replica A dies under load; B keeps granting; nothing A acknowledged is lost.
    let p2 = a.person_token("user2", "oncall-agent", "incidents:read");
    let a_pid = a.child.0.id().to_string();
    let load_a = async {
        let mut got = Vec::new();
        let Ok(mut conn) = tokio::time::timeout(Duration::from_secs(5), a.connect(Some("oncall"))).await else { return got };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            let params = [
                ("grant_type", TOKEN_EXCHANGE),
                ("subject_token", p2.as_str()),
                ("subject_token_type", TT_JWT),
                ("audience", "investigation-agent"),
                ("client_id", "oncall-agent"),
            ];
            match conn.post_form("/token", &params).await {
                Ok(r) if r.status == 200 => got.push(payload(&access_token(&r))["jti"].as_str().unwrap().to_string()),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        got
    };
    let kill_a = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(Command::new("kill").args(["-9", &a_pid]).status().unwrap().success());
    };
    let (from_a, ()) = tokio::join!(load_a, kill_a);
    assert!(!from_a.is_empty(), "replica A granted something before it died");
    received.extend(from_a);
    received.push(exchange_at(&b, &p2).await.expect("replica B still grants"));

    // One chain holds every decision from both replicas, intact.
    let out = Command::new(env!("CARGO_BIN_EXE_actorchain-sts")).args(["ledger", "verify", "--db", &url]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("chain intact"), "{said}");
    let recorded: std::collections::HashSet<String> = tokio::task::block_in_place(|| {
        let mut db = actorchain_sts::pg::connect(&url).unwrap();
        db.query("SELECT body::json->>'jti' FROM ledger", &[]).unwrap().iter().filter_map(|r| r.get::<_, Option<String>>(0)).collect()
    });
    // The signing keys are in the database sealed: no table holds a private key in the clear.
    let kek = actorchain_sts::sealing::Kek::load(&b.path("kek.key")).unwrap();
    let dump: Vec<String> = tokio::task::block_in_place(|| {
        let mut db = actorchain_sts::pg::connect(&url).unwrap();
        ["signing_keys", "ledger", "revocations", "registry"]
            .iter()
            .flat_map(|t| db.query(&format!("SELECT t::text FROM {t} t"), &[]).unwrap().into_iter().map(|r| r.get::<_, String>(0)))
            .collect()
    });
    let ring: serde_json::Value = serde_json::from_str(&tokio::task::block_in_place(|| {
        actorchain_sts::pg::connect(&url).unwrap().query_one("SELECT ring FROM signing_keys", &[]).unwrap().get::<_, String>(0)
    }))
    .unwrap();
    let sealed = ring["sealed_keys"].as_array().expect("sealed keys");
    assert!(!sealed.is_empty() && ring.get("keys").is_none());
    for k in sealed {
        let secret = kek.open(k["kid"].as_str().unwrap(), k["sealed"].as_str().unwrap()).unwrap();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &secret);
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        assert!(dump.iter().all(|row| !row.contains(&b64) && !row.contains(&hex)), "a private key in the clear in the database");
    }
    let missing: Vec<&String> = received.iter().filter(|j| !recorded.contains(*j)).collect();
    assert!(missing.is_empty(), "{} of {} acknowledged tokens have no ledger record", missing.len(), received.len());

    // The registry lives in the database too: an operator stores a new one (validated first),
    // and the surviving replica applies it within its refresh period.
    let narrowed = b.path("registry-narrowed.toml");
    let registry = std::fs::read_to_string(b.path("registry.toml")).unwrap();
    std::fs::write(&narrowed, registry.replacen("audiences = [\"investigation-agent\"]", "audiences = [\"monitoring-agent\"]", 1)).unwrap();
    let broken = b.path("registry-broken.toml");
    std::fs::write(&broken, "[[agents]]\nid = \"no workloads\"\n").unwrap();
    let put = |file: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_actorchain-sts")).args(["put-registry", "--db", &url]).arg(file).output().unwrap()
    };
    assert!(!put(&broken).status.success(), "an invalid registry is never stored");
    assert!(put(&narrowed).status.success());
    let stored = Instant::now();
    let p3 = b.person_token("user3", "oncall-agent", "incidents:read");
    loop {
        let mut conn = b.connect(Some("oncall")).await;
        let r = exchange(&mut conn, &p3, "investigation-agent", "oncall-agent", &[]).await;
        if r.status != 200 {
            assert_refused(&r, 400, "invalid_target", "audience_not_allowed");
            break;
        }
        assert!(stored.elapsed() < Duration::from_secs(2), "the stored registry was not applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
