use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actorchain_sts::config::Config;
use actorchain_sts::registry::Registry;
use actorchain_sts::server::{self, unix_now, Sts};
use actorchain_sts::{dev, svid};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "actorchain-sts", version, about = "Security token service for AI agent actor chains")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the STS.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `listen` (use port 0 for any free port; the bound address is printed).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Overrides `admin_listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Validate an agent registry file and exit.
    CheckRegistry { file: PathBuf },
    /// Store an agent registry in the PostgreSQL database shared by STS replicas (validated
    /// first; every replica takes it in within a second).
    PutRegistry {
        #[arg(long)]
        db: String,
        file: PathBuf,
    },
    /// Read the audit ledger: verify its hash chain, print a session's delegation tree, query.
    Ledger {
        #[command(subcommand)]
        cmd: LedgerCmd,
    },
    /// Observe-only rollout: what the sidecars would have refused, by direction, caller,
    /// destination and reason, read from their Envoy logs.
    WouldRefuse {
        /// Envoy log files of sidecars running with `"enforce": false`.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
    },
    /// Development trust domain and tokens.
    Dev {
        #[command(subcommand)]
        cmd: DevCmd,
    },
}

#[derive(Subcommand)]
enum LedgerCmd {
    /// Check every record's link; names the first record edited, removed or reordered. With a
    /// checkpoint, also that every record it covers is still there, unchanged.
    Verify {
        #[arg(long)]
        db: PathBuf,
        /// A checkpoint file (`ledger checkpoint`, `POST /admin/ledger/checkpoint`).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The STS's published ledger keys (`/.well-known/ledger-keys.json`) the checkpoint must be
        /// signed with; without it, the key the checkpoint names is shown for you to compare.
        #[arg(long, requires = "checkpoint")]
        keys: Option<PathBuf>,
    },
    /// Sign the ledger's head now with the STS's ledger key (from its configuration's state
    /// directory) and write the checkpoint for an auditor to keep.
    Checkpoint {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// The delegation tree of one session.
    Tree {
        #[arg(long)]
        db: PathBuf,
        /// Session ids are base64url and may start with `-`.
        #[arg(long, allow_hyphen_values = true)]
        sid: String,
    },
    /// Records by person, agent or time range, one JSON line each.
    Query {
        #[arg(long)]
        db: PathBuf,
        #[arg(long, allow_hyphen_values = true)]
        sub: Option<String>,
        /// The issuer that vouched for `--sub` (two IdPs' `user1` are two people).
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long, allow_hyphen_values = true)]
        agent: Option<String>,
        #[arg(long)]
        since: Option<u64>,
        #[arg(long)]
        until: Option<u64>,
    },
}

#[derive(Subcommand)]
enum DevCmd {
    /// Write a complete dev trust domain (CA, SVIDs, issuers, registry, sts.toml).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Replace existing material.
        #[arg(long)]
        force: bool,
    },
    /// Print a person's token from the dev IdP.
    PersonToken {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        sub: String,
        #[arg(long)]
        aud: String,
        #[arg(long, default_value = "")]
        scope: String,
        #[arg(long, default_value_t = 600)]
        ttl: u64,
        #[arg(long)]
        task: Option<String>,
    },
    /// Print a JWT-SVID for a dev workload, addressed to the STS.
    JwtSvid {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        workload: String,
        #[arg(long, default_value = dev::STS_SPIFFE_ID)]
        aud: String,
        #[arg(long, default_value_t = 300)]
        ttl: u64,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve { config, listen, admin_listen } => serve(config, listen, admin_listen),
        Cmd::CheckRegistry { file } => {
            Registry::load(&file).map(|r| println!("{}: {} agents, valid", file.display(), r.len())).map_err(|e| e.to_string())
        }
        Cmd::PutRegistry { db, file } => std::fs::read_to_string(&file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|text| actorchain_sts::pg::PgRegistry::open(&db)?.put(&text, false))
            .map(|_| println!("{}: stored in {}", file.display(), actorchain_sts::pg::redact(&db))),
        Cmd::Ledger { cmd } => run_ledger(cmd),
        Cmd::WouldRefuse { logs } => logs
            .iter()
            .map(|log| std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display())))
            .collect::<Result<Vec<String>, String>>()
            .map(|texts| {
                let counts = actorchain_sts::rollout::would_refuse(texts.iter().flat_map(|t| t.lines()));
                print!("{}", actorchain_sts::rollout::render(&counts));
            }),
        Cmd::Dev { cmd } => run_dev(cmd),
    };
    if let Err(e) = result {
        eprintln!("actorchain-sts: {e}");
        std::process::exit(1);
    }
}

fn run_ledger(cmd: LedgerCmd) -> Result<(), String> {
    use actorchain_sts::checkpoint;
    use actorchain_sts::config::Database;
    use actorchain_sts::ledger::{self, Filter};
    let open = |db: &PathBuf| match Database::from_arg(db) {
        Database::Sqlite(p) if !p.exists() => Err(format!("{}: no such ledger", p.display())),
        d => actorchain_sts::server::open_ledger(&d),
    };
    match cmd {
        LedgerCmd::Verify { db, checkpoint, keys } => {
            let rows = open(&db)?.rows(&Filter::default())?;
            let name = actorchain_sts::pg::redact(&db.display().to_string());
            let n = ledger::verify(&rows).map_err(|t| format!("{name}: record {}: {}", t.seq, t.what))?;
            let Some(cp) = checkpoint else {
                println!("{name}: {n} records, chain intact");
                return Ok(());
            };
            let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
            let pinned = match &keys {
                Some(k) => Some(actorchain_token::KeySet::from_jwks(read(k)?.as_bytes()).map_err(|e| format!("{}: {e}", k.display()))?),
                None => None,
            };
            let head = checkpoint::verify(&rows, &read(&cp)?, pinned.as_ref()).map_err(|e| format!("{name}: {e}"))?;
            let signer = if keys.is_some() {
                "a pinned ledger key".to_string()
            } else {
                format!("key {} (compare with the STS's ledger keys)", checkpoint::signer(&read(&cp)?))
            };
            println!(
                "{name}: {n} records, chain intact; the {} covered by the checkpoint of {} ({}) are all there, unchanged; signed by {signer}",
                head.count,
                ledger::rfc3339(head.iat),
                head.iss
            );
            Ok(())
        }
        LedgerCmd::Checkpoint { config, out } => {
            let cfg = Config::load(&config)?;
            let key = checkpoint::LedgerKey::load_or_create(&cfg.ledger_key_file())?;
            let mut store = actorchain_sts::server::open_ledger(&cfg.database())?;
            let (count, head) = store.head()?.unwrap_or_else(|| (0, ledger::GENESIS.to_string()));
            let file = key.sign(&cfg.issuer, count, &head, unix_now());
            std::fs::write(&out, actorchain_token::to_json_pretty(&file)).map_err(|e| format!("{}: {e}", out.display()))?;
            println!("{}: checkpoint of {count} records", out.display());
            Ok(())
        }
        LedgerCmd::Tree { db, sid } => {
            let rows = open(&db)?.rows(&Filter { sid: Some(sid.clone()), ..Default::default() })?;
            if rows.is_empty() {
                return Err(format!("no records for session {sid}"));
            }
            print!("{}", ledger::session_tree(&rows));
            Ok(())
        }
        LedgerCmd::Query { db, sub, issuer, agent, since, until } => {
            for r in ledger::select(&mut *open(&db)?, &Filter { sid: None, sub, issuer, agent, since, until, newest: None })? {
                println!("{}", r.body);
            }
            Ok(())
        }
    }
}

fn run_dev(cmd: DevCmd) -> Result<(), String> {
    match cmd {
        DevCmd::Init { dir, force } => {
            dev::init(&dir, force)?;
            println!("dev trust domain in {}", dir.display());
            Ok(())
        }
        DevCmd::PersonToken { dir, sub, aud, scope, ttl, task } => {
            println!("{}", dev::person_token(&dir, &sub, &aud, &scope, ttl, task.as_deref(), unix_now())?);
            Ok(())
        }
        DevCmd::JwtSvid { dir, workload, aud, ttl } => {
            println!("{}", dev::jwt_svid(&dir, &workload, &aud, ttl, unix_now())?);
            Ok(())
        }
    }
}

fn serve(config: PathBuf, listen: Option<SocketAddr>, admin_listen: Option<SocketAddr>) -> Result<(), String> {
    let mut cfg = Config::load(&config)?;
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(l) = admin_listen {
        cfg.admin_listen = l;
    }
    let tls = svid::server_config(
        svid::load_certs(&cfg.tls.cert).map_err(|e| e.to_string())?,
        svid::load_key(&cfg.tls.key).map_err(|e| e.to_string())?,
        &svid::load_bundle(&cfg.tls.trust_bundle).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let sts = Sts::open(cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let serving = sts.clone();
    let stopped = rt.block_on(async move {
        let sts = serving;
        let cfg = sts.config().clone();
        let listener = tokio::net::TcpListener::bind(cfg.listen).await.map_err(|e| format!("listen {}: {e}", cfg.listen))?;
        let admin = tokio::net::TcpListener::bind(cfg.admin_listen).await.map_err(|e| format!("admin_listen {}: {e}", cfg.admin_listen))?;
        let (addr, admin_addr) = (listener.local_addr().map_err(|e| e.to_string())?, admin.local_addr().map_err(|e| e.to_string())?);
        // Always on stdout, whatever the audit destination: tests and scripts read the addresses here.
        println!(
            "{}",
            serde_json::json!({
                "kind": "listening",
                "token_endpoint": format!("https://{addr}/token"),
                "jwks": format!("https://{addr}/.well-known/jwks.json"),
                "admin": format!("http://{admin_addr}"),
                "issuer": cfg.issuer,
            })
        );
        tokio::spawn(server::serve(sts.clone(), listener, Arc::new(tls)));
        tokio::spawn(server::serve_admin(sts.clone(), admin));
        tokio::spawn(server::follow_jwks_urls(sts.clone()));
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(|e| e.to_string())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => sts.refresh(unix_now(), false),
                _ = hup.recv() => sts.refresh(unix_now(), true),
                _ = term.recv() => return Ok(()),
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    });
    // Spans still batched go out before the process ends.
    sts.telemetry.shutdown();
    stopped
}
