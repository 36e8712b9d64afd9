//! One incident from a person's command to a durable, replayable event on NATS, and through a
//! crash of intake.

use std::time::Duration;

use incident_e2e::{ctl, ctl_ok, open_incident, start_intake, stream_events, types};
use incident_testkit::NatsServer;

#[tokio::test(flavor = "multi_thread")]
async fn open_prioritise_ack_resolve_survive_kill9() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");
    let mut intake = start_intake(&nats, &data);
    let url = intake.grpc_url();

    let p1 = ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "Checkout down",
            "--service",
            "payments",
            "--impact",
            "high",
            "--urgency",
            "high",
            "--group",
            "payments-oncall",
        ],
    );
    assert_eq!(p1["priority"], "P1");
    assert_eq!(p1["status"], "open");
    assert_eq!(p1["title"], "Checkout down");
    assert_eq!(p1["service"], "payments");
    assert_eq!(p1["group"], "payments-oncall");
    let id = p1["id"].as_str().unwrap().to_owned();

    let p3 = ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "Slow reports",
            "--service",
            "reporting",
            "--impact",
            "medium",
            "--urgency",
            "medium",
        ],
    );
    assert_eq!(p3["priority"], "P3");

    assert_eq!(ctl_ok(&url, &["ack", &id])["status"], "acknowledged");
    assert_eq!(
        ctl_ok(&url, &["resolve", &id, "--note", "rolled back"])["status"],
        "resolved"
    );

    let refused = ctl(&url, &["ack", &id]);
    assert!(!refused.ok, "ack of a resolved incident must fail");
    assert!(
        refused.stderr.contains("FAILED_PRECONDITION"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("resolved"), "{}", refused.stderr);

    let subject = format!("incident.v1.events.{id}");
    let events = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        &subject,
        3,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(
        types(&events),
        [
            "incident.opened.v1",
            "incident.acknowledged.v1",
            "incident.resolved.v1"
        ]
    );
    for e in &events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "incident-intake");
        assert_eq!(e["subject"], id.as_str());
    }

    intake.kill9();
    let intake = start_intake(&nats, &data);
    let url = intake.grpc_url();
    let got = ctl_ok(&url, &["get", &id]);
    assert_eq!(got["status"], "resolved");
    assert_eq!(got["resolution_note"], "rolled back");
    let list = ctl_ok(&url, &["list"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&id.as_str()));
    assert!(ids.contains(&p3["id"].as_str().unwrap()));

    // nothing was published twice by the restarted relay
    let again = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        &subject,
        4,
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(again.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_keeps_everything() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");
    let mut intake = start_intake(&nats, &data);
    let url = intake.grpc_url();
    let inc = ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "Disk full",
            "--service",
            "db",
            "--impact",
            "low",
            "--urgency",
            "low",
        ],
    );
    assert_eq!(inc["priority"], "P5");
    let status = intake
        .terminate(Duration::from_secs(10))
        .expect("intake stops within 10 s");
    assert!(status.success(), "exit status {status:?}\n{}", intake.log());
    let intake = start_intake(&nats, &data);
    let got = ctl_ok(&intake.grpc_url(), &["get", inc["id"].as_str().unwrap()]);
    assert_eq!(got["title"], "Disk full");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_from_the_saved_index_then_a_kill9_keeps_every_incidents_version() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");
    let mut intake = start_intake(&nats, &data);
    let a = open_incident(&intake.grpc_url(), "Saved with the snapshot", "low");
    // a clean stop writes the snapshot and, beside the records, the index
    intake
        .terminate(Duration::from_secs(10))
        .expect("clean stop");
    assert!(data.join("log").join("index").exists());

    // the next start reads the index, not the records it covers; what follows is appended
    // after it, and the process is killed
    let mut intake = start_intake(&nats, &data);
    let url = intake.grpc_url();
    ctl_ok(&url, &["ack", &a]);
    let b = open_incident(&url, "Opened after the saved index", "low");
    intake.kill9();

    // every command below needs the incident's exact version in the log's index: a version
    // the index missed or invented would refuse it as a conflict
    let intake = start_intake(&nats, &data);
    let url = intake.grpc_url();
    assert_eq!(ctl_ok(&url, &["get", &a])["status"], "acknowledged");
    ctl_ok(&url, &["resolve", &a, "--note", "done"]);
    ctl_ok(&url, &["ack", &b]);
    ctl_ok(&url, &["resolve", &b, "--note", "done"]);
    for id in [&a, &b] {
        assert_eq!(ctl_ok(&url, &["get", id])["status"], "resolved");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_log_stops_the_start_with_a_clear_message() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");
    let mut intake = start_intake(&nats, &data);
    let inc = ctl_ok(
        &intake.grpc_url(),
        &[
            "open",
            "--title",
            "Will be tampered",
            "--service",
            "db",
            "--impact",
            "low",
            "--urgency",
            "low",
        ],
    );
    assert_eq!(inc["priority"], "P5");
    intake
        .terminate(Duration::from_secs(10))
        .expect("clean stop");

    // rewrite the first record's event bytes behind the log's back
    incident_e2e::damage_record(&data.join("log"), Some(1), 10);
    let mut restarted = start_intake(&nats, &data);
    let status = restarted
        .wait_exit(Duration::from_secs(20))
        .expect("intake refuses to start");
    assert!(!status.success());
    let log = restarted.log();
    assert!(log.contains("damaged") && log.contains("record 1"), "{log}");
}
