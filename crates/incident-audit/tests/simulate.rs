//! The what-if simulation: a stricter policy gives more breaches than the recorded one, the
//! recorded policy reproduces what really happened, the output is byte-identical run after run,
//! and scenario mode is deterministic for a seed.

mod common;

use common::{POLICY, STRICT, standard_world};
use incident_audit::export;
use incident_audit::sim::{
    Scenario, render_json, render_table, simulate_records, simulate_scenario,
};
use incident_sla::PolicySet;

fn breaches(r: &incident_audit::sim::Report, recorded: bool) -> usize {
    r.rows
        .iter()
        .map(|row| {
            let c = if recorded {
                row.recorded.clone().unwrap()
            } else {
                row.simulated.clone()
            };
            c.response.breached + c.resolution.breached
        })
        .sum()
}

fn exported_records() -> Vec<incident_audit::AuditRecord> {
    let world = standard_world();
    let text = export::to_text(&world.records());
    export::records(&export::parse(&text).unwrap())
}

#[test]
fn a_stricter_policy_reports_more_breaches_than_the_recorded_one() {
    let records = exported_records();
    let strict = PolicySet::from_toml(STRICT).unwrap();
    let report = simulate_records(&records, &strict, None).unwrap();
    assert_eq!(report.incidents, 3);
    assert_eq!(report.as_of, common::t("12:30:00"));
    // recorded: INC-B breached both clocks; strict: every clock of every incident breaches
    assert_eq!(breaches(&report, true), 2);
    assert_eq!(breaches(&report, false), 6);
    let p1 = report.rows.iter().find(|r| r.priority == "P1").unwrap();
    assert_eq!(p1.incidents, 2);
    assert_eq!(p1.recorded.as_ref().unwrap().response.met, 1);
    assert_eq!(p1.recorded.as_ref().unwrap().response.pct_met, Some(50.0));
    assert_eq!(p1.simulated.response.pct_met, Some(0.0));
    assert_eq!(p1.recorded_breach_events, Some(2));
    assert_eq!(report.recorded_policies.len(), 1);
    assert!(report.changes.iter().any(|c| c.id == "INC-A"));
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
}

#[test]
fn the_recorded_policy_reproduces_what_happened() {
    let records = exported_records();
    let same = PolicySet::from_toml(POLICY).unwrap();
    let report = simulate_records(&records, &same, None).unwrap();
    assert_eq!(report.recorded_policies, [same.hash().to_owned()]);
    assert!(report.changes.is_empty(), "{:?}", report.changes);
    for row in &report.rows {
        assert_eq!(row.recorded.as_ref(), Some(&row.simulated));
    }
}

#[test]
fn simulating_twice_gives_byte_identical_output() {
    let strict = PolicySet::from_toml(STRICT).unwrap();
    // two separate worlds: different event ids and hashes, same history
    let a = simulate_records(&exported_records(), &strict, None).unwrap();
    let b = simulate_records(&exported_records(), &strict, None).unwrap();
    assert_eq!(render_json(&a), render_json(&b));
    assert_eq!(render_table(&a), render_table(&b));
    assert!(render_table(&a).contains("P1"), "{}", render_table(&a));
}

const SCENARIO: &str = r#"
seed = 42
start = "2026-03-02T00:00:00Z"
duration = "7d"
service = "payments"

[[load]]
priority = "P1"
arrivals_per_hour = 0.5
response = { distribution = "exponential", mean = "10m" }
resolution = { distribution = "lognormal", mean = "50m", sigma = 0.8 }

[[load]]
priority = "P2"
arrivals_per_hour = 1.0
response = { distribution = "uniform", min = "5m", max = "40m" }
resolution = { distribution = "fixed", value = "3h" }
"#;

#[test]
fn scenario_mode_is_deterministic_for_a_seed() {
    let policy = PolicySet::from_toml(POLICY).unwrap();
    let scenario = Scenario::from_toml(SCENARIO).unwrap();
    let a = simulate_scenario(&scenario, &policy, None).unwrap();
    let b = simulate_scenario(&Scenario::from_toml(SCENARIO).unwrap(), &policy, None).unwrap();
    assert_eq!(render_json(&a), render_json(&b));
    assert_eq!(render_table(&a), render_table(&b));
    // about 0.5 x 168 P1 and 168 P2 arrivals
    let p1 = a.rows.iter().find(|r| r.priority == "P1").unwrap();
    let p2 = a.rows.iter().find(|r| r.priority == "P2").unwrap();
    assert!((50..=120).contains(&p1.incidents), "{}", p1.incidents);
    assert!((120..=220).contains(&p2.incidents), "{}", p2.incidents);
    // P2 resolution is always 3h < 4h: all met; P2 response at most 40m > 30m: some breach
    assert_eq!(p2.simulated.resolution.breached, 0);
    assert!(p2.simulated.response.breached > 0);
    assert!(p1.recorded.is_none());

    let other = Scenario::from_toml(&SCENARIO.replace("seed = 42", "seed = 43")).unwrap();
    let c = simulate_scenario(&other, &policy, None).unwrap();
    assert_ne!(render_json(&a), render_json(&c));

    // a stricter policy on the same load breaches more
    let strict = PolicySet::from_toml(STRICT).unwrap();
    let s = simulate_scenario(&scenario, &strict, None).unwrap();
    let total = |r: &incident_audit::sim::Report| -> usize {
        r.rows
            .iter()
            .map(|x| x.simulated.response.breached + x.simulated.resolution.breached)
            .sum()
    };
    assert!(total(&s) > total(&a));
}

#[test]
fn a_bad_scenario_is_an_error_naming_the_place() {
    let policy = PolicySet::from_toml(POLICY).unwrap();
    let bad = Scenario::from_toml(&SCENARIO.replace("mean = \"10m\"", "mean = \"ten\"")).unwrap();
    let e = simulate_scenario(&bad, &policy, None).unwrap_err();
    assert!(e.to_string().contains("load[0].response.mean"), "{e}");
    let e = Scenario::from_toml("seed = 1").unwrap_err();
    assert!(e.to_string().contains("scenario"), "{e}");
}
