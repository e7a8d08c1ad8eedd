//! Load run against the real STS binary: keep-alive mTLS connections sending `/token` exchanges at
//! a fixed rate (open loop: latency is measured from when a request was due, so a stall is not
//! hidden), then a closed-loop run for peak throughput. Bounded in count and time; loopback only.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actorchain_sts::https_client::Connection;
use actorchain_sts::server::unix_now;
use actorchain_sts::{bench_report, dev, svid};
use serde_json::json;

const CONNECTIONS: usize = 16;
const RATE_PER_SEC: u64 = 2000;
const FIXED_RATE_SECS: u64 = 10;
const SATURATION_SECS: u64 = 5;

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn summary(mut lat_us: Vec<u64>, errors: u64, secs: f64) -> serde_json::Value {
    lat_us.sort_unstable();
    json!({
        "requests": lat_us.len(),
        "errors": errors,
        "throughput_per_sec": lat_us.len() as f64 / secs,
        "p50_ms": percentile(&lat_us, 0.50),
        "p99_ms": percentile(&lat_us, 0.99),
        "p999_ms": percentile(&lat_us, 0.999),
        "max_ms": percentile(&lat_us, 1.0),
    })
}

async fn run(conns: Vec<Connection>, body: Arc<Vec<(&'static str, String)>>, interval: Option<Duration>, secs: u64) -> (Vec<u64>, u64) {
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (k, mut conn) in conns.into_iter().enumerate() {
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let params: Vec<(&str, &str)> = body.iter().map(|(a, b)| (*a, b.as_str())).collect();
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            // Connections are staggered so the aggregate arrivals are evenly spaced.
            let mut due = start + interval.map_or(Duration::ZERO, |i| i * k as u32 / CONNECTIONS as u32);
            let mut prev_done = Instant::now();
            while due < end {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                }
                // Latency counts from when the request was due if it had to wait for the previous
                // response (no coordinated omission), otherwise from when it was sent: the timer
                // wakes up to 1 ms late, and that lateness is the generator's, not the STS's.
                let sent = Instant::now();
                let from = if interval.is_some() && prev_done > due { due } else { sent };
                match conn.post_form("/token", &params).await {
                    Ok(r) if r.status == 200 => lat.push(from.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
                prev_done = Instant::now();
                if interval.is_none() {
                    due = prev_done;
                }
                if let Some(i) = interval {
                    due += i;
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    (all, errors)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    dev::init(dir.path(), false).unwrap();
    let toml = std::fs::read_to_string(dir.path().join("sts.toml")).unwrap();
    std::fs::write(dir.path().join("sts.toml"), format!("audit_log = \"audit.log\"\n{toml}")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_actorchain-sts"))
        .args(["serve", "--config"])
        .arg(dir.path().join("sts.toml"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["token_endpoint"].as_str().unwrap().trim_start_matches("https://").trim_end_matches("/token").parse().unwrap();

    let person = dev::person_token(dir.path(), "user1", "oncall-agent", "incidents:read repo:write", 3600, None, unix_now()).unwrap();
    let body = Arc::new(
        actorchain_token::wire::ExchangeRequest {
            subject: Some(&person),
            audience: "investigation-agent",
            scope: None,
            client_id: "oncall-agent",
        }
        .params(),
    );
    let bundle = svid::load_certs(&dir.path().join("bundle.pem")).unwrap();
    let identity =
        (svid::load_certs(&dir.path().join("svid/oncall.pem")).unwrap(), svid::load_key(&dir.path().join("svid/oncall-key.pem")).unwrap());
    let tls = Arc::new(svid::client_config(&bundle, Some(identity)).unwrap());

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let results = rt.block_on(async {
        let connect = || async {
            let mut v = Vec::new();
            for _ in 0..CONNECTIONS {
                v.push(Connection::connect(addr, "localhost", tls.clone()).await.unwrap());
            }
            v
        };
        // Warm-up: handshakes done, code paths hot.
        run(connect().await, body.clone(), None, 1).await;
        let interval = Duration::from_nanos(1_000_000_000 * CONNECTIONS as u64 / RATE_PER_SEC);
        let (lat, err) = run(connect().await, body.clone(), Some(interval), FIXED_RATE_SECS).await;
        let fixed = summary(lat, err, FIXED_RATE_SECS as f64);
        let (lat, err) = run(connect().await, body.clone(), None, SATURATION_SECS).await;
        let saturated = summary(lat, err, SATURATION_SECS as f64);
        json!({
            "connections": CONNECTIONS,
            "fixed_rate": { "target_per_sec": RATE_PER_SEC, "seconds": FIXED_RATE_SECS, "latency": fixed },
            "saturation": { "seconds": SATURATION_SECS, "latency": saturated },
            "note": "STS and load generator share this machine's cores; TLS on both sides is counted",
        })
    });
    let _ = child.kill();
    let _ = child.wait();
    println!("{}", serde_json::to_string_pretty(&results).unwrap());
    bench_report::write("sts_load", results).expect("bench-results is writable");
}
