//! One structured JSON line per event on stdout, for the log pipeline. Decisions carry the chain,
//! audience, scopes and reason; never a token or key.

use std::io::Write;

use serde::Serialize;

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    kind: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

pub fn emit<T: Serialize>(kind: &str, body: &T) {
    let mut line = serde_json::to_vec(&Line { kind, body }).expect("audit line serializes");
    line.push(b'\n');
    // One write per line keeps lines whole when several threads log at once.
    let _ = std::io::stdout().lock().write_all(&line);
}
