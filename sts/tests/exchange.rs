//! The real STS binary over real mTLS: Uber's on-call chain, and every refusal with its exact error.

mod common;

use actorchain_sts::keys::{KeyRing, StoredKey};
use actorchain_token::{sign_compact, verify, Alg, ChainLimits, Expectations, KeySet, PrivateKey, TimeWindow, TYP_ACCESS_TOKEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::*;
use serde_json::json;

const ISSUER: &str = "https://sts.actorchain.dev";
const IDP: &str = "https://idp.actorchain.dev";

async fn jwks(sts: &Sts) -> KeySet {
    let mut c = sts.connect(None).await;
    let r = c.send("GET", "/.well-known/jwks.json", None, vec![]).await.unwrap();
    assert_eq!(r.status, 200);
    KeySet::from_jwks(r.body.as_bytes()).unwrap()
}

/// The STS's current signing key, read from its state directory: lets a test forge tokens that
/// are correctly signed but break one rule.
fn sts_key(sts: &Sts) -> (String, PrivateKey) {
    let ring = KeyRing::load(&sts.path("state/signing-keys.json")).unwrap().unwrap();
    let (kid, key) = ring.signing(now()).unwrap();
    (kid.to_string(), key.clone())
}

fn idp_key(sts: &Sts) -> (String, PrivateKey) {
    let k = StoredKey::read(&sts.path("idp-key.json")).unwrap();
    (k.kid.clone(), k.private_key().unwrap())
}

fn person_claims(aud: &str) -> serde_json::Value {
    let n = now();
    json!({"iss": IDP, "sub": "user1", "aud": aud, "scope": "incidents:read", "iat": n, "nbf": n, "exp": n + 600, "jti": "p1"})
}

/// A compact token with an arbitrary header, signed (or not) by the caller.
fn raw_token(header: &serde_json::Value, claims: &serde_json::Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oncall_chain_hop_by_hop() {
    let sts = Sts::start();
    let person = sts.person_token("user1", "oncall-agent", "incidents:read incidents:write repo:write");

    let mut oncall = sts.connect(Some("oncall")).await;
    let r1 = exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[]).await;
    assert_eq!(r1.cache_control.as_deref(), Some("no-store"));
    let v1 = json(&r1);
    assert_eq!(v1["issued_token_type"], actorchain_token::wire::TT_ACCESS_TOKEN);
    assert_eq!(v1["token_type"], "Bearer");
    assert!(v1["expires_in"].as_u64().unwrap() <= 300);
    let t1 = access_token(&r1);

    let mut inv = sts.connect(Some("investigation")).await;
    let r2 = exchange(&mut inv, &t1, "mcp-gateway", "investigation-agent", &[("scope", "incidents:read repo:write")]).await;
    let t2 = access_token(&r2);

    let keys = jwks(&sts).await;
    let expect = |aud| Expectations { issuer: ISSUER, audience: aud, window: TimeWindow::default(), limits: ChainLimits::default() };
    let c1 = verify(&t1, &keys, &expect("investigation-agent"), now()).unwrap();
    let c2 = verify(&t2, &keys, &expect("mcp-gateway"), now()).unwrap();

    assert_eq!(c2.sub, "user1");
    assert_eq!(c2.client_id, "investigation-agent");
    assert_eq!(c2.act.agents_oldest_first(), ["oncall-agent", "investigation-agent"]);
    assert_eq!(c2.act.spiffe_id, "spiffe://actorchain.dev/workload/investigation");
    assert_eq!(c2.act.act.as_ref().unwrap().spiffe_id, "spiffe://actorchain.dev/workload/oncall");
    assert_eq!(c2.aud, "mcp-gateway");
    assert_eq!(c2.scope, "incidents:read repo:write");
    assert!(c2.exp <= c1.exp);
    assert_eq!(c2.sid, c1.sid);
    assert_eq!(c2.ext.get("task"), Some(&json!("INC-42")));
    // The investigation agent holds no incidents:write, so it was not inherited.
    assert_eq!(c1.scope, "incidents:read incidents:write repo:write");

    // The decision is in the audit log with its chain, and no token is.
    assert!(sts.wait_for_log(&format!("\"parent_jti\":\"{}\"", c1.jti)));
    let log = sts.log_lines().join("\n");
    assert!(log.contains(r#""chain":["oncall-agent","investigation-agent"]"#));
    for secret in [&person, &t1, &t2] {
        let sig = secret.rsplit('.').next().unwrap();
        assert!(!log.contains(sig), "a token leaked into the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_svid_authenticates_without_client_certificate() {
    let sts = Sts::start();
    let person = sts.person_token("user1", "oncall-agent", "incidents:read");
    let svid = actorchain_sts::dev::jwt_svid(sts.dir.path(), "oncall", actorchain_sts::dev::STS_SPIFFE_ID, 300, now()).unwrap();
    let mut anon = sts.connect(None).await;
    let r =
        exchange(&mut anon, &person, "investigation-agent", "oncall-agent", &[("actor_token", &svid), ("actor_token_type", TT_JWT)]).await;
    let t = access_token(&r);
    assert_eq!(payload(&t)["act"]["spiffe_id"], "spiffe://actorchain.dev/workload/oncall");

    // A JWT-SVID for another audience, or naming another workload than the certificate, fails.
    let other_aud = actorchain_sts::dev::jwt_svid(sts.dir.path(), "oncall", "spiffe://actorchain.dev/workload/other", 300, now()).unwrap();
    let r =
        exchange(&mut anon, &person, "investigation-agent", "oncall-agent", &[("actor_token", &other_aud), ("actor_token_type", TT_JWT)])
            .await;
    assert_refused(&r, 400, "invalid_request", "audience_mismatch");
    let inv_svid = actorchain_sts::dev::jwt_svid(sts.dir.path(), "investigation", actorchain_sts::dev::STS_SPIFFE_ID, 300, now()).unwrap();
    let mut oncall = sts.connect(Some("oncall")).await;
    let r =
        exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[("actor_token", &inv_svid), ("actor_token_type", TT_JWT)])
            .await;
    assert_refused(&r, 401, "invalid_client", "workload_mismatch");
    let r = exchange(&mut anon, &person, "investigation-agent", "oncall-agent", &[("actor_token", "x.y.z"), ("actor_token_type", TT_JWT)])
        .await;
    assert_refused(&r, 400, "invalid_request", "token_bad_base64");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_names_its_reason() {
    let sts = Sts::start();
    let person = sts.person_token("user1", "oncall-agent", "incidents:read");
    let mut oncall = sts.connect(Some("oncall")).await;
    let t1 = access_token(&exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[]).await);

    // No client certificate and no actor token.
    let mut anon = sts.connect(None).await;
    assert_refused(
        &exchange(&mut anon, &person, "investigation-agent", "oncall-agent", &[]).await,
        401,
        "invalid_client",
        "workload_unauthenticated",
    );
    // Unregistered agent.
    assert_refused(
        &exchange(&mut oncall, &person, "investigation-agent", "ghost-agent", &[]).await,
        401,
        "invalid_client",
        "agent_unregistered",
    );
    // Impersonation: the on-call workload claims to host the investigation agent.
    assert_refused(
        &exchange(&mut oncall, &t1, "mcp-gateway", "investigation-agent", &[]).await,
        400,
        "unauthorized_client",
        "agent_not_on_workload",
    );
    // Audience not allowed for this agent.
    assert_refused(
        &exchange(&mut oncall, &person, "mcp-gateway", "oncall-agent", &[]).await,
        400,
        "invalid_target",
        "audience_not_allowed",
    );
    // Scope widening.
    assert_refused(
        &exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[("scope", "incidents:read repo:write")]).await,
        400,
        "invalid_scope",
        "scope_widening",
    );
    // A token addressed to the investigation agent, exchanged by the monitoring agent.
    let mut mon = sts.connect(Some("monitoring")).await;
    assert_refused(
        &exchange(&mut mon, &t1, "mcp-gateway", "monitoring-agent", &[]).await,
        400,
        "invalid_request",
        "subject_not_addressed_to_agent",
    );
    // A person's token may only start a session at an agent allowed to start one.
    let p_inv = sts.person_token("user1", "investigation-agent", "incidents:read");
    let mut inv = sts.connect(Some("investigation")).await;
    assert_refused(
        &exchange(&mut inv, &p_inv, "mcp-gateway", "investigation-agent", &[]).await,
        400,
        "unauthorized_client",
        "session_start_not_allowed",
    );

    // Subject tokens that are expired, garbled, wrongly signed, unsigned, HMAC'd, unknown-kid, mistyped.
    let (idp_kid, idp) = idp_key(&sts);
    let n = now();
    let mut expired = person_claims("oncall-agent");
    expired["iat"] = json!(n - 1000);
    expired["nbf"] = json!(n - 1000);
    expired["exp"] = json!(n - 100);
    let expired = sign_compact(&expired, &idp, &idp_kid, Some("JWT"));
    let stranger = PrivateKey::from_secret_bytes(Alg::EdDsa, &[42; 32]).unwrap();
    let wrong_sig = sign_compact(&person_claims("oncall-agent"), &stranger, &idp_kid, Some("JWT"));
    let none = raw_token(&json!({"alg":"none","kid": idp_kid,"typ":"JWT"}), &person_claims("oncall-agent"), |_| vec![]);
    let none_sig = format!("{none}AAAA");
    let idp_pub = match idp.public() {
        actorchain_token::PublicKey::Ed25519(k) => k.to_bytes().to_vec(),
        _ => unreachable!("the dev IdP signs with EdDSA"),
    };
    let hs256 = raw_token(&json!({"alg":"HS256","kid": idp_kid,"typ":"JWT"}), &person_claims("oncall-agent"), |m| hmac_sha256(&idp_pub, m));
    let unknown_kid = sign_compact(&person_claims("oncall-agent"), &idp, "no-such-kid", Some("JWT"));
    let (sts_kid, sts_signer) = sts_key(&sts);
    let mut as_sts = payload(&t1);
    as_sts["aud"] = json!("investigation-agent");
    let wrong_typ = sign_compact(&as_sts, &sts_signer, &sts_kid, Some("JWT"));
    let wrong_typ_idp = sign_compact(&person_claims("oncall-agent"), &idp, &idp_kid, Some("at+jwt"));
    for (token, reason) in [
        (expired.as_str(), "token_expired"),
        ("garbage", "token_malformed"),
        ("a.b.c", "token_bad_base64"),
        (wrong_sig.as_str(), "signature_invalid"),
        (none.as_str(), "alg_not_allowed"),
        (none_sig.as_str(), "alg_not_allowed"),
        (hs256.as_str(), "alg_not_allowed"),
        (unknown_kid.as_str(), "kid_unknown"),
        (wrong_typ.as_str(), "typ_invalid"),
        (wrong_typ_idp.as_str(), "typ_invalid"),
    ] {
        let r = exchange(&mut oncall, token, "investigation-agent", "oncall-agent", &[]).await;
        assert_refused(&r, 400, "invalid_request", reason);
    }
    // A subject that is a correctly typed actorchain token but from an unknown issuer.
    let mut foreign = payload(&t1);
    foreign["iss"] = json!("https://elsewhere.example");
    let foreign = sign_compact(&foreign, &sts_signer, &sts_kid, Some(TYP_ACCESS_TOKEN));
    assert_refused(
        &exchange(&mut inv, &foreign, "mcp-gateway", "investigation-agent", &[]).await,
        400,
        "invalid_request",
        "issuer_untrusted",
    );

    // Every refusal above is audited with its reason.
    assert!(sts.wait_for_log("\"reason\":\"issuer_untrusted\""));
    let log = sts.log_lines().join("\n");
    for reason in ["agent_unregistered", "agent_not_on_workload", "audience_not_allowed", "scope_widening", "alg_not_allowed"] {
        assert!(log.contains(&format!("\"decision\":\"refused\",\"reason\":\"{reason}\"")), "{reason} not audited");
    }
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    k[..key.len()].copy_from_slice(key);
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).chain(msg.iter().copied()).collect();
    let inner = Sha256::digest(&inner);
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(inner.iter().copied()).collect();
    Sha256::digest(&outer).to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depth_limit_refuses_the_hop_that_would_exceed_it() {
    // A registry where investigation and monitoring may call each other, chains at most 3 deep.
    let sts = Sts::start_with(|dir| {
        let reg = std::fs::read_to_string(dir.join("registry.toml")).unwrap();
        let reg = reg
            .replace("max_depth = 4", "max_depth = 3")
            .replace(r#"audiences = ["mcp-gateway"]"#, r#"audiences = ["mcp-gateway", "investigation-agent"]"#);
        std::fs::write(dir.join("registry.toml"), reg).unwrap();
    });
    let person = sts.person_token("user1", "oncall-agent", "incidents:read metrics:read");
    let mut oncall = sts.connect(Some("oncall")).await;
    let mut inv = sts.connect(Some("investigation")).await;
    let mut mon = sts.connect(Some("monitoring")).await;
    let t1 = access_token(&exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[]).await);
    let t2 = access_token(&exchange(&mut inv, &t1, "monitoring-agent", "investigation-agent", &[]).await);
    let t3 = access_token(&exchange(&mut mon, &t2, "investigation-agent", "monitoring-agent", &[]).await);
    assert_eq!(payload(&t3)["scope"], "metrics:read");
    let r = exchange(&mut inv, &t3, "mcp-gateway", "investigation-agent", &[]).await;
    assert_refused(&r, 400, "invalid_request", "chain_too_deep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_requests_get_clear_errors() {
    let sts = Sts::start();
    let mut c = sts.connect(Some("oncall")).await;
    let r = c.send("GET", "/token", None, vec![]).await.unwrap();
    assert_refused(&r, 405, "invalid_request", "method_not_allowed");
    let r = c.send("POST", "/token", Some("application/json"), b"{}".to_vec()).await.unwrap();
    assert_refused(&r, 415, "invalid_request", "content_type_unsupported");
    let r = c.send("POST", "/token", Some("application/x-www-form-urlencoded"), vec![b'a'; 40 * 1024]).await.unwrap();
    assert_refused(&r, 413, "invalid_request", "body_too_large");
    let person = sts.person_token("user1", "oncall-agent", "incidents:read");
    let r = exchange(&mut c, &person, "investigation-agent", "oncall-agent", &[("client_id", "oncall-agent")]).await;
    assert_refused(&r, 400, "invalid_request", "parameter_repeated");
    let r = exchange(&mut c, &person, "investigation-agent", "oncall-agent", &[("audience", "mcp-gateway")]).await;
    assert_refused(&r, 400, "invalid_target", "audience_not_single");
    let r = c.post_form("/token", &[("grant_type", "password")]).await.unwrap();
    assert_refused(&r, 400, "unsupported_grant_type", "grant_type_unsupported");
    let r = exchange(&mut c, &person, "investigation-agent", "oncall-agent", &[("actor_token", "x")]).await;
    assert_refused(&r, 400, "invalid_request", "actor_token_type_missing");
    // The connection survived all of it.
    let r = exchange(&mut c, &person, "investigation-agent", "oncall-agent", &[]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_jwks_and_admin_endpoints() {
    let sts = Sts::start();
    let mut c = sts.connect(None).await;
    let m: serde_json::Value =
        serde_json::from_str(&c.send("GET", "/.well-known/oauth-authorization-server", None, vec![]).await.unwrap().body).unwrap();
    assert_eq!(m["issuer"], ISSUER);
    assert_eq!(m["token_endpoint"], format!("{ISSUER}/token"));
    assert_eq!(m["grant_types_supported"][0], TOKEN_EXCHANGE);
    let keys = jwks(&sts).await;
    assert_eq!(keys.len(), 1);
    let j = c.send("GET", "/.well-known/jwks.json", None, vec![]).await.unwrap().body;
    assert!(!j.contains("\"d\""), "private key material published");

    let admin = |path: &'static str| {
        let addr = sts.admin;
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        }
    };
    assert!(admin("/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(admin("/readyz").await.starts_with("HTTP/1.1 200"));
    let person = sts.person_token("user1", "oncall-agent", "incidents:read");
    let mut oncall = sts.connect(Some("oncall")).await;
    exchange(&mut oncall, &person, "mcp-gateway", "oncall-agent", &[]).await;
    let metrics = admin("/metrics").await;
    assert!(metrics.contains(r#"actorchain_sts_decisions_total{decision="refused",reason="audience_not_allowed"} 1"#), "{metrics}");
    assert!(metrics.contains("actorchain_sts_registry_agents 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_reloads_without_restart_and_keeps_the_last_good_one() {
    let sts = Sts::start();
    let person = sts.person_token("user1", "oncall-agent", "incidents:read");
    let mut oncall = sts.connect(Some("oncall")).await;
    assert_eq!(exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[]).await.status, 200);

    let reg = std::fs::read_to_string(sts.path("registry.toml")).unwrap();
    std::fs::write(sts.path("registry.toml"), reg.replacen(r#"audiences = ["investigation-agent"]"#, "audiences = []", 1)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[]).await;
        if r.status == 400 {
            assert_refused(&r, 400, "invalid_target", "audience_not_allowed");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "registry change not picked up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // An invalid registry is refused with the field named, and the last good one stays in force.
    std::fs::write(sts.path("registry.toml"), reg.replacen("ttl_seconds = 300", "ttl_seconds = 0", 1)).unwrap();
    assert!(sts.wait_for_log("agents[0].ttl_seconds"));
    let r = exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[]).await;
    assert_refused(&r, 400, "invalid_target", "audience_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_registered_for_it_acts_as_itself_with_client_credentials() {
    let sts = Sts::start();
    let mut mon = sts.connect(Some("monitoring")).await;
    let params =
        [("grant_type", "client_credentials"), ("audience", "mcp-gateway"), ("client_id", "monitoring-agent"), ("scope", "metrics:read")];
    let t = access_token(&mon.post_form("/token", &params).await.unwrap());
    let c = payload(&t);
    assert_eq!(
        (c["sub"].as_str(), c["client_id"].as_str(), c["scope"].as_str()),
        (Some("monitoring-agent"), Some("monitoring-agent"), Some("metrics:read"))
    );
    assert_eq!(c["act"], json!({"sub": "monitoring-agent", "spiffe_id": "spiffe://actorchain.dev/workload/monitoring"}));
    // Vouched for by the STS itself: never mistaken for a person some IdP calls `monitoring-agent`.
    assert_eq!(c["sub_id"], json!({"format": "iss_sub", "iss": actorchain_sts::dev::STS_ISSUER, "sub": "monitoring-agent"}));
    // Scope beyond its registration is refused, and agents not registered for it may not.
    let wide = [
        ("grant_type", "client_credentials"),
        ("audience", "mcp-gateway"),
        ("client_id", "monitoring-agent"),
        ("scope", "incidents:write"),
    ];
    assert_refused(&mon.post_form("/token", &wide).await.unwrap(), 400, "invalid_scope", "scope_widening");
    let mut oncall = sts.connect(Some("oncall")).await;
    let r = oncall
        .post_form("/token", &[("grant_type", "client_credentials"), ("audience", "investigation-agent"), ("client_id", "oncall-agent")])
        .await
        .unwrap();
    assert_refused(&r, 400, "unauthorized_client", "self_acting_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peoples_issuer_may_publish_its_keys_at_a_url() {
    // Another STS plays an identity provider publishing its JWKS over HTTPS.
    let idp = Sts::start();
    let idp_url = format!("https://127.0.0.1:{}/.well-known/jwks.json", idp.addr.port());
    let idp_ca = idp.path("bundle.pem");
    let sts = Sts::start_with(|dir| {
        let cfg = std::fs::read_to_string(dir.join("sts.toml")).unwrap();
        let extra =
            format!("\n[[people]]\nissuer = \"https://idp2.example\"\njwks_url = \"{idp_url}\"\njwks_ca = \"{}\"\n", idp_ca.display());
        std::fs::write(dir.join("sts.toml"), cfg + &extra).unwrap();
    });
    let ring = KeyRing::load(&idp.path("state/signing-keys.json")).unwrap().unwrap();
    let (kid, key) = ring.signing(now()).unwrap();
    let mut claims = person_claims("oncall-agent");
    claims["iss"] = json!("https://idp2.example");
    let person = sign_compact(&claims, key, kid, Some("JWT"));
    let mut oncall = sts.connect(Some("oncall")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let token = loop {
        let r = exchange(&mut oncall, &person, "investigation-agent", "oncall-agent", &[]).await;
        if r.status == 200 {
            break access_token(&r);
        }
        assert!(std::time::Instant::now() < deadline, "the issuer's JWKS was never fetched: {}", r.body);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(payload(&token)["sub"], "user1");
    // A token signed with a key the URL does not publish is still refused.
    let (other_kid, other) = sts_key(&sts);
    assert_refused(
        &exchange(&mut oncall, &sign_compact(&claims, &other, &other_kid, Some("JWT")), "investigation-agent", "oncall-agent", &[]).await,
        400,
        "invalid_request",
        "kid_unknown",
    );
}
