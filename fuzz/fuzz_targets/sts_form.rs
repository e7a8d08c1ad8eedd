//! The STS's `/token` form parser: no input panics, and an accepted request is self-consistent.
#![no_main]

use actorchain_sts::form::parse_token_request;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_token_request(data) {
        assert!(!r.audience.is_empty() && !r.client_id.is_empty());
        assert!(r.subject_token.as_deref().is_none_or(|t| !t.is_empty()));
    }
});
