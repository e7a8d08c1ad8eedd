//! Test harness: a dev trust domain in a temp dir and the real `actorchain-sts` binary serving it
//! on loopback ports chosen by the kernel, so parallel tests never collide.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actorchain_sts::dev;
use actorchain_sts::https_client::{Connection, Reply};
use actorchain_sts::svid;

pub use actorchain_token::wire::{GRANT_TOKEN_EXCHANGE as TOKEN_EXCHANGE, TT_JWT};

pub struct Sts {
    /// Shared by replicas of the same trust domain; removed when the last one goes.
    pub dir: Arc<tempfile::TempDir>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub child: Reaped,
    pub log: Arc<Mutex<Vec<String>>>,
}

/// A child process killed when dropped, including when a test panics while starting it.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn now() -> u64 {
    actorchain_sts::server::unix_now()
}

impl Sts {
    /// A fresh dev trust domain; `edit` may change its files before the STS starts.
    pub fn start_with(edit: impl FnOnce(&Path)) -> Sts {
        let dir = tempfile::tempdir().unwrap();
        dev::init(dir.path(), false).unwrap();
        edit(dir.path());
        let (child, addr, admin, log) = launch(dir.path());
        Sts { dir: Arc::new(dir), addr, admin, child, log }
    }

    /// A second STS on the same configuration and state (a replica), on ports of its own.
    pub fn replica(&self) -> Sts {
        let (child, addr, admin, log) = launch(self.dir.path());
        Sts { dir: self.dir.clone(), addr, admin, child, log }
    }

    pub fn start() -> Sts {
        Sts::start_with(|_| {})
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn tls(&self, workload: Option<&str>) -> Arc<rustls::ClientConfig> {
        let bundle = svid::load_certs(&self.path("bundle.pem")).unwrap();
        let identity = workload.map(|w| {
            (
                svid::load_certs(&self.path(&format!("svid/{w}.pem"))).unwrap(),
                svid::load_key(&self.path(&format!("svid/{w}-key.pem"))).unwrap(),
            )
        });
        Arc::new(svid::client_config(&bundle, identity).unwrap())
    }

    /// A keep-alive connection presenting `workload`'s X.509-SVID, or none.
    pub async fn connect(&self, workload: Option<&str>) -> Connection {
        Connection::connect(self.addr, "localhost", self.tls(workload)).await.unwrap()
    }

    pub fn person_token(&self, sub: &str, aud: &str, scope: &str) -> String {
        dev::person_token(self.dir.path(), sub, aud, scope, 600, Some("INC-42"), now()).unwrap()
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.log_lines().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// Starts `actorchain-sts serve` on the trust domain in `dir` and waits for its listening line.
fn launch(dir: &Path) -> (Reaped, SocketAddr, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut child = Reaped(
        Command::new(env!("CARGO_BIN_EXE_actorchain-sts"))
            .args(["serve", "--config"])
            .arg(dir.join("sts.toml"))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    // Drain stdout for the whole run so the STS never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"kind\":\"listening\"") {
                let _ = tx.send(line.clone());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("STS printed its listening line");
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["token_endpoint"].as_str().unwrap().trim_start_matches("https://").trim_end_matches("/token").parse().unwrap();
    let admin = v["admin"].as_str().unwrap().trim_start_matches("http://").parse().unwrap();
    (child, addr, admin, log)
}

/// Sends an exchange request with the usual parameters plus `extra`.
pub async fn exchange(conn: &mut Connection, subject: &str, audience: &str, client_id: &str, extra: &[(&str, &str)]) -> Reply {
    let mut params = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", TT_JWT),
        ("audience", audience),
        ("client_id", client_id),
    ];
    params.extend_from_slice(extra);
    conn.post_form("/token", &params).await.unwrap()
}

pub fn json(reply: &Reply) -> serde_json::Value {
    serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.body))
}

/// Asserts an RFC 6749 error reply with the exact status, code and actorchain reason.
pub fn assert_refused(reply: &Reply, status: u16, error: &str, reason: &str) {
    let v = json(reply);
    assert_eq!(
        (reply.status, v["error"].as_str(), v["actorchain_reason"].as_str()),
        (status, Some(error), Some(reason)),
        "body: {}",
        reply.body
    );
    assert!(v["error_description"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
}

pub fn access_token(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    json(reply)["access_token"].as_str().unwrap().to_string()
}

/// The payload of a compact JWS, decoded without verification (for inspecting what was minted).
pub fn payload(token: &str) -> serde_json::Value {
    use base64::Engine;
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}
