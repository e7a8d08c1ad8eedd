//! Running Envoy, for the demo, the tests and the benchmarks alike: one way to start it with a
//! configuration, learn the ports its listeners took (they bind port 0, so parallel runs never
//! collide) from its admin API, read its stats, and stop it when dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::apps;

/// A running Envoy, killed when dropped.
pub struct Envoy {
    child: Child,
    pub admin: SocketAddr,
    /// The port each named listener is bound to.
    pub ports: HashMap<String, u16>,
    pub log: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How an Envoy is started, here and in `docker-compose.yml` (one worker: the demo's load is
/// small, and the figures in the benchmarks are per worker).
pub fn envoy_args(config: &Path) -> Vec<String> {
    let config = config.display().to_string();
    ["-c", &config, "--disable-hot-restart", "--concurrency", "1"].map(String::from).to_vec()
}

/// The ports a running Envoy's listeners are bound to, by listener name.
pub async fn listener_ports(admin: SocketAddr) -> HashMap<String, u16> {
    let Ok((200, body)) = apps::http(admin, "GET", "admin", "/listeners?format=json", &[], vec![]).await else { return HashMap::new() };
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    v["listener_statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| Some((l["name"].as_str()?.to_string(), l["local_address"]["socket_address"]["port_value"].as_u64()? as u16)))
        .collect()
}

impl Envoy {
    /// Starts `envoy` with `config` at log `level` (its log to `log`), and waits until every
    /// listener named in `listeners` is bound; an Envoy that exits or takes over a minute is an
    /// error naming its log.
    pub async fn start(envoy: &Path, config: &Path, level: &str, log: &Path, listeners: &[&str]) -> Result<Envoy, String> {
        let admin_path = log.with_extension("admin");
        let _ = std::fs::remove_file(&admin_path);
        let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(envoy)
            .args(envoy_args(config))
            .args(["-l", level, "--admin-address-path"])
            .arg(&admin_path)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("{}: {e}", envoy.display()))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let admin: Option<SocketAddr> = std::fs::read_to_string(&admin_path).ok().and_then(|a| a.trim().parse().ok());
            if let Some(admin) = admin {
                let ports = listener_ports(admin).await;
                if listeners.iter().all(|l| ports.contains_key(*l)) {
                    return Ok(Envoy { child, admin, ports, log: log.to_path_buf() });
                }
            }
            if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("Envoy did not start; see {}", log.display()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where listener `name` listens, on loopback.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.ports.get(name).map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs (an exited child stays a zombie until reaped).
    pub fn running(&self) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status.lines().any(|l| l.starts_with("State:") && !l.contains("zombie"))
    }

    /// The sum of the stats whose names match `filter` (Envoy's regex filter).
    pub async fn stat(&self, filter: &str) -> u64 {
        let Ok((_, body)) = apps::http(self.admin, "GET", "admin", &format!("/stats?filter={filter}"), &[], vec![]).await else { return 0 };
        String::from_utf8_lossy(&body).lines().filter_map(|l| l.rsplit_once(": ").and_then(|(_, v)| v.trim().parse::<u64>().ok())).sum()
    }
}
