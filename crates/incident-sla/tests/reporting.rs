//! Reporting: compliance counts, MTTA/MTTR, percentiles per priority and per any key, and
//! what-if replays under another policy set.

mod common;

use common::*;
use incident_sla::{
    ClockInput, IncidentClocks, IncidentHistory, IncidentOutcome, PolicySet, Priority, SlaResult,
    Status, TimeBasis, report_by, report_by_priority, what_if,
};
use jiff::{SignedDuration, Timestamp};

const T0: &str = "2026-03-02T00:00:00Z";

fn at(offset: SignedDuration) -> Timestamp {
    utc(T0).checked_add(offset).expect("in range")
}

/// Five incidents opened at T0 under the standard policy (24x7).
fn histories() -> Vec<IncidentHistory> {
    let h = |id: &str, p, service: &str, inputs: Vec<ClockInput>| IncidentHistory {
        id: id.into(),
        opened_at: utc(T0),
        priority: p,
        service: service.into(),
        group: "ops".into(),
        inputs,
    };
    use ClockInput::*;
    vec![
        // A: P1, ack 10m, resolved 3h: both met.
        h(
            "A",
            Priority::P1,
            "mail",
            vec![
                Acknowledged { at: at(mins(10)) },
                Resolved { at: at(hours(3)) },
            ],
        ),
        // B: P1, ack 20m (breached), resolved 5h (breached, then stopped).
        h(
            "B",
            Priority::P1,
            "mail",
            vec![
                Acknowledged { at: at(mins(20)) },
                Resolved { at: at(hours(5)) },
            ],
        ),
        // C: P1, ack 5m, on hold 1h-2h, resolved at 4h30 wall = 3h30 business: met.
        h(
            "C",
            Priority::P1,
            "db",
            vec![
                Acknowledged { at: at(mins(5)) },
                StatusChanged {
                    at: at(hours(1)),
                    status: Status::OnHold,
                },
                StatusChanged {
                    at: at(hours(2)),
                    status: Status::InProgress,
                },
                Resolved { at: at(mins(270)) },
            ],
        ),
        // D: P2, ack 40m (breached: 30m), resolved 6h (met: 8h).
        h(
            "D",
            Priority::P2,
            "db",
            vec![
                Acknowledged { at: at(mins(40)) },
                Resolved { at: at(hours(6)) },
            ],
        ),
        // E: P2, never acknowledged, still open.
        h("E", Priority::P2, "db", vec![]),
    ]
}

fn outcomes(set: &PolicySet, as_of: Timestamp) -> Vec<IncidentOutcome> {
    histories()
        .iter()
        .map(|h| {
            IncidentClocks::replay(
                set.bind(&h.service, &h.group, h.priority).expect("policy"),
                h.opened_at,
                h.priority,
                &h.service,
                &h.group,
                h.inputs.clone(),
            )
            .expect("replay")
            .outcome(as_of)
        })
        .collect()
}

#[test]
fn given_finished_incidents_then_per_priority_counts_and_percentages() {
    let report = report_by_priority(&outcomes(&standard(), at(hours(6))), TimeBasis::Business);
    let p1 = &report[&Priority::P1];
    assert_eq!(p1.count, 3);
    assert_eq!((p1.response.met, p1.response.breached), (2, 1));
    assert_eq!((p1.resolution.met, p1.resolution.breached), (2, 1));
    let pct = p1.response.pct_met.expect("decided");
    assert!((pct - 200.0 / 3.0).abs() < 1e-9);

    let p2 = &report[&Priority::P2];
    assert_eq!(p2.count, 2);
    assert_eq!(
        (p2.response.met, p2.response.breached),
        (0, 2),
        "E never acked"
    );
    assert_eq!(p2.response.pct_met, Some(0.0));
    assert_eq!(
        (
            p2.resolution.met,
            p2.resolution.breached,
            p2.resolution.pending
        ),
        (1, 0, 1)
    );
    assert_eq!(p2.resolution.pct_met, Some(100.0));
    assert!(!report.contains_key(&Priority::P3));
}

#[test]
fn given_finished_incidents_then_mtta_mttr_and_percentiles_on_business_time() {
    let report = report_by_priority(&outcomes(&standard(), at(hours(6))), TimeBasis::Business);
    let p1 = &report[&Priority::P1];
    assert_eq!(
        p1.mtta,
        Some(SignedDuration::from_secs((10 + 20 + 5) * 60 / 3))
    );
    assert_eq!(p1.mttr, Some(mins((180 + 300 + 210) / 3)));
    assert_eq!(p1.resolution_p50, Some(mins(210)));
    assert_eq!(p1.resolution_p90, Some(hours(5)));
    let p2 = &report[&Priority::P2];
    assert_eq!(p2.mtta, Some(mins(40)));
    assert_eq!(p2.mttr, Some(hours(6)));
}

#[test]
fn given_wall_clock_basis_then_pauses_are_included() {
    let report = report_by_priority(&outcomes(&standard(), at(hours(6))), TimeBasis::Wall);
    assert_eq!(
        report[&Priority::P1].mttr,
        Some(mins((180 + 300 + 270) / 3))
    );
}

#[test]
fn given_any_group_key_then_stats_per_key() {
    let by_service = report_by(
        &outcomes(&standard(), at(hours(6))),
        |o| o.service.clone(),
        TimeBasis::Business,
    );
    assert_eq!(by_service["mail"].count, 2);
    assert_eq!(by_service["db"].count, 3);
    assert_eq!(by_service["mail"].resolution.breached, 1);
}

#[test]
fn given_a_breach_then_met_then_the_outcome_is_breached() {
    let o = &outcomes(&standard(), at(hours(6)))[1];
    assert_eq!(o.response.result, SlaResult::Breached);
    assert_eq!(o.resolution.result, SlaResult::Breached);
    assert_eq!(o.resolution.breached_at, Some(at(hours(4))));
    assert_eq!(o.resolution.stopped_at, Some(at(hours(5))));
}

#[test]
fn given_histories_when_replayed_under_a_stricter_policy_then_more_breaches() {
    let strict = PolicySet::from_toml(
        r#"
[[policies]]
name = "strict"
[policies.response]
P1 = "6m"
P2 = "1h"
[policies.resolution]
P1 = "2h"
P2 = "4h"
"#,
    )
    .expect("valid");
    let mut hist = histories();
    // A timer marker from the original run must not disturb the replay.
    hist[0].inputs.insert(
        0,
        ClockInput::TimerFired {
            at: at(mins(1)),
            key: open_key(),
        },
    );
    let report = what_if(&hist, &strict, at(hours(6)), TimeBasis::Business);
    assert_eq!(report.policy_hash, strict.hash());
    assert!(report.skipped.is_empty());
    let p1 = &report.per_priority[&Priority::P1];
    assert_eq!(
        (p1.response.met, p1.response.breached),
        (1, 2),
        "only C acked within 6m"
    );
    assert_eq!((p1.resolution.met, p1.resolution.breached), (0, 3));
    let p2 = &report.per_priority[&Priority::P2];
    assert_eq!((p2.response.met, p2.response.breached), (1, 1));
    assert_eq!(
        (p2.resolution.met, p2.resolution.breached),
        (0, 2),
        "D took 6h, E open 6h"
    );
    assert_eq!(report.outcomes[0].0, "A");
    assert_eq!(report.outcomes[0].1.policy, "strict");
}

#[test]
fn given_histories_when_no_policy_matches_some_then_they_are_skipped_with_a_reason() {
    let only_mail = PolicySet::from_toml(
        r#"
[[policies]]
name = "mail-only"
[policies.match]
services = ["mail"]
[policies.resolution]
P1 = "1d"
"#,
    )
    .expect("valid");
    let report = what_if(&histories(), &only_mail, at(hours(6)), TimeBasis::Business);
    assert_eq!(report.outcomes.len(), 2);
    assert_eq!(report.skipped.len(), 3);
    assert!(report.skipped[0].reason.contains("no policy matches"));
    let p1 = &report.per_priority[&Priority::P1];
    assert_eq!((p1.resolution.met, p1.resolution.breached), (2, 0));
    assert_eq!(p1.response.tracked, 0, "no response targets: untracked");
    assert_eq!(p1.response.pct_met, None);
}

fn open_key() -> incident_sla::DueKey {
    IncidentClocks::start(&standard(), utc(T0), Priority::P1, "mail", "ops")
        .expect("policy")
        .due()
        .remove(0)
        .key
}
