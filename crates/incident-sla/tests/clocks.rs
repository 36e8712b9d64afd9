//! The per-incident clocks: met and breached, pauses, priority changes, reopen, status-only
//! feeding, replay and snapshots.

mod common;

use common::*;
use incident_sla::{
    ClockError, ClockInput, ClockState, IncidentClocks, PausedInterval, PolicySet, Priority, Status,
};
use jiff::{SignedDuration, Timestamp};

const T0: &str = "2026-03-02T00:00:00Z"; // a Monday

fn at(offset: SignedDuration) -> Timestamp {
    utc(T0).checked_add(offset).expect("in range")
}

fn open_standard(priority: Priority) -> IncidentClocks {
    IncidentClocks::start(&standard(), utc(T0), priority, "mail", "ops").expect("policy")
}

fn ack(c: &mut IncidentClocks, t: Timestamp) {
    c.apply(ClockInput::Acknowledged { at: t })
        .expect("in order");
}

fn status(c: &mut IncidentClocks, t: Timestamp, s: Status) {
    c.apply(ClockInput::StatusChanged { at: t, status: s })
        .expect("in order");
}

fn resolve(c: &mut IncidentClocks, t: Timestamp) {
    c.apply(ClockInput::Resolved { at: t }).expect("in order");
}

fn reopen(c: &mut IncidentClocks, t: Timestamp) {
    c.apply(ClockInput::Reopened { at: t }).expect("in order");
}

fn priority(c: &mut IncidentClocks, t: Timestamp, p: Priority) {
    c.apply(ClockInput::PriorityChanged { at: t, priority: p })
        .expect("in order");
}

// --- met and breached ----------------------------------------------------------------------------

#[test]
fn given_p1_when_acknowledged_within_15m_then_response_is_met() {
    let mut c = open_standard(Priority::P1);
    ack(&mut c, at(mins(10)));
    let s = c.state_at(at(hours(1))).response;
    assert_eq!(s.state, ClockState::Met);
    assert_eq!(s.elapsed, mins(10));
    assert_eq!(s.remaining, Some(mins(5)));
    assert_eq!(s.stopped_at, Some(at(mins(10))));
    assert_eq!(s.breached_at, None);
    assert_eq!(s.due_at, None);
}

#[test]
fn given_p1_when_acknowledged_after_15m_then_breached_then_stopped() {
    let mut c = open_standard(Priority::P1);
    ack(&mut c, at(mins(20)));
    let s = c.state_at(at(hours(1))).response;
    assert_eq!(s.state, ClockState::Breached);
    assert_eq!(s.breached_at, Some(at(mins(15))));
    assert_eq!(s.stopped_at, Some(at(mins(20))));
    assert_eq!(s.remaining, Some(mins(-5)));
    assert!(s.ever_breached());
}

#[test]
fn given_a_running_clock_then_its_state_is_computable_at_any_instant() {
    let c = open_standard(Priority::P1);
    let s = c.state_at(at(mins(6)));
    assert_eq!(s.response.state, ClockState::Running);
    assert_eq!(s.response.elapsed, mins(6));
    assert_eq!(s.response.remaining, Some(mins(9)));
    assert_eq!(s.response.due_at, Some(at(mins(15))));
    assert_eq!(s.resolution.due_at, Some(at(hours(4))));
    // Without any input, the breach is visible as soon as the deadline has passed.
    let later = c.state_at(at(mins(16)));
    assert_eq!(later.response.state, ClockState::Breached);
    assert_eq!(later.response.breached_at, Some(at(mins(15))));
    assert_eq!(later.response.remaining, Some(mins(-1)));
}

#[test]
fn given_an_acknowledgement_exactly_at_the_deadline_then_it_counts_as_breached() {
    let mut c = open_standard(Priority::P1);
    ack(&mut c, at(mins(15)));
    assert_eq!(
        c.state_at(at(hours(1))).response.state,
        ClockState::Breached
    );
}

#[test]
fn given_an_unacknowledged_incident_when_resolved_then_response_is_met_at_resolution() {
    let mut c = open_standard(Priority::P3);
    resolve(&mut c, at(mins(30)));
    let s = c.state_at(at(hours(2)));
    assert_eq!(s.response.state, ClockState::Met);
    assert_eq!(s.response.stopped_at, Some(at(mins(30))));
    assert_eq!(s.resolution.state, ClockState::Met);
    assert_eq!(s.acknowledged_at, None);
    assert_eq!(s.status, Status::Resolved);
}

#[test]
fn given_a_priority_without_target_then_the_clock_never_breaches() {
    let mut c = open_standard(Priority::P5);
    let s = c.state_at(at(hours(1000)));
    assert_eq!(s.resolution.state, ClockState::Running);
    assert_eq!(s.resolution.target, None);
    assert_eq!(s.resolution.due_at, None);
    assert!(c.due().is_empty());
    resolve(&mut c, at(hours(1001)));
    assert_eq!(
        c.state_at(at(hours(1002))).resolution.state,
        ClockState::Met
    );
}

// --- pauses ----------------------------------------------------------------------------------------

#[test]
fn given_24x7_when_on_hold_overnight_then_the_night_is_not_counted() {
    // P3: 8h resolution. Open 15:00, on hold 18:00 (3h), back at 08:00 next day.
    let open = utc("2026-03-02T15:00:00Z");
    let mut c = IncidentClocks::start(&standard(), open, Priority::P3, "mail", "ops").expect("p");
    ack(&mut c, utc("2026-03-02T15:05:00Z"));
    status(&mut c, utc("2026-03-02T18:00:00Z"), Status::OnHold);
    let night = c.state_at(utc("2026-03-03T02:00:00Z")).resolution;
    assert_eq!(night.state, ClockState::Paused);
    assert_eq!(night.elapsed, hours(3));
    assert_eq!(night.due_at, None);
    assert_eq!(night.paused_since, Some(utc("2026-03-02T18:00:00Z")));
    status(&mut c, utc("2026-03-03T08:00:00Z"), Status::InProgress);
    let morning = c.state_at(utc("2026-03-03T08:00:00Z")).resolution;
    assert_eq!(morning.state, ClockState::Running);
    assert_eq!(morning.elapsed, hours(3));
    assert_eq!(morning.due_at, Some(utc("2026-03-03T13:00:00Z")));
    assert_eq!(
        morning.paused,
        vec![PausedInterval {
            from: utc("2026-03-02T18:00:00Z"),
            to: Some(utc("2026-03-03T08:00:00Z")),
            status: Status::OnHold,
        }]
    );
}

#[test]
fn given_office_hours_when_on_hold_across_the_night_then_due_moves_by_the_pause_only() {
    // Office P3: 8h resolution on 08:00-18:00 Paris. Open Mon 16:00, hold 17:00, resume Tue 10:00.
    let set = office("restart");
    let mut c = IncidentClocks::start(&set, paris("2026-03-09T16:00"), Priority::P3, "mail", "ops")
        .expect("policy");
    ack(&mut c, paris("2026-03-09T16:10"));
    status(&mut c, paris("2026-03-09T17:00"), Status::OnHold);
    status(&mut c, paris("2026-03-10T10:00"), Status::InProgress);
    let s = c.state_at(paris("2026-03-10T10:00")).resolution;
    assert_eq!(s.elapsed, hours(1));
    // Without the pause it would be Tue 15:00; with it, 7h from Tue 10:00.
    assert_eq!(s.due_at, Some(paris("2026-03-10T17:00")));
}

#[test]
fn given_an_empty_pause_on_then_on_hold_does_not_pause() {
    let set = PolicySet::from_toml(
        "[[policies]]\nname = \"x\"\npause_on = []\n[policies.resolution]\nP1 = \"4h\"\n",
    )
    .expect("valid");
    let mut c = IncidentClocks::start(&set, utc(T0), Priority::P1, "s", "g").expect("policy");
    status(&mut c, at(hours(1)), Status::OnHold);
    let s = c.state_at(at(hours(2))).resolution;
    assert_eq!(s.state, ClockState::Running);
    assert_eq!(s.elapsed, hours(2));
}

// --- priority changes ------------------------------------------------------------------------------

#[test]
fn given_a_paused_clock_when_the_priority_changes_then_elapsed_is_kept_and_pause_not_counted() {
    // Office: P3 on paris-office (8h), P1 on 24x7 (4h).
    let set = office("restart");
    let mut c = IncidentClocks::start(&set, paris("2026-03-09T09:00"), Priority::P3, "mail", "ops")
        .expect("policy");
    ack(&mut c, paris("2026-03-09T09:05"));
    status(&mut c, paris("2026-03-09T11:00"), Status::OnHold); // 2h elapsed
    priority(&mut c, paris("2026-03-09T20:00"), Priority::P1);

    let during = c.state_at(paris("2026-03-09T21:00"));
    assert_eq!(during.priority, Priority::P1);
    assert_eq!(during.resolution.state, ClockState::Paused);
    assert_eq!(during.resolution.target, Some(hours(4)));
    assert_eq!(during.resolution.elapsed, hours(2));
    assert_eq!(during.resolution.remaining, Some(hours(2)));
    assert_eq!(during.resolution.due_at, None);
    assert_eq!(during.resolution.calendar, "24x7");
    assert!(c.due().is_empty(), "paused clocks have no timers");
    // The response clock was already met: it keeps its original target.
    assert_eq!(during.response.state, ClockState::Met);
    assert_eq!(during.response.target, Some(hours(1)));

    status(&mut c, paris("2026-03-10T08:00"), Status::InProgress);
    let after = c.state_at(paris("2026-03-10T08:30")).resolution;
    assert_eq!(after.state, ClockState::Running);
    assert_eq!(after.elapsed, mins(150));
    assert_eq!(
        after.due_at,
        Some(paris("2026-03-10T10:00")),
        "24x7 from the resume"
    );
}

#[test]
fn given_a_running_clock_when_upgraded_past_the_new_target_then_it_breaches_at_the_change() {
    let mut c = open_standard(Priority::P3); // 8h resolution
    priority(&mut c, at(hours(5)), Priority::P1); // 4h
    let s = c.state_at(at(hours(6))).resolution;
    assert_eq!(s.state, ClockState::Breached);
    assert_eq!(s.breached_at, Some(at(hours(5))));
    assert_eq!(s.elapsed, hours(6));
}

#[test]
fn given_a_running_clock_when_downgraded_then_elapsed_is_kept_and_due_moves_out() {
    let mut c = open_standard(Priority::P1); // 4h
    priority(&mut c, at(hours(3)), Priority::P2); // 8h
    let s = c.state_at(at(hours(3))).resolution;
    assert_eq!(s.elapsed, hours(3));
    assert_eq!(s.due_at, Some(at(hours(8))));
    assert_eq!(s.state, ClockState::Running);
}

#[test]
fn given_a_priority_change_to_another_calendar_then_each_segment_uses_its_own_calendar() {
    // Office P3 from Mon 17:00 Paris (1h of office time until 18:00), then P1 (24x7) at 20:00.
    let set = office("restart");
    let mut c = IncidentClocks::start(&set, paris("2026-03-09T17:00"), Priority::P3, "mail", "ops")
        .expect("policy");
    priority(&mut c, paris("2026-03-09T20:00"), Priority::P1);
    let s = c.state_at(paris("2026-03-09T22:00")).resolution;
    assert_eq!(s.elapsed, hours(3), "1h office + 2h on 24x7");
    assert_eq!(s.due_at, Some(paris("2026-03-09T23:00")));
}

// --- reopen ------------------------------------------------------------------------------------------

#[test]
fn given_restart_policy_when_reopened_then_a_new_resolution_cycle_starts() {
    let mut c = open_standard(Priority::P1);
    ack(&mut c, at(mins(5)));
    resolve(&mut c, at(hours(3)));
    reopen(&mut c, at(hours(5)));
    let s = c.state_at(at(hours(6)));
    assert_eq!(s.status, Status::InProgress);
    assert_eq!(s.resolution.cycle, 1);
    assert_eq!(s.resolution.elapsed, hours(1));
    assert_eq!(s.resolution.due_at, Some(at(hours(9))));
    assert_eq!(s.resolution.previous_cycles.len(), 1);
    assert_eq!(s.resolution.previous_cycles[0].elapsed, hours(3));
    assert_eq!(s.resolution.previous_cycles[0].breached_at, None);
    assert_eq!(
        s.response.state,
        ClockState::Met,
        "response is not reopened"
    );
    // The second cycle breaches: the incident's resolution is breached overall.
    resolve(&mut c, at(mins(9 * 60 + 30)));
    let s = c.state_at(at(hours(10))).resolution;
    assert_eq!(s.state, ClockState::Breached);
    assert_eq!(s.breached_at, Some(at(hours(9))));
}

#[test]
fn given_continue_policy_when_reopened_then_the_resolution_clock_resumes_where_it_stopped() {
    let set = office("continue");
    let mut c = IncidentClocks::start(&set, utc(T0), Priority::P1, "mail", "ops").expect("p");
    ack(&mut c, at(mins(5)));
    resolve(&mut c, at(hours(3)));
    reopen(&mut c, at(hours(5)));
    let s = c.state_at(at(mins(5 * 60 + 30))).resolution;
    assert_eq!(s.cycle, 0);
    assert_eq!(s.elapsed, mins(210));
    assert_eq!(s.due_at, Some(at(hours(6))));
    assert_eq!(
        s.paused,
        vec![PausedInterval {
            from: at(hours(3)),
            to: Some(at(hours(5))),
            status: Status::Resolved
        }]
    );
}

#[test]
fn given_continue_policy_when_a_breached_incident_is_reopened_then_it_stays_breached() {
    let set = office("continue");
    let mut c = IncidentClocks::start(&set, utc(T0), Priority::P1, "mail", "ops").expect("p");
    resolve(&mut c, at(hours(5)));
    reopen(&mut c, at(hours(6)));
    let s = c.state_at(at(hours(6))).resolution;
    assert_eq!(s.state, ClockState::Breached);
    assert_eq!(s.breached_at, Some(at(hours(4))));
}

#[test]
fn given_an_unresolved_incident_when_reopened_then_nothing_happens() {
    let mut c = open_standard(Priority::P1);
    reopen(&mut c, at(hours(1)));
    let s = c.state_at(at(hours(2))).resolution;
    assert_eq!(s.cycle, 0);
    assert_eq!(s.elapsed, hours(2));
}

// --- status-only feeding ---------------------------------------------------------------------------

#[test]
fn given_only_status_changes_then_ack_pause_resolve_and_reopen_follow() {
    let mut c = open_standard(Priority::P1);
    status(&mut c, at(mins(5)), Status::Acknowledged);
    status(&mut c, at(mins(10)), Status::InProgress);
    status(&mut c, at(hours(1)), Status::OnHold);
    status(&mut c, at(hours(2)), Status::InProgress);
    status(&mut c, at(hours(3)), Status::Resolved);
    let s = c.state_at(at(hours(3)));
    assert_eq!(s.acknowledged_at, Some(at(mins(5))));
    assert_eq!(s.response.state, ClockState::Met);
    assert_eq!(s.resolution.state, ClockState::Met);
    assert_eq!(s.resolution.elapsed, hours(2));
    status(&mut c, at(hours(4)), Status::InProgress); // reopen
    let s = c.state_at(at(hours(4)));
    assert_eq!(s.resolution.state, ClockState::Running);
    assert_eq!(s.resolution.cycle, 1);
    status(&mut c, at(hours(5)), Status::Closed);
    assert_eq!(c.state_at(at(hours(5))).status, Status::Closed);
}

// --- replay and snapshots -------------------------------------------------------------------------

#[test]
fn given_a_history_when_asking_for_an_earlier_instant_then_the_answer_is_replayed() {
    let mut full = open_standard(Priority::P3);
    ack(&mut full, at(mins(5)));
    status(&mut full, at(hours(1)), Status::OnHold);
    priority(&mut full, at(hours(2)), Priority::P1);
    status(&mut full, at(hours(3)), Status::InProgress);
    resolve(&mut full, at(hours(4)));

    let mut partial = open_standard(Priority::P3);
    ack(&mut partial, at(mins(5)));
    status(&mut partial, at(hours(1)), Status::OnHold);
    let instant = at(mins(90));
    assert_eq!(full.state_at(instant), partial.state_at(instant));
    assert_eq!(full.state_at(instant).resolution.state, ClockState::Paused);
    assert_eq!(full.state_at(at(hours(5))).resolution.elapsed, hours(2));
}

#[test]
fn given_an_input_earlier_than_the_last_then_it_is_rejected_and_nothing_changes() {
    let mut c = open_standard(Priority::P1);
    ack(&mut c, at(mins(5)));
    let before = c.clone();
    let err = c
        .apply(ClockInput::Resolved { at: at(mins(1)) })
        .expect_err("out of order");
    assert_eq!(
        err,
        ClockError::OutOfOrder {
            at: at(mins(1)),
            last: at(mins(5))
        }
    );
    assert_eq!(c, before);
    assert!(
        c.apply(ClockInput::Acknowledged {
            at: utc("2026-03-01T00:00:00Z")
        })
        .is_err(),
        "before the opening"
    );
}

#[test]
fn given_clocks_when_snapshotted_as_json_then_the_snapshot_answers_the_same() {
    let set = office("restart");
    let mut c = IncidentClocks::start(&set, paris("2026-03-09T09:00"), Priority::P3, "mail", "ops")
        .expect("policy");
    ack(&mut c, paris("2026-03-09T09:05"));
    status(&mut c, paris("2026-03-09T11:00"), Status::OnHold);
    priority(&mut c, paris("2026-03-09T20:00"), Priority::P1);
    status(&mut c, paris("2026-03-10T08:00"), Status::InProgress);
    let json = serde_json::to_string(&c).expect("ser");
    let back: IncidentClocks = serde_json::from_str(&json).expect("de");
    assert_eq!(back, c);
    let t = paris("2026-03-10T09:00");
    assert_eq!(back.state_at(t), c.state_at(t));
    assert_eq!(back.due(), c.due());
}

#[test]
fn given_the_same_inputs_when_replayed_then_the_same_clocks() {
    let mut c = open_standard(Priority::P2);
    ack(&mut c, at(mins(20)));
    status(&mut c, at(hours(1)), Status::OnHold);
    status(&mut c, at(hours(2)), Status::InProgress);
    let replayed = IncidentClocks::replay(
        c.binding().clone(),
        utc(T0),
        Priority::P2,
        "mail",
        "ops",
        c.inputs().to_vec(),
    )
    .expect("replay");
    assert_eq!(replayed, c);
}

// --- DST at the clock level ------------------------------------------------------------------------

#[test]
fn given_a_24x7_p1_opened_before_spring_forward_then_the_4h_deadline_is_4_real_hours_later() {
    let opened = paris("2026-03-28T23:00");
    let c = IncidentClocks::start(&standard(), opened, Priority::P1, "mail", "ops").expect("p");
    let s = c.state_at(opened).resolution;
    assert_eq!(s.due_at, Some(paris("2026-03-29T04:00")));
    assert_eq!(s.due_at, Some(utc("2026-03-29T02:00:00Z")));
}

#[test]
fn given_an_office_p3_opened_before_fall_back_weekend_then_the_deadline_counts_office_hours() {
    // Friday 2026-10-23 14:00 Paris, 8h office resolution: 4h Friday + 4h Monday (CET now).
    let set = office("restart");
    let c = IncidentClocks::start(&set, paris("2026-10-23T14:00"), Priority::P3, "mail", "ops")
        .expect("p");
    let s = c.state_at(paris("2026-10-23T14:00")).resolution;
    assert_eq!(s.due_at, Some(paris("2026-10-26T12:00")));
}
