//! `make demo`: the on-call scenario through real Envoy sidecars and the real STS, then three
//! refusals, then everything it started is stopped.

use std::path::PathBuf;

use actorchain_demo::scenario::{self, chain, claims};
use actorchain_demo::topology::{Demo, Paths, CHAIN};
use serde_json::Value;

fn show_token(hop: &str, token: &str, now: u64) {
    let c = claims(token);
    let exp = c["exp"].as_u64().unwrap_or(0);
    println!("  {hop}");
    println!("    iss   {}", c["iss"].as_str().unwrap_or("?"));
    println!("    sub   {}", c["sub"].as_str().unwrap_or("?"));
    let agents = chain(&c);
    if !agents.is_empty() {
        println!(
            "    act   {}   (newest outermost: {})",
            agents.join(" -> "),
            agents.iter().rev().cloned().collect::<Vec<_>>().join(" > ")
        );
    }
    println!("    aud   {}", c["aud"].as_str().map_or_else(|| c["aud"].to_string(), String::from));
    println!("    scope {}", c["scope"].as_str().unwrap_or("-"));
    println!("    exp   in {} s", exp.saturating_sub(now));
}

async fn run() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default();
    let paths = Paths::workspace(&root, "release", root.join(".work/demo"));
    println!("starting the STS and one Envoy sidecar per workload ({})", CHAIN.map(|(w, _)| w).join(", "));
    let demo = Demo::start(paths).await?;
    for w in &demo.workloads {
        println!("  {:<14} {:<20} ingress {}  egress {}  app {}", w.name, w.identity, w.ingress, w.egress, w.app);
    }
    let person = demo.person_token("user1", "incidents:read repo:read repo:write", 600)?;
    println!("\nuser1 -> oncall-agent -> investigation-agent -> MCP server tools/call create_pr");
    let run = scenario::oncall(&demo, &person, &[]).await?;
    let now = actorchain_sts::server::unix_now();
    let hops = [
        "user1's token, as the on-call agent received it",
        "hop 1, as the investigation agent received it",
        "hop 2, as the MCP server received it",
    ];
    for (hop, token) in hops.iter().zip(&run.tokens) {
        show_token(hop, token, now);
    }
    let mcp = &run.identities.last().cloned().unwrap_or(Value::Null);
    println!(
        "  the MCP server's sidecar handed it: sub={} agent={} chain={}",
        mcp["x-actorchain-sub"], mcp["x-actorchain-agent"], mcp["x-actorchain-chain"]
    );
    let text = &run.response["downstream"]["body"]["downstream"]["body"]["result"]["content"][0]["text"];
    println!("  decision: HTTP {} -> {}", run.status, text);
    if run.status != 200 || run.tokens.len() != 3 {
        return Err(format!("the chain did not complete: {}", run.response));
    }

    println!("\nrefusals");
    for r in scenario::refusals(&demo, &run.tokens[1], &run.tokens[2]).await? {
        let reason = ["actorchain_reason", "sts_reason", "reason"].iter().find_map(|k| r.body[*k].as_str()).unwrap_or("?");
        println!("  {}\n    -> HTTP {} {} ({})", r.what, r.status, r.body["error"].as_str().unwrap_or("?"), reason);
    }
    let sid = claims(&run.tokens[1])["sid"].as_str().unwrap_or_default().to_string();
    println!("\nrevoking user1's session {sid} at the STS (admin SVID)");
    demo.revoke("session", &sid).await?;
    let started = std::time::Instant::now();
    let refused = loop {
        let again = scenario::oncall(&demo, &person, &[]).await?;
        if again.status != 200 || started.elapsed() > std::time::Duration::from_secs(5) {
            break again;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let mut level = &refused.response;
    while level["downstream"]["body"].is_object() {
        level = &level["downstream"]["body"];
    }
    println!(
        "  the same workflow again -> HTTP {} {} ({}) after {} ms",
        refused.status,
        level["error"].as_str().unwrap_or("?"),
        level["reason"].as_str().unwrap_or("?"),
        started.elapsed().as_millis()
    );
    println!("\nthe session in the STS's audit ledger:");
    for line in demo.ledger_tree(&sid).await?.lines() {
        println!("  {line}");
    }
    println!(
        "\nSTS decisions: {}   sidecar configs and logs: {}",
        root.join(".work/demo/sts.log").display(),
        root.join(".work/demo/envoy").display()
    );
    println!("stopping everything");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}
