//! Reporting helpers (pure): compliance outcomes per incident, aggregate statistics per
//! priority or any group key (count, met, breached, % met, MTTA, MTTR, p50/p90 resolution
//! time), and the what-if replay of recorded histories under another policy set.
//!
//! Conventions:
//!
//! * an incident counts as **breached** for a clock if that clock breached in any cycle, even
//!   if it was stopped afterwards; **met** if it stopped without breaching; **pending** while
//!   it still runs (or is paused) without breach; **untracked** when the policy sets no target;
//! * `% met` is `met / (met + breached) x 100`, pending incidents excluded, `None` when both
//!   are zero;
//! * MTTA/MTTR and the percentiles are measured on the chosen [`TimeBasis`]: business time as
//!   the SLA clocks count it (pauses and non-working time excluded; all resolution cycles
//!   summed) or wall-clock time from opening; only acknowledged (MTTA) or resolved (MTTR)
//!   incidents take part;
//! * percentiles use the nearest-rank method on the sorted values;
//! * incidents are grouped under their priority at the time of the report (the last one).

use crate::clock::{ClockInput, ClockState, ClockView, IncidentClocks, IncidentState};
use crate::policy::PolicySet;
use crate::types::{ClockKind, Priority};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Compliance of one clock of one incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlaResult {
    /// Stopped before its target.
    Met,
    /// Reached its target (in any cycle).
    Breached,
    /// Still running or paused, not breached.
    Pending,
    /// The policy sets no target.
    Untracked,
}

/// One clock's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockOutcome {
    /// Which clock.
    pub clock: ClockKind,
    /// Met, breached, pending or untracked.
    pub result: SlaResult,
    /// Target of the last cycle.
    pub target: Option<SignedDuration>,
    /// Business time of every cycle summed.
    pub elapsed: SignedDuration,
    /// First breach, if any.
    pub breached_at: Option<Timestamp>,
    /// When the (last cycle of the) clock stopped.
    pub stopped_at: Option<Timestamp>,
}

impl ClockOutcome {
    fn from_view(view: &ClockView) -> ClockOutcome {
        let first_breach = view
            .previous_cycles
            .iter()
            .find_map(|c| c.breached_at)
            .or(view.breached_at);
        let tracked =
            view.target.is_some() || view.previous_cycles.iter().any(|c| c.target.is_some());
        let result = if first_breach.is_some() {
            SlaResult::Breached
        } else if !tracked {
            SlaResult::Untracked
        } else if view.state == ClockState::Met {
            SlaResult::Met
        } else {
            SlaResult::Pending
        };
        ClockOutcome {
            clock: view.clock,
            result,
            target: view.target,
            elapsed: view.total_elapsed(),
            breached_at: first_breach,
            stopped_at: view.stopped_at,
        }
    }
}

/// One incident's outcome, the unit of reporting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentOutcome {
    /// Priority at the time of the report.
    pub priority: Priority,
    /// Service.
    pub service: String,
    /// Assignment group.
    pub group: String,
    /// Policy in force.
    pub policy: String,
    /// Hash of its policy set.
    pub policy_hash: String,
    /// Opening.
    pub opened_at: Timestamp,
    /// First acknowledgement.
    pub acknowledged_at: Option<Timestamp>,
    /// Latest resolution (None while open).
    pub resolved_at: Option<Timestamp>,
    /// Response clock outcome.
    pub response: ClockOutcome,
    /// Resolution clock outcome.
    pub resolution: ClockOutcome,
}

impl IncidentOutcome {
    /// Builds the outcome from a state (see [`IncidentClocks::outcome`]).
    pub fn from_state(state: &IncidentState, service: &str, group: &str) -> IncidentOutcome {
        IncidentOutcome {
            priority: state.priority,
            service: service.to_string(),
            group: group.to_string(),
            policy: state.policy.clone(),
            policy_hash: state.policy_hash.clone(),
            opened_at: state.opened_at,
            acknowledged_at: state.acknowledged_at,
            resolved_at: state.resolved_at,
            response: ClockOutcome::from_view(&state.response),
            resolution: ClockOutcome::from_view(&state.resolution),
        }
    }
}

/// How MTTA/MTTR and percentiles are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeBasis {
    /// Business time as counted by the SLA clocks (default).
    #[default]
    Business,
    /// Wall-clock time since opening.
    Wall,
}

/// Compliance counts of one clock over a group of incidents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Compliance {
    /// Incidents with a target for this clock.
    pub tracked: usize,
    /// Met.
    pub met: usize,
    /// Breached.
    pub breached: usize,
    /// Still running, not breached.
    pub pending: usize,
    /// `met / (met + breached) x 100`.
    pub pct_met: Option<f64>,
}

impl Compliance {
    fn add(&mut self, result: SlaResult) {
        match result {
            SlaResult::Met => self.met += 1,
            SlaResult::Breached => self.breached += 1,
            SlaResult::Pending => self.pending += 1,
            SlaResult::Untracked => return,
        }
        self.tracked += 1;
    }

    fn finish(&mut self) {
        let decided = self.met + self.breached;
        self.pct_met = (decided > 0).then(|| self.met as f64 * 100.0 / decided as f64);
    }
}

/// Aggregate statistics of a group of incidents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Incidents in the group.
    pub count: usize,
    /// Response clock compliance.
    pub response: Compliance,
    /// Resolution clock compliance.
    pub resolution: Compliance,
    /// Mean time to acknowledge (acknowledged incidents only).
    pub mtta: Option<SignedDuration>,
    /// Mean time to resolve (resolved incidents only).
    pub mttr: Option<SignedDuration>,
    /// Median resolution time (nearest rank).
    pub resolution_p50: Option<SignedDuration>,
    /// 90th percentile resolution time (nearest rank).
    pub resolution_p90: Option<SignedDuration>,
}

/// Statistics of a set of incidents.
pub fn summarize<'a>(
    outcomes: impl IntoIterator<Item = &'a IncidentOutcome>,
    basis: TimeBasis,
) -> Stats {
    let mut stats = Stats::default();
    let mut ack_times = Vec::new();
    let mut resolve_times = Vec::new();
    for o in outcomes {
        stats.count += 1;
        stats.response.add(o.response.result);
        stats.resolution.add(o.resolution.result);
        if let Some(ack) = o.acknowledged_at {
            ack_times.push(match basis {
                TimeBasis::Business => o.response.elapsed,
                TimeBasis::Wall => ack.duration_since(o.opened_at),
            });
        }
        if let Some(resolved) = o.resolved_at {
            resolve_times.push(match basis {
                TimeBasis::Business => o.resolution.elapsed,
                TimeBasis::Wall => resolved.duration_since(o.opened_at),
            });
        }
    }
    stats.response.finish();
    stats.resolution.finish();
    stats.mtta = mean(&ack_times);
    stats.mttr = mean(&resolve_times);
    resolve_times.sort();
    stats.resolution_p50 = percentile(&resolve_times, 50);
    stats.resolution_p90 = percentile(&resolve_times, 90);
    stats
}

/// Statistics per priority.
pub fn report_by_priority(
    outcomes: &[IncidentOutcome],
    basis: TimeBasis,
) -> BTreeMap<Priority, Stats> {
    report_by(outcomes, |o| o.priority, basis)
}

/// Statistics per arbitrary key (service, group, policy, month, ...).
pub fn report_by<K: Ord, F: Fn(&IncidentOutcome) -> K>(
    outcomes: &[IncidentOutcome],
    key: F,
    basis: TimeBasis,
) -> BTreeMap<K, Stats> {
    let mut groups: BTreeMap<K, Vec<&IncidentOutcome>> = BTreeMap::new();
    for o in outcomes {
        groups.entry(key(o)).or_default().push(o);
    }
    groups
        .into_iter()
        .map(|(k, group)| (k, summarize(group, basis)))
        .collect()
}

fn mean(values: &[SignedDuration]) -> Option<SignedDuration> {
    if values.is_empty() {
        return None;
    }
    let sum: i128 = values.iter().map(SignedDuration::as_nanos).sum();
    let n = i128::try_from(values.len()).ok()?;
    SignedDuration::try_from_nanos_i128(sum / n)
}

/// Nearest rank: the value at position ceil(p/100 x n) (1-based) of the sorted values.
fn percentile(sorted: &[SignedDuration], p: usize) -> Option<SignedDuration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// A recorded incident: what is needed to replay it under any policy set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentHistory {
    /// Incident id (only reported back).
    pub id: String,
    /// Opening instant.
    pub opened_at: Timestamp,
    /// Priority at opening.
    pub priority: Priority,
    /// Service.
    pub service: String,
    /// Assignment group.
    pub group: String,
    /// Inputs in time order (`TimerFired` inputs are ignored by the what-if).
    pub inputs: Vec<ClockInput>,
}

/// An incident the what-if could not replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhatIfSkip {
    /// Incident id.
    pub id: String,
    /// Why (no matching policy, inputs out of order).
    pub reason: String,
}

/// Result of a what-if replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhatIfReport {
    /// Hash of the policy set replayed under.
    pub policy_hash: String,
    /// Statistics per priority.
    pub per_priority: BTreeMap<Priority, Stats>,
    /// Each replayed incident's outcome, with its id, in input order.
    pub outcomes: Vec<(String, IncidentOutcome)>,
    /// Incidents that could not be replayed.
    pub skipped: Vec<WhatIfSkip>,
}

/// Replays recorded histories under another policy set (policy selected afresh per incident)
/// and reports met/breached per priority as of `as_of`. Timer markers of the original run are
/// dropped: they only affect which timers are offered, never compliance.
pub fn what_if(
    histories: &[IncidentHistory],
    policies: &PolicySet,
    as_of: Timestamp,
    basis: TimeBasis,
) -> WhatIfReport {
    let mut outcomes = Vec::new();
    let mut skipped = Vec::new();
    for h in histories {
        let replayed = policies
            .bind(&h.service, &h.group, h.priority)
            .and_then(|binding| {
                IncidentClocks::replay(
                    binding,
                    h.opened_at,
                    h.priority,
                    &h.service,
                    &h.group,
                    h.inputs
                        .iter()
                        .filter(|i| !matches!(i, ClockInput::TimerFired { .. }))
                        .cloned(),
                )
            });
        match replayed {
            Ok(clocks) => outcomes.push((h.id.clone(), clocks.outcome(as_of))),
            Err(e) => skipped.push(WhatIfSkip {
                id: h.id.clone(),
                reason: e.to_string(),
            }),
        }
    }
    let plain: Vec<IncidentOutcome> = outcomes.iter().map(|(_, o)| o.clone()).collect();
    WhatIfReport {
        policy_hash: policies.hash().to_string(),
        per_priority: report_by_priority(&plain, basis),
        outcomes,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<SignedDuration> = (1..=10).map(SignedDuration::from_mins).collect();
        assert_eq!(percentile(&v, 50), Some(SignedDuration::from_mins(5)));
        assert_eq!(percentile(&v, 90), Some(SignedDuration::from_mins(9)));
        assert_eq!(percentile(&v[..1], 90), Some(SignedDuration::from_mins(1)));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn mean_of_durations() {
        let v = [SignedDuration::from_mins(10), SignedDuration::from_mins(20)];
        assert_eq!(mean(&v), Some(SignedDuration::from_mins(15)));
        assert_eq!(mean(&[]), None);
    }
}
