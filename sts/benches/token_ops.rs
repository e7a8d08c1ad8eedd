//! Criterion benchmarks of the per-token work: signing, verifying (both algorithms), and one whole
//! in-process exchange (parse, authenticate, decide, sign, audit) against the dev trust domain.

use std::path::PathBuf;

use actorchain_sts::config::Config;
use actorchain_sts::server::{unix_now, Peer, Sts};
use actorchain_sts::{bench_report, dev};
use actorchain_token::{sign_compact, verify, Alg, ChainLimits, Claims, Expectations, KeySet, PrivateKey, TimeWindow, TYP_ACCESS_TOKEN};
use criterion::{black_box, Criterion};
use serde_json::json;

fn claims(now: u64) -> Claims {
    let inner =
        actorchain_token::extend_chain(None, "oncall-agent", "spiffe://actorchain.dev/workload/oncall", ChainLimits::default()).unwrap();
    let act = actorchain_token::extend_chain(
        Some(&inner),
        "investigation-agent",
        "spiffe://actorchain.dev/workload/investigation",
        ChainLimits::default(),
    )
    .unwrap();
    Claims {
        iss: "https://sts.actorchain.dev".into(),
        sub: "user1".into(),
        sub_id: actorchain_token::SubjectId::new("https://idp.actorchain.dev", "user1"),
        aud: "mcp-gateway".into(),
        client_id: "investigation-agent".into(),
        act,
        scope: "incidents:read repo:write".into(),
        iat: now,
        nbf: now,
        exp: now + 300,
        jti: "hw4itNhNnPBEMzImQfA2sg".into(),
        sid: "fuKcNza6Ej892vpO1FEcTg".into(),
        ext: Default::default(),
    }
}

fn main() {
    let home = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/criterion");
    std::env::set_var("CRITERION_HOME", &home);
    let mut c = Criterion::default().configure_from_args();
    let now = unix_now();
    let c2 = claims(now);
    let mut ids = Vec::new();

    for (alg, name) in [(Alg::EdDsa, "eddsa"), (Alg::Es256, "es256")] {
        let key = PrivateKey::from_secret_bytes(alg, &[5; 32]).unwrap();
        let mut keys = KeySet::default();
        keys.insert("k".into(), key.public()).unwrap();
        let token = sign_compact(&c2, &key, "k", Some(TYP_ACCESS_TOKEN));
        let exp = Expectations { issuer: &c2.iss, audience: "mcp-gateway", window: TimeWindow::default(), limits: ChainLimits::default() };
        c.bench_function(&format!("sign_{name}"), |b| b.iter(|| sign_compact(black_box(&c2), &key, "k", Some(TYP_ACCESS_TOKEN))));
        c.bench_function(&format!("verify_{name}"), |b| b.iter(|| verify(black_box(&token), &keys, &exp, now).unwrap()));
        ids.push(format!("sign_{name}"));
        ids.push(format!("verify_{name}"));
    }

    // A whole exchange in process: the dev domain, audit lines to a file, a person's token.
    let dir = tempfile::tempdir().unwrap();
    dev::init(dir.path(), false).unwrap();
    let toml = std::fs::read_to_string(dir.path().join("sts.toml")).unwrap();
    std::fs::write(dir.path().join("sts.toml"), format!("audit_log = \"audit.log\"\n{toml}")).unwrap();
    let sts = Sts::open(Config::load(&dir.path().join("sts.toml")).unwrap()).unwrap();
    // The STS's first key signs from the moment it was made, which is later than `now` above.
    let now = unix_now();
    let person = dev::person_token(dir.path(), "user1", "oncall-agent", "incidents:read repo:write", 3600, None, now).unwrap();
    let body = actorchain_token::wire::ExchangeRequest {
        subject: Some(&person),
        audience: "investigation-agent",
        scope: None,
        client_id: "oncall-agent",
    }
    .form();
    let peer = Peer::Workload(dev::workload_id("oncall"));
    // The whole exchange includes waiting for the ledger's durable group commit.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert_eq!(rt.block_on(sts.exchange(body.as_bytes(), &peer, None, now)).0, 200);
    c.bench_function("exchange_in_process", |b| b.iter(|| rt.block_on(sts.exchange(black_box(body.as_bytes()), &peer, None, now))));
    ids.push("exchange_in_process".into());
    c.final_summary();

    let mut results = serde_json::Map::new();
    for id in ids {
        let path = home.join(&id).join("new/estimates.json");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let est: serde_json::Value = serde_json::from_str(&text).unwrap();
        results.insert(
            id,
            json!({
                "mean_ns": est["mean"]["point_estimate"],
                "median_ns": est["median"]["point_estimate"],
                "mean_ci95_ns": [est["mean"]["confidence_interval"]["lower_bound"], est["mean"]["confidence_interval"]["upper_bound"]],
            }),
        );
    }
    bench_report::write("token_ops", serde_json::Value::Object(results)).expect("bench-results is writable");
}
