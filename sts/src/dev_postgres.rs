//! A throwaway PostgreSQL for trying several STS replicas and for the tests: Debian's server
//! binaries, a data directory in a temp dir, loopback only, trust authentication for the
//! `actorchain` role, stopped and removed when dropped. Never a production database.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct DevPostgres {
    server: Child,
    port: u16,
    /// With TLS: the CA its certificate chains to (connections must be TLS then).
    ca: Option<PathBuf>,
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
fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

fn as_server_user(program: &Path) -> Command {
    if running_as_root() {
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
        DevPostgres::start_with(None)
    }

    /// The same, taking TLS connections only, with the certificate the dev trust domain in
    /// `dev` issued for PostgreSQL (`svid/postgres.pem`, for 127.0.0.1 and localhost).
    pub fn start_tls(dev: &Path) -> Result<DevPostgres, String> {
        DevPostgres::start_with(Some(dev))
    }

    fn start_with(tls: Option<&Path>) -> Result<DevPostgres, String> {
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
        let mut server = as_server_user(&bin("postgres")?);
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-k"])
            .arg(dir.path());
        if let Some(dev) = tls {
            // Over TCP only TLS is accepted; the Unix socket (for setting up) stays.
            std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
                .map_err(|e| e.to_string())?;
            for (from, to) in [("svid/postgres.pem", "server.crt"), ("svid/postgres-key.pem", "server.key")] {
                std::fs::copy(dev.join(from), data.join(to)).map_err(|e| format!("{from}: {e}"))?;
                std::fs::set_permissions(data.join(to), std::fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
                chown_to_server_user(&data.join(to))?;
            }
            server.args(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt", "-c", "ssl_key_file=server.key"]);
        }
        let server = server.stdout(Stdio::null()).stderr(Stdio::null()).spawn().map_err(|e| format!("postgres: {e}"))?;
        let socket_dir = dir.path().display().to_string();
        let pg = DevPostgres { server, port, ca: tls.map(|d| d.join("bundle.pem")), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        let admin = format!("host={socket_dir} port={port} user=actorchain dbname=postgres");
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

    /// The database's URL: over TLS (verify-full, the dev CA) when it was started so.
    pub fn url(&self) -> String {
        let url = format!("postgres://actorchain@127.0.0.1:{}/actorchain", self.port);
        match &self.ca {
            Some(ca) => format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display()),
            None => url,
        }
    }
}

/// As root, the server's files belong to the server's user (PostgreSQL refuses a key file it does
/// not own).
fn chown_to_server_user(path: &Path) -> Result<(), String> {
    if !running_as_root() {
        return Ok(());
    }
    let out = Command::new("chown").arg("postgres:postgres").arg(path).output().map_err(|e| format!("chown: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("chown {}: {}", path.display(), String::from_utf8_lossy(&out.stderr)))
    }
}
