//! Trace context: how the outbound side finds the token that started the work when the app
//! propagates only `traceparent` or `x-request-id`, not the token itself.

/// W3C trace-context `traceparent`: `00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>`.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (Some(version), Some(trace), Some(parent), Some(flags)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = hex(version, 2) && version != "ff" && hex(trace, 32) && hex(parent, 16) && hex(flags, 2);
    // An all-zero trace-id is invalid by the spec, and would join unrelated requests.
    (valid && trace.bytes().any(|b| b != b'0')).then_some(trace)
}

/// Shared-data keys under which an accepted request's token is recorded, one per context the
/// app may propagate.
pub fn context_keys(traceparent: Option<&str>, request_id: Option<&str>) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(t) = traceparent.and_then(trace_id) {
        keys.push(format!("actorchain.subject.trace.{t}"));
    }
    if let Some(r) = request_id.filter(|r| !r.is_empty() && r.len() <= 128 && r.bytes().all(|b| b.is_ascii_graphic())) {
        keys.push(format!("actorchain.subject.rid.{r}"));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_traceparent_strictly() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"), None);
        assert_eq!(trace_id("00-4bf92f35-00f067aa0ba902b7-01"), None);
        assert_eq!(context_keys(Some(tp), Some("r-1")).len(), 2);
        assert_eq!(context_keys(None, Some("has space")), Vec::<String>::new());
    }
}
