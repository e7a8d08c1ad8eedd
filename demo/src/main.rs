//! `make demo`: the on-call scenario through real Envoy sidecars and the real STS, then the
//! refusals, a revocation and the ledger, then everything it started is stopped. The subcommands
//! run the same pieces one per container (`docker-compose.yml`).

use std::net::SocketAddr;
use std::path::PathBuf;

use actorchain_demo::apps::{self, Next};
use actorchain_demo::scenario::{self, chain, claims};
use actorchain_demo::topology::{render_pod_sidecars, CertSource, Demo, FilterBuild, Paths, CHAIN};
use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(about = "The on-call scenario through real Envoy sidecars and the real STS")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve one toy app: an agent that forwards to its next hop through its sidecar's egress,
    /// or (with --mcp) the toy MCP server.
    App {
        /// The agent identity it reports.
        #[arg(long)]
        name: String,
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        mcp: bool,
        /// Its sidecar's egress listener.
        #[arg(long, requires = "next_authority")]
        next_egress: Option<SocketAddr>,
        /// The next hop's name (its audience).
        #[arg(long)]
        next_authority: Option<String>,
        #[arg(long, default_value = "/investigate")]
        next_path: String,
        /// The next hop is an agent spoken to over A2A (`message/send`).
        #[arg(long)]
        next_a2a: bool,
    },
    /// Write each workload's Envoy configuration for a deployment where workloads reach each
    /// other by DNS name (docker compose): ingress on 0.0.0.0:15000, egress 127.0.0.1:15001, the
    /// app on 127.0.0.1:8080.
    RenderSidecars {
        /// The dev trust domain (`actorchain-sts dev init`), as the sidecars will see it.
        #[arg(long)]
        dev: PathBuf,
        #[arg(long)]
        template: PathBuf,
        #[arg(long)]
        wasm: PathBuf,
        /// The STS, host:port.
        #[arg(long)]
        sts: String,
        #[arg(long)]
        out: PathBuf,
        /// Take the SVID and bundle from the SPIRE agent (SDS on this Unix socket) instead of
        /// the dev trust domain's files.
        #[arg(long)]
        spire_agent_socket: Option<PathBuf>,
    },
    /// The walk-through against a topology that is already running (docker compose).
    Scenario {
        #[arg(long)]
        dev: PathBuf,
        #[arg(long)]
        sts: String,
        /// Ingress of each workload: name=host:port, for oncall, investigation and mcp-server.
        #[arg(long = "ingress", value_parser = parse_named)]
        ingress: Vec<(String, String)>,
        /// Egress listeners reachable from here (run inside the on-call workload's network).
        #[arg(long = "egress", value_parser = parse_named)]
        egress: Vec<(String, String)>,
    },
}

fn parse_named(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(n, a)| (n.to_string(), a.to_string())).ok_or_else(|| format!("{s}: expected name=host:port"))
}

fn show_token(hop: &str, token: &str, now: u64) {
    let c = claims(token);
    let exp = c["exp"].as_u64().unwrap_or(0);
    println!("  {hop}");
    println!("    iss   {}", c["iss"].as_str().unwrap_or("?"));
    // A person's own token is vouched for by its issuer; actorchain tokens say who in `sub_id`.
    let vouched = c["sub_id"]["iss"].as_str().or(c["iss"].as_str()).unwrap_or("?");
    println!("    sub   {}   (of {vouched})", c["sub"].as_str().unwrap_or("?"));
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

async fn local() -> Result<(), String> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().map(PathBuf::from).unwrap_or_default();
    let paths = Paths::workspace(&root, "release", root.join(".work/demo"));
    println!("starting the STS and one Envoy sidecar per workload ({})", CHAIN.map(|(w, _)| w).join(", "));
    let demo = Demo::start(paths).await?;
    for w in &demo.workloads {
        println!("  {:<14} {:<20} ingress {}  egress {}  app {}", w.name, w.identity, w.ingress, w.egress, w.app);
    }
    walkthrough(&demo).await?;
    println!(
        "\nSTS decisions: {}   sidecar configs and logs: {}",
        root.join(".work/demo/sts.log").display(),
        root.join(".work/demo/envoy").display()
    );
    println!("stopping everything");
    Ok(())
}

async fn walkthrough(demo: &Demo) -> Result<(), String> {
    let person = demo.person_token("user1", "incidents:read repo:read repo:write", 600)?;
    println!("\nuser1 -> oncall-agent -> investigation-agent -> MCP server tools/call create_pr");
    let run = scenario::oncall(demo, &person, &[]).await?;
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
    for r in scenario::refusals(demo, &run.tokens[1], &run.tokens[2]).await? {
        let reason = ["actorchain_reason", "sts_reason", "reason"].iter().find_map(|k| r.body[*k].as_str());
        // A refused MCP call is a JSON-RPC error carrying the reason and the rule.
        let (error, reason) = match (r.body["error"].as_str(), reason) {
            (Some(e), Some(why)) => (e.to_string(), why.to_string()),
            _ => (format!("JSON-RPC error, rule {}", r.body["error"]["data"]["rule"]), scenario::refusal_reason(&r.body)),
        };
        println!("  {}\n    -> HTTP {} {} ({})", r.what, r.status, error, reason);
    }
    let sid = claims(&run.tokens[1])["sid"].as_str().unwrap_or_default().to_string();
    println!("\nrevoking user1's session {sid} at the STS (admin SVID)");
    demo.revoke("session", &sid).await?;
    let started = std::time::Instant::now();
    let refused = loop {
        let again = scenario::oncall(demo, &person, &[]).await?;
        if again.status != 200 || started.elapsed() > std::time::Duration::from_secs(5) {
            break again;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let level = scenario::deepest(&refused.response);
    println!(
        "  the same workflow again -> HTTP {} {} ({}) after {} ms",
        refused.status,
        level["error"].as_str().unwrap_or("?"),
        level["reason"].as_str().unwrap_or("?"),
        started.elapsed().as_millis()
    );
    // The sidecars' reports of what they decided reach the ledger within a second or so.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    println!("\nthe session in the STS's audit ledger (the STS's exchanges, and what each sidecar reported):");
    for line in demo.ledger_tree(&sid).await?.lines() {
        println!("  {line}");
    }
    Ok(())
}

async fn attached(dev: PathBuf, sts: &str, ingress: Vec<(String, String)>, egress: Vec<(String, String)>) -> Result<(), String> {
    let resolve = |hostport: String| async move {
        tokio::net::lookup_host(&hostport).await.map_err(|e| format!("{hostport}: {e}"))?.next().ok_or(format!("{hostport}: no address"))
    };
    let (mut ins, mut outs) = (Vec::new(), Vec::new());
    for (name, hostport) in ingress {
        ins.push((name, resolve(hostport).await?));
    }
    for (name, hostport) in egress {
        outs.push((name, resolve(hostport).await?));
    }
    let demo = Demo::attach(dev, resolve(sts.to_string()).await?, &ins, &outs)?;
    walkthrough(&demo).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let result = match Cli::parse().cmd {
        None => local().await,
        Some(Cmd::App { name, listen, mcp, next_egress, next_authority, next_path, next_a2a }) => {
            let next = next_egress.zip(next_authority).map(|(egress, authority)| Next {
                egress,
                authority,
                path: next_path,
                propagates: apps::TRACE_CONTEXT,
                a2a: next_a2a,
            });
            match tokio::net::TcpListener::bind(listen).await {
                Ok(l) => {
                    apps::serve(l, name, next, mcp).await;
                    Ok(())
                }
                Err(e) => Err(format!("{listen}: {e}")),
            }
        }
        Some(Cmd::RenderSidecars { dev, template, wasm, sts, out, spire_agent_socket }) => {
            let certs = spire_agent_socket.map_or(CertSource::Files, CertSource::SpireAgent);
            render_pod_sidecars(&dev, &template, &FilterBuild::Wasm(wasm), &sts, &certs, &out).map(|files| {
                for f in files {
                    println!("{}", f.display());
                }
            })
        }
        Some(Cmd::Scenario { dev, sts, ingress, egress }) => attached(dev, &sts, ingress, egress).await,
    };
    if let Err(e) = result {
        eprintln!("demo failed: {e}");
        std::process::exit(1);
    }
}
