//! The notifier's counters, read by `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Input events recorded (first time seen).
    pub inputs_processed: AtomicU64,
    /// Redelivered input events skipped because their id was already processed.
    pub inputs_duplicate: AtomicU64,
    /// Input events dead-lettered.
    pub inputs_rejected: AtomicU64,
    /// Valid envelopes of types the notifier does not act on.
    pub inputs_ignored: AtomicU64,
    pub events_appended: AtomicU64,
    pub append_batches: AtomicU64,
    pub append_failures: AtomicU64,
    /// Delivery attempts by (channel kind, result).
    attempts: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    pub fn attempt(&self, kind: &str, result: &'static str) {
        if let Ok(mut m) = self.attempts.lock() {
            *m.entry((kind.to_owned(), result)).or_insert(0) += 1;
        }
    }

    pub fn attempts_snapshot(&self) -> Vec<((String, &'static str), u64)> {
        self.attempts
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }
}

pub fn counter(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
