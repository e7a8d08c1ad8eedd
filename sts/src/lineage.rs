//! The lineage page on the admin listener: sessions by person and time, and each session's
//! delegation — hops, scopes, tool calls, refusals, revocations — drawn as a tree in the browser.
//! The page, its script and style are compiled in (no CDN); the browser may load nothing else
//! (`Content-Security-Policy`), and ledger text is only ever shown as text. Off unless
//! `[ledger] lineage_page = true`: the admin listener has no authentication, so keep it on
//! loopback or a private interface, as for metrics.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::ledger::{self, Filter};
use crate::state::Sts;
use crate::sync::Locked;

pub const PAGE: &str = include_str!("lineage/page.html");
pub const SCRIPT: &str = include_str!("lineage/app.js");
pub const STYLE: &str = include_str!("lineage/app.css");
/// What the page may load: itself, and its own script, style and data.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Whether a request's `Host` names the admin listener by address (an IP literal, or
/// `localhost`). A page reached under any other name may be a DNS-rebinding attack: a web site
/// whose name now points at this listener, reading the ledger from a browser on this machine.
pub fn host_allowed(host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => return v6.split_once(']').is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok()),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost" || name.parse::<std::net::Ipv4Addr>().is_ok()
}

/// Most sessions listed at once.
const MAX_SESSIONS: usize = 200;
/// The list is drawn from at most the ledger's newest this many records: bounded memory, however
/// large the ledger.
const MAX_RECORDS_READ: u64 = 100_000;

/// One session as the list shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SessionSummary {
    pub sid: String,
    pub person: String,
    pub issuer: String,
    pub first: u64,
    pub last: u64,
    /// Exchanges granted (hops), calls reported (MCP/A2A), and anything refused.
    pub hops: u64,
    pub calls: u64,
    pub refused: u64,
}

/// The sessions in `records` (ledger bodies, in order), most recent first.
pub fn sessions(records: &[Value]) -> Vec<SessionSummary> {
    let mut by_sid: BTreeMap<String, SessionSummary> = BTreeMap::new();
    for r in records {
        let Some(sid) = r["sid"].as_str() else { continue };
        let ts = r["ts"].as_u64().unwrap_or(0);
        let s = by_sid.entry(sid.to_string()).or_insert_with(|| SessionSummary { sid: sid.to_string(), first: ts, ..Default::default() });
        if s.person.is_empty() {
            s.person = r["sub"].as_str().unwrap_or_default().to_string();
            s.issuer = r["sub_iss"].as_str().unwrap_or_default().to_string();
        }
        s.first = s.first.min(ts);
        s.last = s.last.max(ts);
        let report = r["direction"].is_string();
        s.hops += u64::from(!report && r["by"].is_null() && r["decision"] == "granted");
        s.calls += u64::from(report && r["method"].is_string());
        s.refused += u64::from(r["decision"] == "refused");
    }
    let mut list: Vec<SessionSummary> = by_sid.into_values().collect();
    list.sort_by(|a, b| b.last.cmp(&a.last).then(a.sid.cmp(&b.sid)));
    list.truncate(MAX_SESSIONS);
    list
}

impl Sts {
    pub fn lineage_page(&self) -> bool {
        self.cfg.ledger.lineage_page
    }

    /// `GET /lineage/sessions?sub=&hours=`: sessions with a record in the last `hours` (24).
    pub fn lineage_sessions(&self, query: &str, now: u64) -> Result<String, String> {
        let mut f = Filter::default();
        let mut hours = 24u64;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "sub" if !v.is_empty() => f.sub = Some(v.into_owned()),
                "hours" => hours = v.parse().ok().filter(|h| (1..=720).contains(h)).ok_or("hours: 1 to 720")?,
                _ => {}
            }
        }
        f.since = Some(now.saturating_sub(hours * 3600));
        f.newest = Some(MAX_RECORDS_READ);
        let rows = ledger::select(&mut **self.ledger_reader.locked(), &f)?;
        let records: Vec<Value> = rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
        Ok(serde_json::json!({ "sessions": sessions(&records) }).to_string())
    }

    /// `GET /lineage/session?sid=`: the session's records, in ledger order.
    pub fn lineage_session(&self, query: &str) -> Result<String, String> {
        let sid = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "sid").map(|(_, v)| v.into_owned()).ok_or("sid: required")?;
        let rows = ledger::select(&mut **self.ledger_reader.locked(), &Filter { sid: Some(sid.clone()), ..Default::default() })?;
        let records: Vec<Value> = rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
        Ok(serde_json::json!({ "sid": sid, "records": records }).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_an_address_reaches_the_page() {
        for ok in ["127.0.0.1:8444", "localhost:8444", "10.0.0.5:8444", "[::1]:8444", "localhost"] {
            assert!(host_allowed(Some(ok)), "{ok}");
        }
        for bad in ["attacker.example:8444", "attacker.example", "127.0.0.1.nip.io:8444", "[evil]:80", ""] {
            assert!(!host_allowed(Some(bad)), "{bad}");
        }
        assert!(!host_allowed(None));
    }

    #[test]
    fn sessions_are_summed_up_most_recent_first() {
        let records = [
            json!({"ts": 10, "sid": "s1", "sub": "user1", "sub_iss": "https://idp", "decision": "granted", "reason": "granted"}),
            json!({"ts": 11, "sid": "s1", "direction": "inbound", "decision": "allowed", "method": "tools/call", "name": "create_pr"}),
            json!({"ts": 12, "sid": "s1", "direction": "inbound", "decision": "refused", "method": "tools/call", "name": "read_metrics"}),
            json!({"ts": 20, "sid": "s2", "sub": "user2", "decision": "refused", "reason": "scope_widening"}),
            json!({"ts": 30, "sub": "user3", "decision": "refused"}),
        ];
        let s = sessions(&records);
        assert_eq!(s.iter().map(|s| s.sid.as_str()).collect::<Vec<_>>(), ["s2", "s1"]);
        assert_eq!((s[1].person.as_str(), s[1].first, s[1].last, s[1].hops, s[1].calls, s[1].refused), ("user1", 10, 12, 1, 2, 1));
        assert_eq!((s[0].hops, s[0].refused), (0, 1));
    }
}
