//! Helpers shared by the integration tests: instants in a zone, calendars, policies.
#![allow(dead_code)]

use incident_sla::{Calendar, CalendarSpec, PolicySet};
use jiff::{SignedDuration, Timestamp, Zoned};

/// An instant written as `YYYY-MM-DDTHH:MM[:SS][+HH:MM]` in Europe/Paris.
/// Give the offset for times inside a fold.
pub fn paris(local: &str) -> Timestamp {
    zoned(local, "Europe/Paris")
}

/// An instant written as local time in a zone.
pub fn zoned(local: &str, tz: &str) -> Timestamp {
    let text = format!("{local}[{tz}]");
    match text.parse::<Zoned>() {
        Ok(z) => z.timestamp(),
        Err(e) => panic!("bad test instant {text}: {e}"),
    }
}

/// A UTC instant.
pub fn utc(text: &str) -> Timestamp {
    match text.parse() {
        Ok(t) => t,
        Err(e) => panic!("bad test instant {text}: {e}"),
    }
}

pub fn mins(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

pub fn hours(h: i64) -> SignedDuration {
    SignedDuration::from_hours(h)
}

/// A calendar from a zone, `(day, hours)` pairs and holidays.
pub fn calendar(tz: &str, hours: &[(&str, &str)], holidays: &[&str]) -> Calendar {
    let spec = CalendarSpec {
        timezone: tz.to_string(),
        hours: hours
            .iter()
            .map(|(d, h)| (d.to_string(), h.to_string()))
            .collect(),
        holidays: holidays.iter().map(|s| s.to_string()).collect(),
    };
    Calendar::from_spec(&spec).expect("valid test calendar")
}

/// Monday to Friday 08:00-18:00 in Paris, with Christmas 2026 and New Year 2027 off.
pub fn paris_office() -> Calendar {
    calendar(
        "Europe/Paris",
        &[
            ("mon", "08:00-18:00"),
            ("tue", "08:00-18:00"),
            ("wed", "08:00-18:00"),
            ("thu", "08:00-18:00"),
            ("fri", "08:00-18:00"),
        ],
        &["2026-12-25", "2027-01-01"],
    )
}

/// Every day 01:00-05:00 in Paris: spans both DST transitions of 2026.
pub fn paris_night_shift() -> Calendar {
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let hours: Vec<(&str, &str)> = days.iter().map(|d| (*d, "01:00-05:00")).collect();
    calendar("Europe/Paris", &hours, &[])
}

/// The policy file of the brief, with an office calendar, a P1 override and escalations.
pub const STANDARD_TOML: &str = r#"
[calendars.paris-office]
timezone = "Europe/Paris"
hours = { mon = "08:00-18:00", tue = "08:00-18:00", wed = "08:00-18:00", thu = "08:00-18:00", fri = "08:00-18:00" }
holidays = ["2026-12-25", "2027-01-01"]

[[policies]]
name = "standard"
calendar = "24x7"
warn_at = [0.5, 0.75, 0.9]
pause_on = ["on_hold"]
[policies.response]
P1 = "15m"
P2 = "30m"
P3 = "1h"
[policies.resolution]
P1 = "4h"
P2 = "8h"
P3 = "8h"
[[policies.escalation]]
at = 0.75
level = 1
[[policies.escalation]]
at = 1.0
level = 2
[[policies.escalation]]
at = 1.5
level = 3
"#;

pub fn standard() -> PolicySet {
    PolicySet::from_toml(STANDARD_TOML).expect("valid standard policy")
}

/// Like `standard` but on the office calendar, P1 on 24x7, with a chosen reopen mode.
pub fn office(reopen: &str) -> PolicySet {
    let text = format!(
        r#"
[calendars.paris-office]
timezone = "Europe/Paris"
hours = {{ mon = "08:00-18:00", tue = "08:00-18:00", wed = "08:00-18:00", thu = "08:00-18:00", fri = "08:00-18:00" }}

[[policies]]
name = "office"
calendar = "paris-office"
reopen = "{reopen}"
[policies.calendars]
P1 = "24x7"
[policies.response]
P1 = "15m"
P3 = "1h"
[policies.resolution]
P1 = "4h"
P3 = "8h"
"#
    );
    PolicySet::from_toml(&text).expect("valid office policy")
}
