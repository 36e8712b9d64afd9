//! Client-side verification: recomputes each service's hash chain from the records themselves
//! (never taking a server's word for it), and checks the fields the hash does not cover against
//! the bytes it does. Pure: the records come from a live `ReadLog` or from an export file.
//!
//! Per service, in the order the records are given:
//! * the chain: seq 1, 2, 3… without a gap, each `prev_hash` equal to the previous `hash`
//!   (genesis: 32 zero bytes), each `hash` = `sha256(prev_hash || event bytes)`
//!   ([`incident_eventlog::verify_chain`]);
//! * `event_id` equal to the envelope's `id`, `stream` equal to its `subject` (or
//!   `input.<subject>` for a recorded input), `version` counting 1, 2, 3… within each stream;
//! * in an export, the parsed `event` saying the same as `event_raw`.
//!
//! The first problem (lowest seq) of each service is reported with the reason.

use std::collections::{BTreeMap, HashMap};

use incident_eventlog::{Head, verify_chain};
use serde::Serialize;

use crate::export::Exported;
use crate::record::{AuditRecord, service_rank};

/// The first record of a service's log that does not match, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub service: String,
    pub seq: u64,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} record {}: {}", self.service, self.seq, self.reason)
    }
}

/// The verdict on one service's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub service: String,
    /// Records checked.
    pub records: u64,
    /// The head the chain reaches (seq and hex hash) when intact.
    pub head_seq: u64,
    pub head_hash: String,
    /// The first record that does not match, when one does not.
    pub problem: Option<Problem>,
}

impl ChainReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Verifies the records of every service in `records` (grouped by service, each group in the
/// order given). Reports come in service order (intake, SLA, notifier, then others by name).
pub fn verify_records(records: &[AuditRecord]) -> Vec<ChainReport> {
    verify_with(records.iter().map(|r| (r, None)))
}

/// Verifies an export read back with [`crate::export::parse`].
pub fn verify_export(exported: &[Exported]) -> Vec<ChainReport> {
    verify_with(exported.iter().map(|e| {
        let why = e.event_mismatch.then(|| {
            format!(
                "its parsed `event` does not say the same as `event_raw` (line {})",
                e.line
            )
        });
        (&e.record, why)
    }))
}

/// A record and, for an export, why its readable copy does not match.
type Checked<'a> = (&'a AuditRecord, Option<String>);

fn verify_with<'a>(
    items: impl Iterator<Item = (&'a AuditRecord, Option<String>)>,
) -> Vec<ChainReport> {
    let mut groups: BTreeMap<(usize, String), Vec<Checked<'a>>> = BTreeMap::new();
    for (r, why) in items {
        groups
            .entry((service_rank(&r.service), r.service.clone()))
            .or_default()
            .push((r, why));
    }
    groups
        .into_iter()
        .map(|((_, service), recs)| verify_service(service, &recs))
        .collect()
}

fn verify_service(service: String, recs: &[Checked<'_>]) -> ChainReport {
    let mut problems: Vec<(u64, String)> = Vec::new();
    let chain = verify_chain(Head::GENESIS, recs.iter().map(|(r, _)| r.record.clone()));
    let head = match chain {
        Ok(h) => h,
        Err(d) => {
            problems.push((d.seq, d.reason));
            Head::GENESIS
        }
    };
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for (r, why) in recs {
        let rec = &r.record;
        if let Some(why) = why {
            problems.push((rec.seq, why.clone()));
        }
        let expected = versions.entry(rec.stream.as_str()).or_insert(0);
        *expected += 1;
        if rec.version != *expected {
            problems.push((
                rec.seq,
                format!(
                    "version {} of stream {}, but the stream's previous record is version {}",
                    rec.version,
                    rec.stream,
                    *expected - 1
                ),
            ));
            *expected = rec.version;
        }
        match &r.envelope {
            None => problems.push((rec.seq, "its event is not a CloudEvents envelope".into())),
            Some(env) => {
                if env.id != rec.event_id {
                    problems.push((
                        rec.seq,
                        format!(
                            "event_id {} does not match the event's id {}",
                            rec.event_id, env.id
                        ),
                    ));
                }
                let input = rec.stream.strip_prefix("input.");
                if rec.stream != env.subject && input != Some(env.subject.as_str()) {
                    problems.push((
                        rec.seq,
                        format!(
                            "stream {} does not match the event's subject {}",
                            rec.stream, env.subject
                        ),
                    ));
                }
            }
        }
    }
    let problem = problems
        .into_iter()
        .min_by_key(|(seq, _)| *seq)
        .map(|(seq, reason)| Problem {
            service: service.clone(),
            seq,
            reason,
        });
    let (head_seq, head_hash) = if problem.is_none() {
        (head.seq, head.hash_hex())
    } else {
        (0, String::new())
    };
    ChainReport {
        service,
        records: recs.len() as u64,
        head_seq,
        head_hash,
        problem,
    }
}
