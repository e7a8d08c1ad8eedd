//! JWKS documents: no input panics; a set that parses holds only usable, unique keys.
#![no_main]

use actorchain_token::{KeySet, MAX_KEYS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = KeySet::from_jwks(data) {
        assert!(set.len() <= MAX_KEYS);
        // What we publish from a parsed set parses back to the same set.
        assert_eq!(KeySet::from_jwks(set.to_jwks().as_bytes()).as_ref(), Ok(&set));
    }
});
