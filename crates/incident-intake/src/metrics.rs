//! Intake's counters, written in the Prometheus text format on `/metrics`.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub events_appended: AtomicU64,
    pub append_batches: AtomicU64,
    commands: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    pub fn command(&self, command: &'static str, result: &'static str) {
        if let Ok(mut m) = self.commands.lock() {
            *m.entry((command, result)).or_default() += 1;
        }
    }

    pub fn commands_snapshot(&self) -> Vec<((&'static str, &'static str), u64)> {
        self.commands
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }
}

pub fn counter(v: &AtomicU64) -> u64 {
    v.load(Ordering::Relaxed)
}
