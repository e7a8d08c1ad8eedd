//! A throwaway PostgreSQL for trying several STS replicas and for the tests: Debian's server
//! binaries, a data directory in a temp dir, loopback only, trust authentication for the
//! `actorchain` role, stopped and removed when dropped. Never a production database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct DevPostgres {
    server: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for DevPostgres {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn bin(name: &str) -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e} (install Debian's postgresql)"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(name)))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| format!("no {name} under /usr/lib/postgresql"))
}

/// The server refuses to run as root: as root, it runs as the `postgres` system user.
fn as_server_user(program: &Path) -> Command {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false);
    if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "postgres", "--regid", "postgres", "--init-groups"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl DevPostgres {
    /// Creates a cluster, starts it on a free loopback port and creates database `actorchain`.
    pub fn start() -> Result<DevPostgres, String> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let out = as_server_user(&bin("initdb")?)
            .arg("-D")
            .arg(&data)
            .args(["-U", "actorchain", "--auth=trust", "-E", "UTF8", "--no-instructions"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let server = as_server_user(&bin("postgres")?)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-k"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        let pg = DevPostgres { server, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = format!("postgres://actorchain@127.0.0.1:{port}/postgres");
        loop {
            match postgres::Client::connect(&admin, postgres::NoTls) {
                Ok(mut c) => {
                    c.batch_execute("CREATE DATABASE actorchain").map_err(|e| e.to_string())?;
                    return Ok(pg);
                }
                Err(e) if Instant::now() > deadline => return Err(format!("PostgreSQL did not start: {e}")),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://actorchain@127.0.0.1:{}/actorchain", self.port)
    }
}
