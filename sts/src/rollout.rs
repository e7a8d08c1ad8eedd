//! Rolling out into a running mesh: what sidecars in observe-only mode (`"enforce": false`) would
//! have refused, read from their decision lines in Envoy's logs, summed by direction, who was
//! calling, destination and reason — the list an operator works through before enforcing.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One decision line of the filter (the fields the report reads).
#[derive(Deserialize)]
struct Decision {
    kind: String,
    direction: String,
    decision: String,
    reason: String,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    chain: Option<Vec<String>>,
    #[serde(default)]
    audience: Option<String>,
}

/// What would have been refused, and how often.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct WouldRefuse {
    pub direction: String,
    /// The calling agent (inbound), or a person calling directly, or `-` when no token verified.
    pub caller: String,
    /// The audience (outbound), or `-`.
    pub destination: String,
    pub reason: String,
}

/// Reads log lines (Envoy's, with the filter's JSON decision at the end of each wasm line, or
/// bare JSON lines) and counts the observe-only refusals. Other lines are skipped.
pub fn would_refuse<'a>(lines: impl IntoIterator<Item = &'a str>) -> BTreeMap<WouldRefuse, u64> {
    let mut counts = BTreeMap::new();
    for line in lines {
        // A decision line starts with its time (earlier versions: with its kind).
        let Some(at) = line.find("{\"ts\":").or_else(|| line.find("{\"kind\":\"decision\"")) else { continue };
        let Ok(d) = serde_json::from_str::<Decision>(line[at..].trim_end()) else { continue };
        if d.kind != "decision" || d.decision != "would_refuse" {
            continue;
        }
        let caller = match (d.chain.as_deref().and_then(<[String]>::last), d.sub) {
            (Some(agent), _) => agent.clone(),
            (None, Some(person)) => format!("{person} (directly)"),
            (None, None) => "-".to_string(),
        };
        let key = WouldRefuse { direction: d.direction, caller, destination: d.audience.unwrap_or_else(|| "-".into()), reason: d.reason };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// The report as text, most frequent first.
pub fn render(counts: &BTreeMap<WouldRefuse, u64>) -> String {
    let mut rows: Vec<(&WouldRefuse, &u64)> = counts.iter().collect();
    rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut out = format!("{:>7}  {:<9} {:<24} {:<20} {}\n", "count", "direction", "caller", "destination", "reason");
    for (k, n) in rows {
        out.push_str(&format!("{n:>7}  {:<9} {:<24} {:<20} {}\n", k.direction, k.caller, k.destination, k.reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_what_would_have_been_refused() {
        let log = [
            r#"[2026-12-02 01:27:20.123][12][info][wasm] wasm log actorchain_inbound: {"ts":1796190645,"kind":"decision","direction":"inbound","decision":"would_refuse","reason":"token_missing","status":401}"#,
            r#"[..][info][wasm] wasm log: {"kind":"decision","direction":"inbound","decision":"would_refuse","reason":"scope_missing","status":403,"sub":"user1","chain":["oncall-agent","investigation-agent"]}"#,
            r#"{"kind":"decision","direction":"inbound","decision":"would_refuse","reason":"token_missing","status":401}"#,
            r#"{"kind":"decision","direction":"outbound","decision":"would_refuse","reason":"no_subject_token","status":403,"audience":"mcp-gateway"}"#,
            r#"{"kind":"decision","direction":"inbound","decision":"accepted","reason":"valid"}"#,
            "[..][warning][wasm] something else",
        ];
        let counts = would_refuse(log);
        let get = |d: &str, c: &str, dest: &str, r: &str| {
            counts.get(&WouldRefuse { direction: d.into(), caller: c.into(), destination: dest.into(), reason: r.into() }).copied()
        };
        assert_eq!(get("inbound", "-", "-", "token_missing"), Some(2));
        assert_eq!(get("inbound", "investigation-agent", "-", "scope_missing"), Some(1));
        assert_eq!(get("outbound", "-", "mcp-gateway", "no_subject_token"), Some(1));
        assert_eq!(counts.values().sum::<u64>(), 4);
        assert!(render(&counts).lines().nth(1).is_some_and(|l| l.contains("token_missing")));
    }
}
