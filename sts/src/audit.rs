//! One structured JSON line per event, for the log pipeline. Decisions carry the chain, audience,
//! scopes and reason; never a token or key.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::sync::Locked;

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    kind: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// Where event lines go: stdout by default, or an append-only file.
pub struct AuditLog {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AuditLog {
    pub fn stdout() -> AuditLog {
        AuditLog { out: Mutex::new(Box::new(std::io::stdout())) }
    }

    pub fn file(path: &Path) -> std::io::Result<AuditLog> {
        let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(AuditLog { out: Mutex::new(Box::new(f)) })
    }

    pub fn emit<T: Serialize>(&self, kind: &str, body: &T) {
        let mut line = actorchain_token::to_json_vec(&Line { kind, body });
        line.push(b'\n');
        // One write per line, under the lock, keeps lines whole when several threads log at once.
        let mut out = self.out.locked();
        let _ = out.write_all(&line).and_then(|_| out.flush());
    }
}
