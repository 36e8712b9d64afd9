//! Property tests of the calendar arithmetic on random calendars with working hours (random
//! zones including DST ones in both hemispheres, random split days, random holidays) and
//! random starts, biased towards the 2026 DST transitions.

use incident_sla::{Calendar, CalendarSpec};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

const ZONES: [&str; 6] = [
    "Europe/Paris",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/Sao_Paulo",
    "UTC",
];
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn hhmm(quarter: u16) -> String {
    format!("{:02}:{:02}", quarter / 4, (quarter % 4) * 15)
}

/// Up to two ranges from four quarter-hour marks in 0..=96 (96 = 24:00).
fn day_hours() -> impl Strategy<Value = String> {
    (prop::collection::vec(0u16..=96, 4), 0u8..3).prop_map(|(mut marks, ranges)| {
        marks.sort_unstable();
        let pairs = [(marks[0], marks[1]), (marks[2], marks[3])];
        pairs
            .iter()
            .take(usize::from(ranges))
            .filter(|(a, b)| a < b && *a < 96)
            .map(|(a, b)| format!("{}-{}", hhmm(*a), hhmm(*b)))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn calendar() -> impl Strategy<Value = Calendar> {
    (
        prop::sample::select(ZONES.to_vec()),
        prop::collection::vec(day_hours(), 7),
        prop::collection::vec(0i64..365, 0..6),
    )
        .prop_map(|(zone, days, holiday_offsets)| {
            let mut hours: std::collections::BTreeMap<String, String> = DAYS
                .iter()
                .zip(days)
                .filter(|(_, h)| !h.is_empty())
                .map(|(d, h)| (d.to_string(), h))
                .collect();
            if hours.is_empty() {
                hours.insert("mon".into(), "08:00-18:00".into());
            }
            let jan1 = jiff::civil::date(2026, 1, 1);
            let holidays = holiday_offsets
                .iter()
                .filter_map(|&o| jan1.checked_add(jiff::Span::new().days(o)).ok())
                .map(|d| d.to_string())
                .collect();
            let spec = CalendarSpec {
                timezone: zone.to_string(),
                hours,
                holidays,
            };
            Calendar::from_spec(&spec).expect("generated calendars are valid")
        })
}

/// A start instant: anywhere in 2026, or within two days of a 2026 DST transition.
fn start() -> impl Strategy<Value = Timestamp> {
    let transitions: Vec<i64> = [
        "2026-03-29T01:00:00Z", // Europe spring
        "2026-10-25T01:00:00Z", // Europe fall
        "2026-03-08T07:00:00Z", // US spring
        "2026-11-01T06:00:00Z", // US fall
        "2026-04-04T16:00:00Z", // Sydney fall
        "2026-10-03T16:00:00Z", // Sydney spring
    ]
    .iter()
    .map(|t| t.parse::<Timestamp>().expect("valid").as_second())
    .collect();
    let year_start = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    prop_oneof![
        (year_start..year_start + 365 * 86_400, 0i32..1_000_000_000),
        (
            prop::sample::select(transitions),
            -2 * 86_400i64..2 * 86_400,
            0i32..1_000_000_000
        )
            .prop_map(|(t, delta, n)| (t + delta, n)),
    ]
    .prop_map(|(s, n)| Timestamp::new(s, n).expect("in range"))
}

/// Up to 20 days of business time, sometimes with a sub-second part.
fn amount() -> impl Strategy<Value = SignedDuration> {
    (
        0i64..20 * 86_400,
        prop_oneof![Just(0i32), 0i32..1_000_000_000],
    )
        .prop_map(|(s, n)| SignedDuration::new(s, n))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn elapsed_of_add_business_is_the_amount(cal in calendar(), start in start(), d in amount()) {
        let end = cal.add_business(start, d);
        prop_assert!(end >= start);
        prop_assert_eq!(cal.business_elapsed(start, end), d);
    }

    #[test]
    fn add_business_is_monotonic(cal in calendar(), start in start(), a in amount(), b in amount()) {
        let (small, large) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(cal.add_business(start, small) <= cal.add_business(start, large));
    }

    #[test]
    fn add_business_composes(cal in calendar(), start in start(), a in amount(), b in amount()) {
        let stepwise = cal.add_business(cal.add_business(start, a), b);
        prop_assert_eq!(stepwise, cal.add_business(start, a + b));
    }

    #[test]
    fn elapsed_is_additive(cal in calendar(), start in start(), a in amount(), b in amount()) {
        let mid = start.checked_add(a).expect("in range");
        let end = mid.checked_add(b).expect("in range");
        prop_assert_eq!(
            cal.business_elapsed(start, mid) + cal.business_elapsed(mid, end),
            cal.business_elapsed(start, end)
        );
    }

    #[test]
    fn always_calendar_is_real_time(start in start(), d in amount()) {
        let cal = Calendar::always();
        prop_assert_eq!(cal.add_business(start, d), start.checked_add(d).expect("in range"));
        prop_assert_eq!(cal.business_elapsed(start, start.checked_add(d).expect("in range")), d);
    }
}
