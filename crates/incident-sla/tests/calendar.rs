//! Business-time arithmetic: weekends, nights, holidays, split days, and DST in both
//! directions for business calendars and for 24x7.

mod common;

use common::*;
use incident_sla::Calendar;
use jiff::SignedDuration;

// --- weekends, nights, holidays ----------------------------------------------------------------

#[test]
fn given_office_hours_when_adding_2h_on_friday_17h_then_monday_09h() {
    let cal = paris_office();
    let friday_17 = paris("2026-03-06T17:00");
    assert_eq!(
        cal.add_business(friday_17, hours(2)),
        paris("2026-03-09T09:00")
    );
}

#[test]
fn given_office_hours_when_adding_exactly_the_rest_of_the_day_then_the_end_of_the_day() {
    let cal = paris_office();
    assert_eq!(
        cal.add_business(paris("2026-03-06T17:00"), hours(1)),
        paris("2026-03-06T18:00")
    );
}

#[test]
fn given_office_hours_when_measuring_a_weekend_then_only_friday_and_monday_count() {
    let cal = paris_office();
    let elapsed = cal.business_elapsed(paris("2026-03-06T17:00"), paris("2026-03-09T09:00"));
    assert_eq!(elapsed, hours(2));
}

#[test]
fn given_office_hours_when_measuring_overnight_then_the_night_is_not_counted() {
    let cal = paris_office();
    let elapsed = cal.business_elapsed(paris("2026-03-10T17:00"), paris("2026-03-11T09:00"));
    assert_eq!(elapsed, hours(2));
}

#[test]
fn given_a_start_on_saturday_when_adding_then_work_starts_monday_morning() {
    let cal = paris_office();
    assert_eq!(
        cal.add_business(paris("2026-03-07T10:00"), hours(1)),
        paris("2026-03-09T09:00")
    );
}

#[test]
fn given_christmas_on_friday_when_adding_from_thursday_evening_then_monday() {
    let cal = paris_office();
    let thursday_17 = paris("2026-12-24T17:00");
    assert_eq!(
        cal.add_business(thursday_17, hours(2)),
        paris("2026-12-28T09:00")
    );
    assert_eq!(
        cal.business_elapsed(thursday_17, paris("2026-12-28T09:00")),
        hours(2)
    );
}

#[test]
fn given_new_year_holiday_when_measuring_that_day_then_nothing_elapses() {
    let cal = paris_office();
    let elapsed = cal.business_elapsed(paris("2027-01-01T00:00"), paris("2027-01-02T00:00"));
    assert_eq!(elapsed, SignedDuration::ZERO);
    assert!(!cal.is_working(paris("2027-01-01T10:00")));
    assert!(cal.is_working(paris("2027-01-04T10:00")));
}

#[test]
fn given_a_lunch_break_when_adding_across_it_then_the_break_is_skipped() {
    let cal = calendar("Europe/Paris", &[("mon", "08:00-12:00,13:00-17:00")], &[]);
    assert_eq!(
        cal.add_business(paris("2026-03-09T11:30"), hours(1)),
        paris("2026-03-09T13:30")
    );
    assert_eq!(
        cal.business_elapsed(paris("2026-03-09T11:00"), paris("2026-03-09T14:00")),
        hours(2)
    );
    // Monday only: the next Monday continues.
    assert_eq!(
        cal.add_business(paris("2026-03-09T16:00"), hours(2)),
        paris("2026-03-16T09:00")
    );
}

#[test]
fn given_zero_or_negative_amounts_then_nothing_moves() {
    let cal = paris_office();
    let t = paris("2026-03-07T10:00");
    assert_eq!(cal.add_business(t, SignedDuration::ZERO), t);
    assert_eq!(cal.add_business(t, mins(-5)), t);
    assert_eq!(
        cal.business_elapsed(t, paris("2026-03-06T10:00")),
        SignedDuration::ZERO
    );
}

// --- DST: business calendar spanning 02:00-03:00 -------------------------------------------------

#[test]
fn given_spring_forward_when_measuring_the_night_shift_then_it_holds_three_real_hours() {
    // 2026-03-29: 02:00 CET jumps to 03:00 CEST; 01:00-05:00 is 00:00Z-03:00Z.
    let cal = paris_night_shift();
    let elapsed = cal.business_elapsed(paris("2026-03-29T00:00"), paris("2026-03-29T12:00"));
    assert_eq!(elapsed, hours(3));
}

#[test]
fn given_spring_forward_when_adding_on_the_night_shift_then_the_skipped_hour_is_not_worked() {
    let cal = paris_night_shift();
    let midnight = paris("2026-03-29T00:00");
    assert_eq!(
        cal.add_business(midnight, mins(90)),
        paris("2026-03-29T03:30")
    );
    assert_eq!(
        cal.add_business(midnight, hours(3)),
        paris("2026-03-29T05:00")
    );
    // One more minute spills into the next night.
    assert_eq!(
        cal.add_business(midnight, mins(181)),
        paris("2026-03-30T01:01")
    );
}

#[test]
fn given_fall_back_when_measuring_the_night_shift_then_it_holds_five_real_hours() {
    // 2026-10-25: 03:00 CEST falls back to 02:00 CET; 01:00-05:00 is 23:00Z-04:00Z.
    let cal = paris_night_shift();
    let elapsed = cal.business_elapsed(paris("2026-10-25T00:00"), paris("2026-10-25T12:00"));
    assert_eq!(elapsed, hours(5));
}

#[test]
fn given_fall_back_when_adding_on_the_night_shift_then_the_repeated_hour_is_worked_twice() {
    let cal = paris_night_shift();
    let midnight = paris("2026-10-25T00:00");
    assert_eq!(
        cal.add_business(midnight, mins(90)),
        paris("2026-10-25T02:30+02:00"),
        "first 02:30 (CEST)"
    );
    assert_eq!(
        cal.add_business(midnight, mins(150)),
        paris("2026-10-25T02:30+01:00"),
        "second 02:30 (CET)"
    );
    assert_eq!(
        cal.add_business(midnight, hours(5)),
        paris("2026-10-25T05:00")
    );
}

#[test]
fn given_a_range_starting_inside_the_skipped_hour_then_it_starts_at_the_transition() {
    let cal = calendar("Europe/Paris", &[("sun", "02:30-04:00")], &[]);
    let day =
        |d: &str| cal.business_elapsed(paris(&format!("{d}T00:00")), paris(&format!("{d}T23:00")));
    assert_eq!(day("2026-03-22"), mins(90), "an ordinary Sunday");
    assert_eq!(day("2026-03-29"), mins(60), "03:00 CEST to 04:00 CEST");
    assert_eq!(
        day("2026-10-25"),
        mins(150),
        "first 02:30 CEST to 04:00 CET"
    );
    assert_eq!(
        cal.add_business(paris("2026-03-29T00:00"), mins(1)),
        paris("2026-03-29T03:01")
    );
}

#[test]
fn given_office_hours_across_spring_forward_weekend_then_friday_plus_2h_is_monday_9h() {
    let cal = paris_office();
    let friday_17 = paris("2026-03-27T17:00");
    let monday_9 = paris("2026-03-30T09:00");
    assert_eq!(cal.add_business(friday_17, hours(2)), monday_9);
    assert_eq!(cal.business_elapsed(friday_17, monday_9), hours(2));
}

// --- DST: 24x7 counts real time ------------------------------------------------------------------

#[test]
fn given_24x7_across_spring_forward_then_4h_target_ends_4_real_hours_later() {
    let cal = Calendar::always();
    let start = paris("2026-03-28T23:00"); // 22:00Z
    let end = cal.add_business(start, hours(4));
    assert_eq!(end, utc("2026-03-29T02:00:00Z"));
    assert_eq!(end, paris("2026-03-29T04:00"), "wall clock shows 5h later");
    assert_eq!(cal.business_elapsed(start, end), hours(4));
}

#[test]
fn given_24x7_across_fall_back_then_4h_target_ends_4_real_hours_later() {
    let cal = Calendar::always();
    let start = paris("2026-10-24T23:00"); // 21:00Z
    let end = cal.add_business(start, hours(4));
    assert_eq!(
        end,
        paris("2026-10-25T02:00+01:00"),
        "wall clock shows 3h later"
    );
    assert_eq!(cal.business_elapsed(start, end), hours(4));
}

#[test]
fn given_a_calendar_with_full_utc_days_then_it_reads_as_24x7() {
    let all: Vec<(&str, &str)> = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .map(|d| (*d, "00:00-24:00"))
        .collect();
    let cal = calendar("UTC", &all, &[]);
    assert!(cal.is_always());
    assert_eq!(
        Calendar::from_spec(&Calendar::always().to_spec()),
        Ok(Calendar::always())
    );
}

#[test]
fn given_new_york_when_spring_forward_then_office_hours_are_unaffected() {
    let cal = calendar("America/New_York", &[("sun", "08:00-18:00")], &[]);
    // 2026-03-08 is spring-forward in New York; the office day still has 10h.
    let elapsed = cal.business_elapsed(
        zoned("2026-03-08T00:00", "America/New_York"),
        zoned("2026-03-09T00:00", "America/New_York"),
    );
    assert_eq!(elapsed, hours(10));
}
