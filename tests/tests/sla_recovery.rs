//! The SLA timer's crashes and damage, against real processes: a deadline that passed while it
//! was down fires late and once, unless what arrived meanwhile stopped the clock; kill -9 in the
//! middle of a burst of breaches records each breach exactly once; a damaged log is refused and
//! rebuilt from SLA_EVENTS and INCIDENT_EVENTS without publishing anything twice.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use incident_e2e::{ctl_ok, open_incident, sla_ctl, start_intake, start_sla, stream_events, types};
use incident_proto::v1 as pb;
use incident_proto::v1::intake_service_client::IntakeServiceClient;
use incident_testkit::NatsServer;

const POLICY: &str = r#"
[[policies]]
name = "recovery"
calendar = "24x7"
warn_at = []
pause_on = ["on_hold"]
[policies.response]
P1 = "2s"
P2 = "12s"
[policies.resolution]
P1 = "4s"
P2 = "1h"
[[policies.escalation]]
at = 1.0
level = 1
"#;

fn clock_state(show: &serde_json::Value, name: &str) -> String {
    show["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clock"] == name)
        .map(|c| c["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

/// Polls `incidentctl sla show <id>` until `ok` holds for it.
async fn wait_show(
    sla_url: &str,
    id: &str,
    within: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let out = std::process::Command::new(incident_testkit::bin_path("incidentctl"))
            .args(["-o", "json", "--sla-url", sla_url, "sla", "show", id])
            .output()
            .unwrap();
        let show: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if out.status.success() && ok(&show) {
            return show;
        }
        assert!(Instant::now() < deadline, "timed out; last answer: {show}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Counts of each event type on the SLA events of one incident, once `ready` holds for them
/// (or after 15 s, whatever is there then).
async fn sla_types_when(
    nats: &NatsServer,
    id: &str,
    ready: impl Fn(&HashMap<String, usize>) -> bool,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let events = stream_events(
            &nats.url(),
            "SLA_EVENTS",
            &format!("sla.v1.events.{id}"),
            0,
            Duration::ZERO,
        )
        .await;
        let mut counts = HashMap::new();
        for t in types(&events) {
            *counts.entry(t).or_insert(0) += 1;
        }
        if ready(&counts) || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(types: &HashMap<String, usize>, ty: &str) -> usize {
    types.get(ty).copied().unwrap_or(0)
}

/// Response 5 s: room for the opens, the kill and an acknowledgement before the deadline on a
/// loaded machine.
const POLICY_OUTAGE: &str = r#"
[[policies]]
name = "outage"
calendar = "24x7"
warn_at = []
pause_on = ["on_hold"]
[policies.response]
P1 = "5s"
[policies.resolution]
P1 = "1h"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_passed_while_down_fire_late_unless_the_clock_was_stopped_before_them() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("sla.toml");
    std::fs::write(&policy, POLICY_OUTAGE).unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let url = intake.grpc_url();
    let mut sla = start_sla(&nats, &dir.path().join("sla"), &policy);

    let opened_at = Instant::now();
    let answered = open_incident(&url, "answered in time while the SLA timer is down", "high");
    let forgotten = open_incident(&url, "nobody answers", "high");
    let late = open_incident(
        &url,
        "answered too late while the SLA timer is down",
        "high",
    );
    // every incident was opened by now, so each deadline is at most 5 s from here
    let all_opened = Instant::now();
    for id in [&answered, &forgotten, &late] {
        wait_show(&sla.grpc_url(), id, Duration::from_secs(10), |_| true).await;
    }
    sla.kill9();
    ctl_ok(&url, &["ack", &answered]);
    assert!(
        opened_at.elapsed() < Duration::from_millis(4500),
        "the test machine is too slow for a 5 s target"
    );
    // counted from the last open: on a slow machine the opens themselves take a while
    let after = |ms| Duration::from_millis(ms).saturating_sub(all_opened.elapsed());
    tokio::time::sleep(after(5500)).await;
    ctl_ok(&url, &["ack", &late]);
    tokio::time::sleep(after(6000)).await;

    let _sla = start_sla(&nats, &dir.path().join("sla"), &policy);
    // the deadline nobody met fires once, late, after the restart
    let forgotten_types =
        sla_types_when(&nats, &forgotten, |t| count(t, "sla.breached.v1") >= 1).await;
    assert_eq!(
        count(&forgotten_types, "sla.breached.v1"),
        1,
        "{forgotten_types:?}"
    );
    let events = stream_events(
        &nats.url(),
        "SLA_EVENTS",
        &format!("sla.v1.events.{forgotten}"),
        0,
        Duration::ZERO,
    )
    .await;
    let breach = events
        .iter()
        .find(|e| e["type"] == "sla.breached.v1")
        .unwrap();
    assert!(
        breach["data"]["late_ms"].as_i64().unwrap() >= 500,
        "it fired late, after the restart: {breach}"
    );
    // acknowledged after the deadline: breached, then met
    let late_types = sla_types_when(&nats, &late, |t| count(t, "sla.met.v1") >= 1).await;
    assert_eq!(count(&late_types, "sla.breached.v1"), 1, "{late_types:?}");
    assert_eq!(count(&late_types, "sla.met.v1"), 1, "{late_types:?}");
    // acknowledged in time: met, and no breach even though the timer task started first
    let answered_types = sla_types_when(&nats, &answered, |t| count(t, "sla.met.v1") >= 1).await;
    assert_eq!(
        count(&answered_types, "sla.met.v1"),
        1,
        "{answered_types:?}"
    );
    assert_eq!(
        count(&answered_types, "sla.breached.v1"),
        0,
        "{answered_types:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_during_a_burst_of_breaches_records_each_exactly_once() {
    const N: usize = 300;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("sla.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let mut sla = start_sla(&nats, &dir.path().join("sla"), &policy);
    let client = incident_e2e::connect(&nats.url()).await;
    let mut sla_events = client.subscribe("sla.v1.events.*").await.unwrap();

    // N P1 incidents opened at once: their 2 s response deadlines come due together
    let opens = (0..N).map(|i| {
        let url = intake.grpc_url();
        async move {
            let mut c = IntakeServiceClient::connect(url).await.unwrap();
            c.open_incident(pb::OpenIncidentRequest {
                title: format!("burst {i}"),
                service: "payments".into(),
                impact: pb::Impact::High as i32,
                urgency: pb::Urgency::High as i32,
                request_id: format!("burst-{i}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .incident
            .unwrap()
            .id
        }
    });
    let ids: Vec<String> = futures::future::join_all(opens).await;

    // kill -9 as soon as the first breach is out: the rest are being recorded
    let mut breaches_before_kill = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sla_events.next()).await {
        let e: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        if e["type"] == "sla.breached.v1" {
            breaches_before_kill += 1;
            break;
        }
    }
    assert_eq!(breaches_before_kill, 1, "no breach within 20 s");
    sla.kill9();
    let seen = stream_events(
        &nats.url(),
        "SLA_EVENTS",
        "sla.v1.events.*",
        0,
        Duration::ZERO,
    )
    .await;
    let on_stream_at_kill = seen
        .iter()
        .filter(|e| e["type"] == "sla.breached.v1")
        .count();
    eprintln!("breaches on the stream right after the kill: {on_stream_at_kill} of {N}");

    let sla = start_sla(&nats, &dir.path().join("sla"), &policy);
    // each incident breaches its response (2 s) and resolution (4 s) clocks exactly once
    let want = 2 * N;
    let deadline = Instant::now() + Duration::from_secs(60);
    let breached = loop {
        let events = stream_events(
            &nats.url(),
            "SLA_EVENTS",
            "sla.v1.events.*",
            0,
            Duration::ZERO,
        )
        .await;
        let breached: Vec<serde_json::Value> = events
            .into_iter()
            .filter(|e| e["type"] == "sla.breached.v1")
            .collect();
        if breached.len() >= want || Instant::now() > deadline {
            break breached;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let mut per_clock: HashMap<(String, String), usize> = HashMap::new();
    for b in &breached {
        let key = (
            b["subject"].as_str().unwrap().to_owned(),
            b["data"]["clock"].as_str().unwrap().to_owned(),
        );
        *per_clock.entry(key).or_insert(0) += 1;
    }
    for id in &ids {
        for clock in ["response", "resolution"] {
            assert_eq!(
                per_clock.get(&(id.clone(), clock.to_owned())),
                Some(&1),
                "{id} {clock}: {} breaches on the stream in all",
                breached.len()
            );
        }
    }
    assert_eq!(breached.len(), want);
    let listed = sla_ctl(&sla.grpc_url(), &["sla", "breaches"]);
    assert_eq!(listed.as_array().unwrap().len(), want);
}

fn damage_last_record(log_dir: &Path) -> u64 {
    incident_e2e::damage_record(log_dir, None, 5)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_sla_log_is_rebuilt_from_the_streams() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("sla.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let url = intake.grpc_url();
    let data = dir.path().join("sla");
    let mut sla = start_sla(&nats, &data, &policy);

    let breached = open_incident(&url, "nobody answers", "high");
    let answered = open_incident(&url, "answered", "medium");
    let running = open_incident(&url, "still counting", "medium");
    ctl_ok(&url, &["ack", &answered]);
    // both P1 clocks of `breached` breach (2 s, 4 s) and it escalates; the P2 `running`
    // (12 s) still counts
    wait_show(&sla.grpc_url(), &breached, Duration::from_secs(15), |s| {
        clock_state(s, "resolution") == "breached"
    })
    .await;
    // both breaches and the escalation are on the stream before the kill
    let before = sla_types_when(&nats, &breached, |t| {
        count(t, "sla.breached.v1") == 2 && count(t, "escalation.triggered.v1") == 1
    })
    .await;
    assert_eq!(count(&before, "sla.breached.v1"), 2, "{before:?}");
    assert_eq!(count(&before, "escalation.triggered.v1"), 1, "{before:?}");
    sla.kill9();
    let damaged = damage_last_record(&data.join("log"));
    // what arrives while the log is broken is consumed after the rebuild
    ctl_ok(&url, &["resolve", &answered]);

    let mut refused = start_sla(&nats, &data, &policy);
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("a damaged log stops the start");
    assert!(!status.success());
    let log = refused.log();
    assert!(log.contains(&format!("record {damaged}")), "{log}");
    assert!(log.contains("--rebuild-log-from-jetstream"), "{log}");

    let out = std::process::Command::new(incident_testkit::bin_path("incident-sla"))
        .env("NATS_URL", nats.url())
        .env("DATA_DIR", &data)
        .env("SLA_POLICY_FILE", &policy)
        .arg("--rebuild-log-from-jetstream")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rebuilt"]["incidents"], 3, "{report}");
    assert_eq!(report["rebuilt"]["breaches"], 2, "{report}");
    assert_eq!(report["rebuilt"]["unplaced"], 0, "{report}");

    let sla = start_sla(&nats, &data, &policy);
    let show = wait_show(&sla.grpc_url(), &breached, Duration::from_secs(10), |_| {
        true
    })
    .await;
    assert_eq!(clock_state(&show, "response"), "breached", "{show}");
    assert_eq!(clock_state(&show, "resolution"), "breached", "{show}");
    assert_eq!(show["escalations"], serde_json::json!([1]), "{show}");
    // the resolve sent while the log was broken reached the rebuilt state
    wait_show(&sla.grpc_url(), &answered, Duration::from_secs(10), |s| {
        clock_state(s, "resolution") == "met"
    })
    .await;
    // the running clock kept its start and breaches once, at 12 s
    wait_show(&sla.grpc_url(), &running, Duration::from_secs(20), |s| {
        clock_state(s, "response") == "breached"
    })
    .await;

    // the running clock breached once on the stream, the resolve's met is there: by then
    // anything published twice would be too
    let running_types = sla_types_when(&nats, &running, |t| count(t, "sla.breached.v1") >= 1).await;
    assert_eq!(
        count(&running_types, "sla.started.v1"),
        1,
        "{running_types:?}"
    );
    assert_eq!(
        count(&running_types, "sla.breached.v1"),
        1,
        "{running_types:?}"
    );
    let answered_types = sla_types_when(&nats, &answered, |t| count(t, "sla.met.v1") >= 2).await;
    assert_eq!(
        count(&answered_types, "sla.started.v1"),
        1,
        "{answered_types:?}"
    );
    assert_eq!(
        count(&answered_types, "sla.met.v1"),
        2,
        "{answered_types:?}"
    );
    let after = sla_types_when(&nats, &breached, |_| true).await;
    assert_eq!(after, before, "nothing of `breached` was published twice");
}
