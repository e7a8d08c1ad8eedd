//! Report batches as sidecars send them to the STS's ledger: no input panics; a report that
//! passes the check serializes and parses back to itself, and passes again.
#![no_main]

use actorchain_token::wire::{Report, ReportBatch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<ReportBatch>(data) else { return };
    for r in batch.reports.iter().filter(|r| r.check().is_ok()) {
        let again: Report = serde_json::from_str(&actorchain_token::to_json(r)).expect("a checked report round-trips");
        assert_eq!(&again, r);
        assert!(again.check().is_ok());
    }
});
