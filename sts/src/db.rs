//! The STS's state database (SQLite): one file, WAL journal, every commit synced to disk.

/// Opens (creating if needed) the database at `path` and applies `schema` (idempotent DDL).
pub fn open(path: &std::path::Path, schema: &str) -> Result<rusqlite::Connection, String> {
    let conn = rusqlite::Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    conn.execute_batch(&format!("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; {schema}"))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(conn)
}
