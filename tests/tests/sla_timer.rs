//! The SLA timer against real processes: with P1 response 2 s / resolution 4 s, an
//! unacknowledged P1 is breached and escalated after 6 s even though incident-sla was killed
//! with -9 and restarted in between; a P1 put on hold before its deadline is paused and does
//! not breach.

use std::time::{Duration, Instant};

use incident_e2e::{ctl_ok, sla_ctl, start_intake, start_sla, stream_events, types};
use incident_testkit::NatsServer;

const POLICY: &str = r#"
[[policies]]
name = "acceptance"
calendar = "24x7"
warn_at = [0.5]
pause_on = ["on_hold"]
[policies.response]
P1 = "2s"
[policies.resolution]
P1 = "4s"
[[policies.escalation]]
at = 1.0
level = 1
"#;

fn clock<'a>(sla: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    sla["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clock"] == name)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn breach_and_escalation_survive_kill9_and_hold_pauses() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("sla.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let mut sla = start_sla(&nats, &dir.path().join("sla"), &policy);
    let url = intake.grpc_url();

    let opened_at = Instant::now();
    let late = ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "Nobody answers",
            "--service",
            "payments",
            "--impact",
            "high",
            "--urgency",
            "high",
        ],
    );
    let held = ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "Waiting on vendor",
            "--service",
            "payments",
            "--impact",
            "high",
            "--urgency",
            "high",
        ],
    );
    let late_id = late["id"].as_str().unwrap().to_owned();
    let held_id = held["id"].as_str().unwrap().to_owned();
    ctl_ok(&url, &["start", &held_id]);
    ctl_ok(&url, &["hold", &held_id, "--reason", "vendor"]);

    // the clocks started before the kill
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = std::process::Command::new(incident_testkit::bin_path("incidentctl"))
            .args([
                "-o",
                "json",
                "--sla-url",
                &sla.grpc_url(),
                "sla",
                "show",
                &late_id,
            ])
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "clocks never started: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        opened_at.elapsed() < Duration::from_secs(2),
        "the test machine is too slow for a 2 s target"
    );
    sla.kill9();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sla = start_sla(&nats, &dir.path().join("sla"), &policy);

    // wait until 6 s after opening
    let six = Duration::from_secs(6);
    if opened_at.elapsed() < six {
        tokio::time::sleep(six - opened_at.elapsed()).await;
    }
    let show = sla_ctl(&sla.grpc_url(), &["sla", "show", &late_id]);
    assert_eq!(clock(&show, "response")["state"], "breached", "{show}");
    assert_eq!(clock(&show, "resolution")["state"], "breached", "{show}");
    assert_eq!(show["escalations"], serde_json::json!([1]));

    let held_show = sla_ctl(&sla.grpc_url(), &["sla", "show", &held_id]);
    assert_eq!(clock(&held_show, "response")["state"], "met", "{held_show}");
    assert_eq!(
        clock(&held_show, "resolution")["state"],
        "paused",
        "{held_show}"
    );

    let subject = format!("sla.v1.events.{late_id}");
    let events = stream_events(
        &nats.url(),
        "SLA_EVENTS",
        &subject,
        6,
        Duration::from_secs(10),
    )
    .await;
    let t = types(&events);
    assert_eq!(
        t.iter().filter(|x| *x == "sla.breached.v1").count(),
        2,
        "{t:?}"
    );
    assert_eq!(
        t.iter().filter(|x| *x == "escalation.triggered.v1").count(),
        1,
        "{t:?}"
    );
    for e in &events {
        assert_eq!(e["source"], "incident-sla");
        assert_eq!(e["data"]["policy"]["name"], "acceptance");
    }
    let held_events = stream_events(
        &nats.url(),
        "SLA_EVENTS",
        &format!("sla.v1.events.{held_id}"),
        3,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        !types(&held_events).contains(&"sla.breached.v1".to_owned()),
        "{:?}",
        types(&held_events)
    );

    let breaches = sla_ctl(&sla.grpc_url(), &["sla", "breaches"]);
    assert_eq!(breaches.as_array().unwrap().len(), 2);
    let report = sla_ctl(&sla.grpc_url(), &["report", "--by", "priority"]);
    let p1 = &report["rows"][0];
    assert_eq!(p1["key"], "P1");
    assert_eq!(p1["incidents"], 2);
    assert_eq!(p1["response_target_secs"], 2);
    assert_eq!(p1["resolution_breached"], 1);
}
