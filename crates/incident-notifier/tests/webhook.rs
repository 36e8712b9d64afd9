//! A P1 routed to a real local webhook is delivered after the receiver fails the first attempt
//! with 500, and so is its breach; every request carries the Idempotency-Key and a correct
//! signature, and the notifier's events reach NOTIFY_EVENTS.

mod common;

/// incidentctl's `notifications` verb, compiled here against the real service.
#[path = "../../incident-cli/src/notifications.rs"]
mod cli_notifications;

/// What incidentctl's `crate::channel` gives `cli_notifications` (without a token here).
async fn channel(url: &str) -> anyhow::Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect()
        .await?)
}

use std::time::Duration;

use common::*;
use incident_domain::Impact;
use incident_proto::v1 as pb;
use incident_testkit::NatsServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_p1_and_its_breach_are_delivered_after_a_500_signed_and_keyed() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(1).await;
    let routes = routes_file(
        dir.path(),
        &format!(
            r#"
[[channels]]
name = "ops"
kind = "webhook"
url = "{}"
secret = "{SECRET}"

[[routes]]
name = "p1"
priorities = ["P1"]
events = ["incident.opened", "sla.warning", "sla.breached", "escalation.triggered"]
channels = ["ops"]

[delivery]
initial_backoff = "100ms"
max_backoff = "1s"
"#,
            receiver.url("/ops")
        ),
    );
    let js = jetstream(&nats).await;
    let notifier = spawn_notifier(&nats, dir.path(), &routes, "notifier.log");

    let id = new_incident_id();
    let open = opened(&id, "Checkout down", "payments", Impact::High);
    publish_incident(&js, &open).await;
    // a P3 of another incident matches no route
    let quiet = new_incident_id();
    publish_incident(&js, &opened(&quiet, "Slow page", "web", Impact::Low)).await;
    assert!(
        receiver
            .wait_until(Duration::from_secs(20), |r| r
                .iter()
                .any(|r| r.status == 200))
            .await,
        "the open was not delivered; log:\n{}",
        notifier.log()
    );
    let breach = sla_event(
        "sla.breached.v1",
        &id,
        "P1",
        "payments",
        json!({"clock": "response", "target_secs": 900, "elapsed_secs": 901}),
    );
    publish_sla(&js, &breach).await;
    assert!(
        receiver
            .wait_until(Duration::from_secs(20), |r| {
                r.iter().filter(|r| r.status == 200).count() >= 2
            })
            .await,
        "the breach was not delivered; log:\n{}",
        notifier.log()
    );

    let requests = receiver.requests();
    let mut by_key: std::collections::BTreeMap<String, Vec<&Received>> = Default::default();
    for r in &requests {
        assert!(!r.key().is_empty(), "a request without Idempotency-Key");
        assert!(
            r.signed_with(SECRET),
            "a request with a wrong signature: {r:?}"
        );
        assert_eq!(r.path, "/ops");
        by_key.entry(r.key()).or_default().push(r);
    }
    assert_eq!(by_key.len(), 2, "one notification per event: {by_key:?}");
    let mut triggers = Vec::new();
    for (key, reqs) in &by_key {
        let statuses: Vec<u16> = reqs.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![500, 200], "notification {key}");
        assert_eq!(reqs[0].body, reqs[1].body, "a retry sends the same bytes");
        let body = reqs[1].json();
        assert_eq!(body["notification_id"], key.as_str());
        assert_eq!(body["incident"]["id"], id.as_str());
        assert_eq!(body["incident"]["priority"], "P1");
        assert_eq!(body["incident"]["title"], "Checkout down");
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .contains("matched route p1")
        );
        triggers.push(body["event"]["type"].as_str().unwrap().to_owned());
    }
    triggers.sort();
    assert_eq!(triggers, vec!["incident.opened.v1", "sla.breached.v1"]);

    // what the notifier says about it
    let url = notifier.grpc_url();
    let list = wait_notifications(&url, id.as_str(), Duration::from_secs(10), |l| {
        l.len() == 2
            && l.iter()
                .all(|n| n.status == pb::NotificationStatus::Delivered as i32)
    })
    .await;
    assert_eq!(list.len(), 2, "{list:?}");
    for n in &list {
        assert_eq!(n.status, pb::NotificationStatus::Delivered as i32, "{n:?}");
        assert_eq!(n.attempts, 2);
        assert_eq!(n.response, "200");
        assert!(n.last_error.contains("HTTP 500"), "{n:?}");
        assert_eq!(n.route, "p1");
        assert_eq!(n.channel, "ops");
        assert!(by_key.contains_key(&n.id));
    }
    assert!(notifications(&url, quiet.as_str()).await.is_empty());

    // incidentctl notifications ID: a table and a JSON array
    let fetched = cli_notifications::fetch(&url, Some(id.as_str()))
        .await
        .unwrap();
    let table = cli_notifications::render(&fetched, false);
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("sla.breached.v1") && table.contains("delivered"),
        "{table}"
    );
    let array: serde_json::Value =
        serde_json::from_str(&cli_notifications::render(&fetched, true)).unwrap();
    assert_eq!(array.as_array().unwrap().len(), 2);
    assert_eq!(array[0]["status"], "delivered");
    assert_eq!(array[0]["incident_id"], id.as_str());
    assert_eq!(array[0]["trigger"]["type"], "incident.opened.v1");
    cli_notifications::run(&url, None, false).await.unwrap();

    // and the events relayed to NOTIFY_EVENTS
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let types = loop {
        let types: Vec<String> = notify_events(&js, id.as_str())
            .await
            .into_iter()
            .map(|e| e.ty)
            .collect();
        if types
            .iter()
            .filter(|t| *t == "notification.delivered.v1")
            .count()
            == 2
            || std::time::Instant::now() > deadline
        {
            break types;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (ty, n) in [
        ("notification.queued.v1", 2),
        ("notification.failed.v1", 2),
        ("notification.delivered.v1", 2),
    ] {
        assert_eq!(
            types.iter().filter(|t| *t == ty).count(),
            n,
            "{ty} in {types:?}"
        );
    }

    // SIGTERM stops it cleanly.
    let mut notifier = notifier;
    let status = notifier.terminate(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "no clean exit on SIGTERM: {status:?}\n{}",
        notifier.log()
    );
}
