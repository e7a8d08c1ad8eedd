//! Benchmark results as JSON under `bench-results/`, one file per benchmark, with the machine's
//! core count, so runs on different days and machines can be compared.

use std::path::PathBuf;

use serde_json::{json, Value};

pub fn results_dir() -> std::io::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench-results");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Writes `bench-results/<name>.json` with the results and what they were measured on.
pub fn write(name: &str, results: Value) -> std::io::Result<()> {
    let doc = json!({
        "benchmark": name,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "measured_at_unix": crate::server::unix_now(),
        "results": results,
    });
    let path = results_dir()?.join(format!("{name}.json"));
    std::fs::write(&path, actorchain_token::to_json_pretty(&doc))?;
    println!("wrote {}", path.display());
    Ok(())
}
