//! Intake keeps taking incidents while NATS is down; the relay delivers them exactly once when
//! NATS is back.

use std::time::Duration;

use incident_e2e::{ctl_ok, start_intake, stream_events, types};
use incident_testkit::NatsServer;

#[tokio::test(flavor = "multi_thread")]
async fn opened_while_nats_is_down_reaches_the_stream_once() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let url = intake.grpc_url();

    // the stream exists once intake has seen NATS
    let first = ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "Before",
            "--service",
            "web",
            "--impact",
            "low",
            "--urgency",
            "high",
        ],
    );
    let first_id = first["id"].as_str().unwrap().to_owned();
    let seen = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        &format!("incident.v1.events.{first_id}"),
        1,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(seen.len(), 1);

    nats.stop();
    let during = ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "During",
            "--service",
            "web",
            "--impact",
            "high",
            "--urgency",
            "high",
        ],
    );
    assert_eq!(during["priority"], "P1");
    let id = during["id"].as_str().unwrap().to_owned();
    ctl_ok(&url, &["ack", &id]);

    nats.restart();
    let subject = format!("incident.v1.events.{id}");
    let events = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        &subject,
        2,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(
        types(&events),
        ["incident.opened.v1", "incident.acknowledged.v1"]
    );
    // and no copy arrives later
    let later = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        &subject,
        3,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(later.len(), 2, "an event was published twice");
}
