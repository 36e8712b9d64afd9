//! Timers as data: which items are due when, in which order, what marking them fired does,
//! how pauses, acknowledgement, priority changes and reopen change them, and their "why".

mod common;

use common::*;
use incident_sla::{
    ClockInput, ClockKind, Due, DueKind, IncidentClocks, PolicySet, Priority, Status,
};
use jiff::{SignedDuration, Timestamp};

const T0: &str = "2026-03-02T00:00:00Z";

fn at(offset: SignedDuration) -> Timestamp {
    utc(T0).checked_add(offset).expect("in range")
}

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

fn label(d: &Due) -> String {
    match d.kind {
        DueKind::Warning { clock, fraction } => format!("warn {clock} {fraction}"),
        DueKind::Breach { clock } => format!("breach {clock}"),
        DueKind::Escalation { level, .. } => format!("escalate {level}"),
    }
}

fn schedule(c: &IncidentClocks) -> Vec<(Timestamp, String)> {
    c.due().iter().map(|d| (d.at, label(d))).collect()
}

fn open_p1() -> IncidentClocks {
    IncidentClocks::start(&standard(), utc(T0), Priority::P1, "mail", "ops").expect("policy")
}

fn fire(c: &mut IncidentClocks, label_wanted: &str, when: Timestamp) {
    let due = c
        .due()
        .into_iter()
        .find(|d| label(d) == label_wanted)
        .unwrap_or_else(|| panic!("{label_wanted} is not due"));
    c.mark_fired(&due, when).expect("in order");
}

#[test]
fn given_a_new_p1_then_warnings_breaches_and_escalations_come_in_order() {
    let c = open_p1();
    let expected = vec![
        (at(secs(450)), "warn response 0.5"),
        (at(secs(675)), "warn response 0.75"),
        (at(secs(810)), "warn response 0.9"),
        (at(mins(15)), "breach response"),
        (at(hours(2)), "warn resolution 0.5"),
        (at(hours(3)), "warn resolution 0.75"),
        (at(hours(3)), "escalate 1"),
        (at(mins(216)), "warn resolution 0.9"),
        (at(hours(4)), "breach resolution"),
        (at(hours(4)), "escalate 2"),
        (at(hours(6)), "escalate 3"),
    ];
    let expected: Vec<(Timestamp, String)> = expected
        .into_iter()
        .map(|(t, l)| (t, l.to_string()))
        .collect();
    assert_eq!(schedule(&c), expected);
    assert_eq!(
        c.next_due().map(|d| label(&d)).as_deref(),
        Some("warn response 0.5")
    );
}

#[test]
fn given_a_fired_item_then_it_is_not_returned_again_and_replay_agrees() {
    let mut c = open_p1();
    fire(&mut c, "warn response 0.5", at(secs(451)));
    let labels: Vec<String> = c.due().iter().map(label).collect();
    assert!(!labels.contains(&"warn response 0.5".to_string()));
    assert_eq!(labels.len(), 10);
    let replayed = IncidentClocks::replay(
        c.binding().clone(),
        utc(T0),
        Priority::P1,
        "mail",
        "ops",
        c.inputs().to_vec(),
    )
    .expect("replay");
    assert_eq!(replayed.due(), c.due());
}

#[test]
fn given_an_acknowledgement_then_response_items_disappear() {
    let mut c = open_p1();
    c.apply(ClockInput::Acknowledged { at: at(mins(5)) })
        .expect("in order");
    assert!(
        c.due()
            .iter()
            .all(|d| d.kind.clock() == ClockKind::Resolution)
    );
    assert_eq!(c.due().len(), 7);
}

#[test]
fn given_a_pause_then_no_items_and_resume_shifts_them_by_the_pause() {
    let mut c = open_p1();
    c.apply(ClockInput::Acknowledged { at: at(mins(5)) })
        .expect("in order");
    c.apply(ClockInput::StatusChanged {
        at: at(hours(1)),
        status: Status::OnHold,
    })
    .expect("in order");
    assert!(c.due().is_empty());
    c.apply(ClockInput::StatusChanged {
        at: at(hours(3)),
        status: Status::InProgress,
    })
    .expect("in order");
    let s = schedule(&c);
    assert_eq!(
        s.first(),
        Some(&(at(hours(4)), "warn resolution 0.5".to_string()))
    );
    assert!(s.contains(&(at(hours(6)), "breach resolution".to_string())));
    assert!(s.contains(&(at(hours(8)), "escalate 3".to_string())));
}

#[test]
fn given_a_breach_then_warnings_stop_and_the_breach_stays_until_fired() {
    let mut c = open_p1();
    c.apply(ClockInput::Acknowledged { at: at(mins(5)) })
        .expect("in order");
    // Nothing fired while the service was down; an input after the breach arrives.
    c.apply(ClockInput::StatusChanged {
        at: at(mins(250)),
        status: Status::InProgress,
    })
    .expect("in order");
    let s = schedule(&c);
    assert_eq!(
        s,
        vec![
            (at(hours(3)), "escalate 1".to_string()),
            (at(hours(4)), "breach resolution".to_string()),
            (at(hours(4)), "escalate 2".to_string()),
            (at(hours(6)), "escalate 3".to_string()),
        ],
        "overdue items keep their true instants"
    );
    fire(&mut c, "breach resolution", at(mins(251)));
    fire(&mut c, "escalate 1", at(mins(251)));
    fire(&mut c, "escalate 2", at(mins(251)));
    assert_eq!(schedule(&c), vec![(at(hours(6)), "escalate 3".to_string())]);
}

#[test]
fn given_a_due_item_then_it_carries_its_why() {
    let mut c = open_p1();
    c.apply(ClockInput::Acknowledged { at: at(mins(5)) })
        .expect("in order");
    c.apply(ClockInput::StatusChanged {
        at: at(hours(1)),
        status: Status::OnHold,
    })
    .expect("in order");
    c.apply(ClockInput::StatusChanged {
        at: at(hours(2)),
        status: Status::InProgress,
    })
    .expect("in order");
    let escalation = c
        .due()
        .into_iter()
        .find(|d| label(d) == "escalate 1")
        .expect("due");
    assert_eq!(escalation.at, at(hours(4)));
    let why = &escalation.why;
    assert_eq!(why.policy, "standard");
    assert_eq!(why.policy_hash, standard().hash());
    assert_eq!(why.priority, Priority::P1);
    assert_eq!(why.clock, ClockKind::Resolution);
    assert_eq!(why.target, hours(4));
    assert_eq!(why.threshold, hours(3));
    assert_eq!(why.elapsed, hours(3));
    assert_eq!(why.calendar, "24x7");
    assert_eq!(why.paused.len(), 1);
    assert_eq!(why.paused[0].from, at(hours(1)));
    assert_eq!(why.paused[0].to, Some(at(hours(2))));
    // The why is serialisable for the event log.
    let json = serde_json::to_string(&escalation).expect("ser");
    assert_eq!(serde_json::from_str::<Due>(&json).expect("de"), escalation);
}

#[test]
fn given_a_priority_change_then_warnings_are_rearmed_for_the_new_target_but_escalations_not() {
    let mut c =
        IncidentClocks::start(&standard(), utc(T0), Priority::P2, "mail", "ops").expect("policy");
    c.apply(ClockInput::Acknowledged { at: at(mins(5)) })
        .expect("in order");
    // P2: 8h resolution. Fire the 50% warning (4h) and level 1 (6h).
    fire(&mut c, "warn resolution 0.5", at(hours(4)));
    fire(&mut c, "escalate 1", at(hours(6)));
    // Upgrade to P1 (4h) at 6h30: past 100% of the new target.
    c.apply(ClockInput::PriorityChanged {
        at: at(mins(390)),
        priority: Priority::P1,
    })
    .expect("in order");
    let s = schedule(&c);
    assert_eq!(
        s,
        vec![
            (at(mins(390)), "breach resolution".to_string()),
            (at(mins(390)), "escalate 2".to_string()),
            (at(mins(390)), "escalate 3".to_string()),
        ],
        "1.5 x 4h = 6h has passed too"
    );
    let breach = c.next_due().expect("breach");
    assert_eq!(breach.why.elapsed, mins(390));
    assert_eq!(breach.why.threshold, hours(4));
}

#[test]
fn given_an_upgrade_below_the_new_target_then_passed_warnings_are_due_at_the_change() {
    let mut c =
        IncidentClocks::start(&standard(), utc(T0), Priority::P2, "mail", "ops").expect("policy");
    c.apply(ClockInput::Acknowledged { at: at(mins(5)) })
        .expect("in order");
    c.apply(ClockInput::PriorityChanged {
        at: at(mins(150)),
        priority: Priority::P1,
    })
    .expect("in order");
    // P1 4h: 50% (2h) has passed -> due at the change instant, not in the past.
    let s = schedule(&c);
    assert_eq!(s[0], (at(mins(150)), "warn resolution 0.5".to_string()));
    assert_eq!(s[1], (at(hours(3)), "warn resolution 0.75".to_string()));
    assert_eq!(s[2], (at(hours(3)), "escalate 1".to_string()));
}

#[test]
fn given_restart_on_reopen_then_escalations_are_rearmed_for_the_new_cycle() {
    let mut c = open_p1();
    c.apply(ClockInput::Acknowledged { at: at(mins(5)) })
        .expect("in order");
    fire(&mut c, "escalate 1", at(hours(3)));
    c.apply(ClockInput::Resolved { at: at(mins(200)) })
        .expect("in order");
    assert!(c.due().is_empty(), "stopped clocks have no timers");
    c.apply(ClockInput::Reopened { at: at(hours(5)) })
        .expect("in order");
    let s = schedule(&c);
    assert!(s.contains(&(at(hours(8)), "escalate 1".to_string())));
    assert!(s.contains(&(at(hours(9)), "breach resolution".to_string())));
    assert!(c.due().iter().all(|d| d.key.cycle == 1));
}

#[test]
fn given_office_hours_then_timers_skip_nights_and_weekends() {
    let set = PolicySet::from_toml(
        r#"
[calendars.paris-office]
timezone = "Europe/Paris"
hours = { mon = "08:00-18:00", tue = "08:00-18:00", wed = "08:00-18:00", thu = "08:00-18:00", fri = "08:00-18:00" }

[[policies]]
name = "office"
calendar = "paris-office"
warn_at = [0.5]
[policies.resolution]
P3 = "2h"
[[policies.escalation]]
at = 2.0
level = 1
"#,
    )
    .expect("valid");
    let c = IncidentClocks::start(&set, paris("2026-03-06T17:40"), Priority::P3, "mail", "ops")
        .expect("policy");
    assert_eq!(
        schedule(&c),
        vec![
            (paris("2026-03-09T08:40"), "warn resolution 0.5".to_string()),
            (paris("2026-03-09T09:40"), "breach resolution".to_string()),
            (paris("2026-03-09T11:40"), "escalate 1".to_string()),
        ]
    );
}

#[test]
fn given_a_stale_fired_key_then_it_does_not_hide_a_different_item() {
    let mut c =
        IncidentClocks::start(&standard(), utc(T0), Priority::P2, "mail", "ops").expect("policy");
    let stale = c
        .due()
        .into_iter()
        .find(|d| label(d) == "warn resolution 0.9")
        .expect("due");
    c.apply(ClockInput::PriorityChanged {
        at: at(mins(1)),
        priority: Priority::P1,
    })
    .expect("in order");
    c.mark_fired(&stale, at(mins(2))).expect("in order");
    assert!(c.due().iter().any(|d| label(d) == "warn resolution 0.9"));
}
