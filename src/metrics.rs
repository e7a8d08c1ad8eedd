//! Every metric the filter keeps, named once. The wasm build defines a metric on first use; a
//! native Envoy module must define all of its metrics when its configuration loads, so the names
//! are listed here, and the native tests' fake host refuses a name that is not.

/// Counters, by full name.
pub const COUNTERS: &[&str] = &[
    "actorchain.inbound.accepted",
    "actorchain.inbound.exempt",
    "actorchain.inbound.mcp_allowed",
    "actorchain.inbound.a2a_allowed",
    "actorchain.outbound.cache_hit",
    "actorchain.outbound.cache_miss",
    "actorchain.outbound.exchanged",
    "actorchain.jwks.fetch_ok",
    "actorchain.jwks.fetch_failed",
    "actorchain.revocations.fetch_ok",
    "actorchain.revocations.fetch_failed",
    "actorchain.reports.sent",
    "actorchain.reports.rejected",
    "actorchain.reports.send_failed",
    "actorchain.reports.dropped",
];

/// Gauges, by full name.
pub const GAUGES: &[&str] =
    &["actorchain.revocations.entries", "actorchain.revocations.lag_seconds", "actorchain.reports.buffered", "actorchain.jwks.age_seconds"];

/// Counter families: `<family>.<reason>`, one counter per refusal reason (`actorchain.inbound.
/// refused.token_expired`...). The reasons are open-ended, so a family is its prefix.
pub const FAMILIES: &[(&str, &str)] = &[
    ("actorchain.inbound", "refused"),
    ("actorchain.inbound", "would_refuse"),
    ("actorchain.outbound", "refused"),
    ("actorchain.outbound", "would_refuse"),
];

/// Which family `name` belongs to, and its member's name within it (the reason).
pub fn family_member(name: &str) -> Option<(usize, &str)> {
    FAMILIES.iter().enumerate().find_map(|(i, (base, decision))| {
        let rest = name.strip_prefix(base)?.strip_prefix('.')?.strip_prefix(decision)?.strip_prefix('.')?;
        (!rest.is_empty() && !rest.contains('.')).then_some((i, rest))
    })
}

/// Whether `name` is a metric listed here.
pub fn declared(name: &str) -> bool {
    COUNTERS.contains(&name) || GAUGES.contains(&name) || family_member(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_counters_belong_to_their_family() {
        assert_eq!(family_member("actorchain.inbound.refused.token_expired"), Some((0, "token_expired")));
        assert_eq!(family_member("actorchain.outbound.would_refuse.scope_unavailable"), Some((3, "scope_unavailable")));
        assert_eq!(family_member("actorchain.inbound.refused."), None);
        assert_eq!(family_member("actorchain.inbound.refused.a.b"), None);
        assert!(declared("actorchain.reports.buffered") && !declared("actorchain.inbound.refusedx"));
    }
}
