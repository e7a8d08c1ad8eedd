//! Decisions the sidecars report (`POST /ledger/reports`): checked, attributed to the workload
//! whose SVID the connection presented — a sidecar reports for itself only — and appended to the
//! ledger's one hash chain, next to the STS's own decisions. A batch is taken whole or not at all.

use actorchain_token::wire::{ReportBatch, MAX_REPORTS};

use crate::app::Peer;
use crate::error::{ExchangeError, OAuthCode};
use crate::ledger::Entry;
use crate::state::Sts;

impl Sts {
    /// Appends a batch of reports from `peer`; how many.
    pub(crate) async fn take_reports(&self, body: &[u8], peer: &Peer) -> Result<usize, ExchangeError> {
        let Peer::Workload(workload) = peer else {
            return Err(ExchangeError::new(OAuthCode::InvalidClient, "workload_unauthenticated", "present a workload SVID"));
        };
        let bad = |d: String| ExchangeError::new(OAuthCode::InvalidRequest, "report_malformed", d);
        let batch: ReportBatch = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
        if batch.reports.len() > MAX_REPORTS {
            return Err(bad(format!("at most {MAX_REPORTS} reports in a batch")));
        }
        for (i, r) in batch.reports.iter().enumerate() {
            r.check().map_err(|e| bad(format!("reports[{i}].{e}")))?;
            if let Some(other) = r.workload.as_deref().filter(|w| *w != workload) {
                return Err(ExchangeError::new(
                    OAuthCode::AccessDenied,
                    "report_forged",
                    format!("reports[{i}] names workload {other}; a sidecar reports for itself only"),
                ));
            }
        }
        let n = batch.reports.len();
        let entries = batch.reports.iter().map(|r| Entry::reported(r, workload)).collect();
        self.ledger.append(entries).await.map_err(|e| {
            ExchangeError::new(OAuthCode::ServerError, "ledger_unavailable", format!("the reports could not be recorded: {e}"))
                .with_status(503)
        })?;
        self.metrics.reports(n as u64);
        Ok(n)
    }
}
