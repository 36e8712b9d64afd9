//! Policy files: loading, defaults, one test per validation error kind, the content hash,
//! JSON round trips and policy selection.

mod common;

use common::*;
use incident_sla::{
    ClockError, ClockKind, IncidentClocks, PolicyBinding, PolicyErrorKind, PolicySet, Priority,
    ReopenMode, Status,
};

/// Loads a file expected to be rejected and returns (place, kind).
fn rejected(toml: &str) -> (String, PolicyErrorKind) {
    match PolicySet::from_toml(toml) {
        Ok(_) => panic!("expected an error for:\n{toml}"),
        Err(e) => {
            // The message always carries the place.
            assert!(e.to_string().starts_with(&e.place), "{e}");
            (e.place, e.kind)
        }
    }
}

/// A minimal valid policy with one line replaced/added.
fn minimal(extra: &str) -> String {
    format!(
        r#"
[[policies]]
name = "standard"
{extra}
[policies.response]
P1 = "15m"
"#
    )
}

// --- loading -----------------------------------------------------------------------------------

#[test]
fn given_the_contract_file_when_loaded_then_every_field_is_understood() {
    let set = standard();
    let p = set.policy("standard").expect("policy");
    assert_eq!(p.calendar_name(Priority::P1), "24x7");
    assert_eq!(p.warn_at(), &[0.5, 0.75, 0.9]);
    assert!(p.pauses(Status::OnHold));
    assert_eq!(p.target(ClockKind::Response, Priority::P1), Some(mins(15)));
    assert_eq!(
        p.target(ClockKind::Resolution, Priority::P2),
        Some(hours(8))
    );
    assert_eq!(p.target(ClockKind::Response, Priority::P5), None);
    assert_eq!(p.escalation().len(), 3);
    assert_eq!(p.escalation()[2].at, 1.5);
    assert_eq!(p.reopen(), ReopenMode::Restart);
    assert!(set.calendar("paris-office").is_some());
    assert!(set.calendar("24x7").is_some_and(|c| c.is_always()));
}

#[test]
fn given_a_policy_without_optional_fields_then_defaults_apply() {
    let set = PolicySet::from_toml(&minimal("")).expect("valid");
    let p = &set.policies()[0];
    assert_eq!(p.calendar_name(Priority::P3), "24x7");
    assert_eq!(
        p.pause_on().iter().copied().collect::<Vec<_>>(),
        vec![Status::OnHold]
    );
    assert_eq!(p.reopen(), ReopenMode::Restart);
    assert!(p.warn_at().is_empty());
    assert!(p.filter().is_catch_all());
}

#[test]
fn given_per_priority_calendars_and_compound_durations_then_they_are_read() {
    let set = office("continue");
    let p = &set.policies()[0];
    assert_eq!(p.calendar_name(Priority::P1), "24x7");
    assert_eq!(p.calendar_name(Priority::P3), "paris-office");
    assert_eq!(p.reopen(), ReopenMode::Continue);
    let set = PolicySet::from_toml(
        r#"
[[policies]]
name = "d"
[policies.resolution]
P4 = "1h30m"
P5 = "3d"
"#,
    )
    .expect("valid");
    let p = &set.policies()[0];
    assert_eq!(
        p.target(ClockKind::Resolution, Priority::P4),
        Some(mins(90))
    );
    assert_eq!(
        p.target(ClockKind::Resolution, Priority::P5),
        Some(hours(72))
    );
}

// --- one test per error kind -----------------------------------------------------------------------

#[test]
fn error_unknown_calendar_name() {
    let (place, kind) = rejected(&minimal(r#"calendar = "moon-office""#));
    assert_eq!(place, r#"policies[0]("standard").calendar"#);
    assert!(
        matches!(kind, PolicyErrorKind::UnknownCalendar { ref name, .. } if name == "moon-office")
    );
}

#[test]
fn error_unknown_calendar_in_priority_override() {
    let toml = format!("{}\n[policies.calendars]\nP1 = \"nope\"\n", minimal(""));
    let (place, kind) = rejected(&toml);
    assert_eq!(place, r#"policies[0]("standard").calendars.P1"#);
    assert!(matches!(kind, PolicyErrorKind::UnknownCalendar { .. }));
}

#[test]
fn error_bad_time_zone() {
    let (place, kind) = rejected(
        r#"
[calendars.office]
timezone = "Europe/Atlantis"
hours = { mon = "08:00-18:00" }
"#,
    );
    assert_eq!(place, "calendars.office.timezone");
    assert!(
        matches!(kind, PolicyErrorKind::BadTimeZone { ref name, .. } if name == "Europe/Atlantis")
    );
}

#[test]
fn error_bad_hours_syntax() {
    let (place, kind) = rejected(
        r#"
[calendars.office]
timezone = "Europe/Paris"
hours = { mon = "8h-18h" }
"#,
    );
    assert_eq!(place, "calendars.office.hours.mon");
    assert!(matches!(kind, PolicyErrorKind::BadHours { .. }));
}

#[test]
fn error_hours_ending_before_they_start() {
    let (_, kind) = rejected(
        r#"
[calendars.office]
timezone = "Europe/Paris"
hours = { mon = "18:00-08:00" }
"#,
    );
    assert!(matches!(kind, PolicyErrorKind::BadHours { .. }));
}

#[test]
fn error_overlapping_ranges() {
    let (place, kind) = rejected(
        r#"
[calendars.office]
timezone = "Europe/Paris"
hours = { tue = "08:00-12:30,12:00-17:00" }
"#,
    );
    assert_eq!(place, "calendars.office.hours.tue");
    assert_eq!(
        kind,
        PolicyErrorKind::OverlappingHours {
            first: "08:00-12:30".into(),
            second: "12:00-17:00".into()
        }
    );
}

#[test]
fn error_unknown_weekday() {
    let (place, kind) = rejected(
        r#"
[calendars.office]
timezone = "Europe/Paris"
hours = { monday = "08:00-18:00" }
"#,
    );
    assert_eq!(place, "calendars.office.hours.monday");
    assert_eq!(kind, PolicyErrorKind::UnknownWeekday("monday".into()));
}

#[test]
fn error_calendar_without_working_hours() {
    let (place, kind) = rejected(
        r#"
[calendars.office]
timezone = "Europe/Paris"
"#,
    );
    assert_eq!(place, "calendars.office.hours");
    assert_eq!(kind, PolicyErrorKind::NoWorkingHours);
}

#[test]
fn error_bad_holiday() {
    let (place, kind) = rejected(
        r#"
[calendars.office]
timezone = "Europe/Paris"
hours = { mon = "08:00-18:00" }
holidays = ["2026-12-25", "2026-02-30"]
"#,
    );
    assert_eq!(place, "calendars.office.holidays[1]");
    assert!(matches!(kind, PolicyErrorKind::BadHoliday { .. }));
}

#[test]
fn error_reserved_calendar_name() {
    let (place, kind) = rejected(
        r#"
[calendars.24x7]
timezone = "UTC"
hours = { mon = "08:00-18:00" }
"#,
    );
    assert_eq!(place, "calendars.24x7");
    assert_eq!(kind, PolicyErrorKind::ReservedCalendarName("24x7".into()));
}

#[test]
fn error_bad_duration() {
    let toml = r#"
[[policies]]
name = "standard"
[policies.resolution]
P2 = "4 hours"
"#;
    let (place, kind) = rejected(toml);
    assert_eq!(place, r#"policies[0]("standard").resolution.P2"#);
    assert!(matches!(kind, PolicyErrorKind::BadDuration { ref value, .. } if value == "4 hours"));
}

#[test]
fn error_zero_duration() {
    let toml = r#"
[[policies]]
name = "standard"
[policies.response]
P1 = "0m"
"#;
    let (_, kind) = rejected(toml);
    assert!(matches!(kind, PolicyErrorKind::BadDuration { .. }));
}

#[test]
fn error_warn_at_outside_zero_one() {
    for (value, index) in [("[0.5, 1.0]", 1), ("[0.0]", 0), ("[1.5]", 0), ("[-0.2]", 0)] {
        let (place, kind) = rejected(&minimal(&format!("warn_at = {value}")));
        assert_eq!(
            place,
            format!(r#"policies[0]("standard").warn_at[{index}]"#)
        );
        assert!(
            matches!(kind, PolicyErrorKind::WarnAtOutOfRange(_)),
            "{value}"
        );
    }
}

#[test]
fn error_escalation_at_not_positive() {
    let toml = format!(
        "{}\n[[policies.escalation]]\nat = 0.0\nlevel = 1\n",
        minimal("")
    );
    let (place, kind) = rejected(&toml);
    assert_eq!(place, r#"policies[0]("standard").escalation[0].at"#);
    assert_eq!(kind, PolicyErrorKind::EscalationAtNotPositive(0.0));
    let toml = format!(
        "{}\n[[policies.escalation]]\nat = -1\nlevel = 1\n",
        minimal("")
    );
    assert!(matches!(
        rejected(&toml).1,
        PolicyErrorKind::EscalationAtNotPositive(_)
    ));
}

#[test]
fn error_escalation_level_zero_or_duplicate() {
    let toml = format!(
        "{}\n[[policies.escalation]]\nat = 1\nlevel = 0\n",
        minimal("")
    );
    assert_eq!(rejected(&toml).1, PolicyErrorKind::EscalationLevelZero);
    let toml = format!(
        "{}\n[[policies.escalation]]\nat = 1\nlevel = 2\n[[policies.escalation]]\nat = 1.5\nlevel = 2\n",
        minimal("")
    );
    let (place, kind) = rejected(&toml);
    assert_eq!(place, r#"policies[0]("standard").escalation[1].level"#);
    assert_eq!(kind, PolicyErrorKind::DuplicateEscalationLevel(2));
}

#[test]
fn error_unknown_priority_key() {
    let toml = r#"
[[policies]]
name = "standard"
[policies.response]
P6 = "15m"
"#;
    let (place, kind) = rejected(toml);
    assert_eq!(place, r#"policies[0]("standard").response.P6"#);
    assert_eq!(kind, PolicyErrorKind::UnknownPriority("P6".into()));
}

#[test]
fn error_unknown_priority_in_match_filter() {
    let toml = format!(
        "{}\n[policies.match]\npriorities = [\"P1\", \"urgent\"]\n",
        minimal("")
    );
    let (place, kind) = rejected(&toml);
    assert_eq!(place, r#"policies[0]("standard").match.priorities[1]"#);
    assert_eq!(kind, PolicyErrorKind::UnknownPriority("urgent".into()));
}

#[test]
fn error_unknown_status_in_pause_on() {
    let (place, kind) = rejected(&minimal(r#"pause_on = ["on_hold", "waiting"]"#));
    assert_eq!(place, r#"policies[0]("standard").pause_on[1]"#);
    assert_eq!(kind, PolicyErrorKind::UnknownStatus("waiting".into()));
}

#[test]
fn error_bad_reopen_mode() {
    let (place, kind) = rejected(&minimal(r#"reopen = "reset""#));
    assert_eq!(place, r#"policies[0]("standard").reopen"#);
    assert_eq!(kind, PolicyErrorKind::BadReopenMode("reset".into()));
}

#[test]
fn error_duplicate_and_empty_policy_names() {
    let toml = format!("{}{}", minimal(""), minimal(""));
    let (place, kind) = rejected(&toml);
    assert_eq!(place, "policies[1].name");
    assert_eq!(
        kind,
        PolicyErrorKind::DuplicatePolicyName("standard".into())
    );
    let toml = "[[policies]]\nname = \" \"\n";
    assert_eq!(rejected(toml).1, PolicyErrorKind::EmptyPolicyName);
}

#[test]
fn error_no_policies() {
    assert_eq!(rejected("").1, PolicyErrorKind::NoPolicies);
}

#[test]
fn error_unknown_key_or_wrong_type_is_a_parse_error_with_a_line() {
    let (place, kind) = rejected(&minimal("warn_on = [0.5]"));
    assert_eq!(place, "policy file");
    match kind {
        PolicyErrorKind::Parse(msg) => assert!(msg.contains("warn_on") && msg.contains("line")),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        rejected(&minimal("warn_at = \"half\"")).1,
        PolicyErrorKind::Parse(_)
    ));
    assert!(matches!(
        rejected("[[policies]\n").1,
        PolicyErrorKind::Parse(_)
    ));
}

// --- hash ----------------------------------------------------------------------------------------

#[test]
fn given_the_same_policy_reformatted_then_the_hash_is_unchanged() {
    let reformatted = r#"
# same content: other order, other layout, equivalent spellings, explicit defaults
[[policies]]
pause_on = ["on_hold", "on_hold"]
reopen = "restart"
warn_at = [0.9, 0.5, 0.75]
calendar = "24x7"
name = "standard"
resolution = { P3 = "480m", P2 = "8h", P1 = "4h" }
response = { P2 = "30m", P1 = "15m", P3 = "60m" }
escalation = [ { level = 3, at = 1.5 }, { at = 0.75, level = 1 }, { level = 2, at = 1 } ]

[calendars.paris-office]
holidays = ["2027-01-01", "2026-12-25", "2026-12-25"]
timezone = "Europe/Paris"
  [calendars.paris-office.hours]
  fri = "08:00-12:00,12:00-18:00"
  thu = "08:00-18:00"
  wed = "08:00-18:00"
  tue = "08:00-18:00"
  mon = "8:00-18:00"
"#;
    let a = standard();
    let b = PolicySet::from_toml(reformatted).expect("valid");
    assert_eq!(a.hash(), b.hash());
    assert_eq!(a, b);
    assert_eq!(a.hash().len(), 64);
    assert!(a.hash().bytes().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn given_a_changed_target_then_the_hash_changes() {
    let changed = STANDARD_TOML.replace(r#"P1 = "4h""#, r#"P1 = "5h""#);
    assert_ne!(
        standard().hash(),
        PolicySet::from_toml(&changed).expect("valid").hash()
    );
    let changed_holiday = STANDARD_TOML.replace("2027-01-01", "2027-01-02");
    assert_ne!(
        standard().hash(),
        PolicySet::from_toml(&changed_holiday)
            .expect("valid")
            .hash()
    );
}

// --- JSON ----------------------------------------------------------------------------------------

#[test]
fn given_a_policy_set_when_written_as_json_and_read_back_then_equal_with_same_hash() {
    let set = standard();
    let json = set.to_json();
    let back = PolicySet::from_json(&json).expect("round trip");
    assert_eq!(back, set);
    assert_eq!(back.hash(), set.hash());
    // Through serde as well.
    let via_serde: PolicySet =
        serde_json::from_str(&serde_json::to_string(&set).expect("ser")).expect("de");
    assert_eq!(via_serde, set);
}

#[test]
fn given_corrupt_json_then_a_json_error() {
    let err = PolicySet::from_json("{\"policies\": 3}").expect_err("invalid");
    assert!(matches!(err.kind, PolicyErrorKind::Json(_)));
    let tampered = standard().to_json().replace("\"15m\"", "\"15 minutes\"");
    let err = PolicySet::from_json(&tampered).expect_err("invalid duration");
    assert!(matches!(err.kind, PolicyErrorKind::BadDuration { .. }));
}

#[test]
fn given_a_binding_when_serialised_then_it_reads_back_self_contained() {
    let set = office("continue");
    let binding = set.bind("mail", "ops", Priority::P3).expect("binding");
    let json = serde_json::to_string(&binding).expect("ser");
    let back: PolicyBinding = serde_json::from_str(&json).expect("de");
    assert_eq!(back, binding);
    assert_eq!(back.set_hash(), set.hash());
    assert_eq!(
        back.calendar_for(Priority::P3).timezone_name(),
        "Europe/Paris"
    );
    assert!(back.calendar_for(Priority::P1).is_always());
}

// --- selection -----------------------------------------------------------------------------------

const MATCHING: &str = r#"
[[policies]]
name = "database-p1"
[policies.match]
services = ["postgres", "mysql"]
priorities = ["P1"]
[policies.response]
P1 = "5m"

[[policies]]
name = "network"
[policies.match]
groups = ["netops"]
[policies.response]
P1 = "10m"

[[policies]]
name = "default"
[policies.response]
P1 = "15m"
"#;

#[test]
fn given_several_policies_then_the_first_whose_filters_all_match_wins() {
    let set = PolicySet::from_toml(MATCHING).expect("valid");
    let pick = |s, g, p| set.select(s, g, p).map(|p| p.name().to_string());
    assert_eq!(
        pick("postgres", "netops", Priority::P1).as_deref(),
        Some("database-p1")
    );
    assert_eq!(
        pick("postgres", "netops", Priority::P2).as_deref(),
        Some("network")
    );
    assert_eq!(
        pick("postgres", "dba", Priority::P2).as_deref(),
        Some("default")
    );
    assert_eq!(
        pick("mail", "netops", Priority::P1).as_deref(),
        Some("network")
    );
    assert_eq!(
        pick("mail", "desk", Priority::P5).as_deref(),
        Some("default")
    );
}

#[test]
fn given_no_catch_all_when_nothing_matches_then_starting_clocks_fails() {
    let without_default = MATCHING
        .split("[[policies]]\nname = \"default\"")
        .next()
        .expect("prefix");
    let set = PolicySet::from_toml(without_default).expect("valid");
    let err = IncidentClocks::start(
        &set,
        utc("2026-03-02T09:00:00Z"),
        Priority::P3,
        "mail",
        "desk",
    )
    .expect_err("no policy");
    assert!(matches!(err, ClockError::NoMatchingPolicy { .. }));
}
