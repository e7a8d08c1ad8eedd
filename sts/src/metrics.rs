//! Prometheus metrics for the admin listener.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::sync::Locked;

/// Upper bounds of the exchange latency histogram, in seconds.
const BUCKETS: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Default)]
pub struct Metrics {
    decisions: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
    registry_reloads: Mutex<BTreeMap<&'static str, u64>>,
    revocations: Mutex<BTreeMap<&'static str, u64>>,
    pub registry_agents: AtomicU64,
    pub signing_keys: AtomicU64,
    reports: AtomicU64,
}

impl Metrics {
    pub fn decision(&self, decision: &'static str, reason: &'static str, took: Duration) {
        *self.decisions.locked().entry((decision, reason)).or_default() += 1;
        let secs = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_nanos.fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn revocation(&self, kind: &'static str) {
        *self.revocations.locked().entry(kind).or_default() += 1;
    }

    /// Decisions the sidecars reported, taken into the ledger.
    pub fn reports(&self, n: u64) {
        self.reports.fetch_add(n, Ordering::Relaxed);
    }

    pub fn registry_reload(&self, result: &'static str) {
        *self.registry_reloads.locked().entry(result).or_default() += 1;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP actorchain_sts_decisions_total Token exchange decisions by outcome and reason.\n");
        out.push_str("# TYPE actorchain_sts_decisions_total counter\n");
        for ((d, r), n) in self.decisions.locked().iter() {
            let _ = writeln!(out, "actorchain_sts_decisions_total{{decision=\"{d}\",reason=\"{r}\"}} {n}");
        }
        out.push_str("# HELP actorchain_sts_exchange_duration_seconds Time to decide and sign one exchange.\n");
        out.push_str("# TYPE actorchain_sts_exchange_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "actorchain_sts_exchange_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "actorchain_sts_exchange_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "actorchain_sts_exchange_duration_seconds_sum {sum}");
        let _ = writeln!(out, "actorchain_sts_exchange_duration_seconds_count {count}");
        out.push_str("# TYPE actorchain_sts_registry_reloads_total counter\n");
        for (r, n) in self.registry_reloads.locked().iter() {
            let _ = writeln!(out, "actorchain_sts_registry_reloads_total{{result=\"{r}\"}} {n}");
        }
        out.push_str("# HELP actorchain_sts_revocations_total Revocations made, by kind.\n");
        out.push_str("# TYPE actorchain_sts_revocations_total counter\n");
        for (k, n) in self.revocations.locked().iter() {
            let _ = writeln!(out, "actorchain_sts_revocations_total{{kind=\"{k}\"}} {n}");
        }
        out.push_str("# HELP actorchain_sts_reports_total Decisions the sidecars reported into the ledger.\n");
        out.push_str("# TYPE actorchain_sts_reports_total counter\n");
        let _ = writeln!(out, "actorchain_sts_reports_total {}", self.reports.load(Ordering::Relaxed));
        out.push_str("# TYPE actorchain_sts_registry_agents gauge\n");
        let _ = writeln!(out, "actorchain_sts_registry_agents {}", self.registry_agents.load(Ordering::Relaxed));
        out.push_str("# TYPE actorchain_sts_signing_keys gauge\n");
        let _ = writeln!(out, "actorchain_sts_signing_keys {}", self.signing_keys.load(Ordering::Relaxed));
        out
    }
}
