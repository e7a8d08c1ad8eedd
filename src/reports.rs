//! Decisions on their way to the STS's ledger. Each worker keeps the decision lines its filters
//! made in a bounded buffer (never waiting on the STS: the request path only appends a line it
//! built for the audit log anyway); the root context sends them in batches on its timer and keeps
//! a batch until the STS has taken it, so an STS that is down loses nothing until the buffer is
//! full, and what does not fit is counted. A decision made again about the same token (the same
//! caller's requests, the same cached exchange) before the line went out is counted on that line
//! (`"count"`), not built and sent again.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actorchain_token::wire::MAX_REPORTS;

/// How a sidecar reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportsConfig {
    pub enabled: bool,
    /// Decision lines held per worker while the STS is unreachable; more are dropped and counted.
    pub max_buffered: usize,
    /// How often a batch goes out (sooner when `max_batch` lines are waiting).
    pub flush: Duration,
    pub max_batch: usize,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig { enabled: true, max_buffered: 10_000, flush: Duration::from_millis(1000), max_batch: 200.min(MAX_REPORTS) }
    }
}

/// A line waiting to go, and how many times its decision was made.
#[derive(Debug)]
struct Queued {
    line: String,
    count: u64,
}

#[derive(Debug, Default)]
pub struct Reports {
    pub cfg: ReportsConfig,
    queue: VecDeque<Queued>,
    /// Where each repeatable decision's line is queued, by its key: the line's sequence number
    /// (`base` is the front's). A line that has left the queue is no longer counted on.
    repeats: HashMap<String, u64>,
    base: u64,
    /// The batch sent and not yet taken by the STS: sent again until it is.
    sending: Vec<String>,
    pub in_flight: bool,
    last_attempt_ms: u64,
    /// The last batch was not taken: wait a whole interval before trying again.
    retrying: bool,
    /// Lines dropped because the buffer was full, ever, and as last counted in a metric.
    pub dropped: u64,
    pub dropped_counted: u64,
}

impl Reports {
    pub fn new(cfg: ReportsConfig) -> Reports {
        Reports { cfg, ..Reports::default() }
    }

    /// Queues one decision line (JSON), made `count` times; with `repeat_key`, the same decision
    /// made again is counted on it (`repeat`). False, and counted, when the buffer is full.
    pub fn push(&mut self, line: &str, repeat_key: Option<&str>, count: u64) -> bool {
        if self.queue.len() + self.sending.len() >= self.cfg.max_buffered {
            self.dropped += count;
            return false;
        }
        if let Some(key) = repeat_key {
            self.repeats.insert(key.to_string(), self.base + self.queue.len() as u64);
        }
        self.queue.push_back(Queued { line: line.to_string(), count });
        true
    }

    /// Counts the decision under `key` once more on its queued line; false when no line of it
    /// waits (then it is pushed anew).
    pub fn repeat(&mut self, key: &str) -> bool {
        let Some(seq) = self.repeats.get(key) else { return false };
        match seq.checked_sub(self.base).and_then(|at| self.queue.get_mut(at as usize)) {
            Some(q) => {
                q.count += 1;
                true
            }
            None => false,
        }
    }

    /// Every queued line with its count, leaving the queue empty (how the native build's workers
    /// hand their lines to the one root that sends them).
    pub fn take(&mut self) -> Vec<(String, u64)> {
        self.base += self.queue.len() as u64;
        self.repeats.clear();
        self.queue.drain(..).map(|q| (q.line, q.count)).collect()
    }

    pub fn len(&self) -> usize {
        self.queue.len() + self.sending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a batch should go now.
    pub fn due(&self, now_ms: u64) -> bool {
        self.cfg.enabled
            && !self.in_flight
            && !self.is_empty()
            && (now_ms.saturating_sub(self.last_attempt_ms) >= self.cfg.flush.as_millis() as u64
                || !self.retrying && self.queue.len() >= self.cfg.max_batch)
    }

    /// The next batch's body, `{"reports":[...]}`: the unacknowledged one again, or the oldest
    /// queued lines. Marks it in flight.
    pub fn next_batch(&mut self, now_ms: u64) -> Vec<u8> {
        if self.sending.is_empty() {
            let n = self.queue.len().min(self.cfg.max_batch);
            self.sending.extend(self.queue.drain(..n).map(Queued::into_line));
            self.base += n as u64;
            let base = self.base;
            self.repeats.retain(|_, seq| *seq >= base);
        }
        self.in_flight = true;
        self.last_attempt_ms = now_ms;
        let mut body = String::with_capacity(16 + self.sending.iter().map(|l| l.len() + 1).sum::<usize>());
        body.push_str("{\"reports\":[");
        body.push_str(&self.sending.join(","));
        body.push_str("]}");
        body.into_bytes()
    }

    /// What became of the batch in flight; how many lines left the buffer with it.
    pub fn answered(&mut self, outcome: Sent) -> usize {
        self.in_flight = false;
        self.retrying = outcome == Sent::Failed;
        match outcome {
            Sent::Failed => 0,
            Sent::Taken | Sent::Rejected => {
                let n = self.sending.len();
                self.sending.clear();
                n
            }
        }
    }
}

impl Queued {
    /// The line as sent: a decision made more than once says how often (`"count"`).
    fn into_line(self) -> String {
        match (self.count, self.line.strip_suffix('}')) {
            (2.., Some(open)) => format!("{open},\"count\":{}}}", self.count),
            _ => self.line,
        }
    }
}

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// In the ledger.
    Taken,
    /// Refused as it is (malformed): sending it again cannot help, so it is dropped, and counted.
    Rejected,
    /// Not answered, or not now (STS down, 5xx, 429): sent again after an interval.
    Failed,
}

impl Sent {
    /// The outcome an answer's status means.
    pub fn of(status: Option<u32>) -> Sent {
        match status {
            Some(200) => Sent::Taken,
            Some(429) => Sent::Failed,
            Some(400..=499) => Sent::Rejected,
            _ => Sent::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(max_buffered: usize, max_batch: usize) -> Reports {
        Reports::new(ReportsConfig { enabled: true, max_buffered, flush: Duration::from_millis(1000), max_batch })
    }

    #[test]
    fn batches_keep_what_was_not_taken_and_count_what_did_not_fit() {
        let mut r = reports(4, 2);
        assert!(!r.due(5000), "nothing to send");
        for i in 0..5 {
            r.push(&format!("{{\"n\":{i}}}"), None, 1);
        }
        assert_eq!((r.len(), r.dropped), (4, 1));
        assert!(r.due(0), "a full batch goes at once");
        assert_eq!(r.next_batch(0), br#"{"reports":[{"n":0},{"n":1}]}"#.to_vec());
        assert!(!r.due(5000), "one batch at a time");
        // Not taken: the same batch again, later.
        assert_eq!(r.answered(Sent::Failed), 0);
        assert!(!r.due(500), "after a failure, a whole interval passes first");
        assert!(r.due(1000));
        assert_eq!(r.next_batch(1000), br#"{"reports":[{"n":0},{"n":1}]}"#.to_vec());
        assert_eq!(r.answered(Sent::Taken), 2);
        assert_eq!(r.next_batch(2000), br#"{"reports":[{"n":2},{"n":3}]}"#.to_vec());
        assert_eq!(r.answered(Sent::Rejected), 2, "a batch refused as it is goes");
        assert!(r.is_empty());
        assert_eq!(
            [Sent::of(Some(200)), Sent::of(Some(400)), Sent::of(Some(429)), Sent::of(Some(503)), Sent::of(None)],
            [Sent::Taken, Sent::Rejected, Sent::Failed, Sent::Failed, Sent::Failed]
        );
        let mut off = Reports::new(ReportsConfig { enabled: false, ..ReportsConfig::default() });
        off.push("{}", None, 1);
        assert!(!off.due(10_000));
    }

    #[test]
    fn a_decision_made_again_is_counted_on_its_line_until_the_line_goes() {
        let mut r = reports(3, 10);
        assert!(!r.repeat("k"), "nothing queued yet");
        r.push(r#"{"n":"k"}"#, Some("k"), 1);
        assert!(r.repeat("k") && r.repeat("k"));
        r.push(r#"{"n":"other"}"#, None, 1);
        assert_eq!(r.len(), 2, "repeats take no room");
        assert_eq!(r.next_batch(0), br#"{"reports":[{"n":"k","count":3},{"n":"other"}]}"#.to_vec());
        // Its line has gone: the next one is a line of its own.
        assert!(!r.repeat("k"));
        assert_eq!(r.answered(Sent::Taken), 2);
        r.push(r#"{"n":"k"}"#, Some("k"), 1);
        assert!(r.repeat("k"));
        // A full buffer drops a decision with all the times it was made.
        r.push("{}", None, 1);
        r.push("{}", None, 1);
        assert!(!r.push("{}", None, 5));
        assert_eq!(r.dropped, 5);
        assert_eq!(r.take(), vec![(r#"{"n":"k"}"#.to_string(), 2), ("{}".to_string(), 1), ("{}".to_string(), 1)]);
        assert!(!r.repeat("k"));
    }
}
