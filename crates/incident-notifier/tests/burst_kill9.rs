//! During a burst of 200 P1 incidents the notifier is killed with SIGKILL and restarted: no
//! announcement is lost, and every copy of one announcement carries the same Idempotency-Key.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use incident_domain::Impact;
use incident_proto::v1 as pb;
use incident_testkit::NatsServer;

const BURST: usize = 200;

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_9_during_a_burst_loses_no_announcement_and_keeps_keys() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The first attempt of each notification fails, so retries are pending at the kill.
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
events = ["incident.opened"]
channels = ["ops"]

[delivery]
initial_backoff = "300ms"
max_backoff = "2s"
max_attempts = 50
"#,
            receiver.url("/ops")
        ),
    );
    let js = jetstream(&nats).await;
    let mut notifier = spawn_notifier(&nats, dir.path(), &routes, "notifier-1.log");

    let ids: Vec<_> = (0..BURST).map(|_| new_incident_id()).collect();
    for id in &ids[..BURST / 2] {
        publish_incident(&js, &opened(id, "Burst", "payments", Impact::High)).await;
    }
    assert!(
        receiver
            .wait_until(Duration::from_secs(30), |r| r.len() >= 10)
            .await,
        "nothing reached the receiver; log:\n{}",
        notifier.log()
    );
    notifier.kill9();
    let at_kill = receiver.requests();
    eprintln!(
        "at the kill: {} requests, {} answered 200",
        at_kill.len(),
        at_kill.iter().filter(|r| r.status == 200).count()
    );
    // The second half arrives while the notifier is down.
    for id in &ids[BURST / 2..] {
        publish_incident(&js, &opened(id, "Burst", "payments", Impact::High)).await;
    }
    let notifier = spawn_notifier(&nats, dir.path(), &routes, "notifier-2.log");

    let all: BTreeSet<String> = ids.iter().map(|i| i.to_string()).collect();
    let delivered_incidents = |reqs: &[Received]| -> BTreeSet<String> {
        reqs.iter()
            .filter(|r| r.status == 200)
            .map(|r| {
                r.json()["incident"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let complete = receiver
        .wait_until(Duration::from_secs(90), |r| delivered_incidents(r) == all)
        .await;
    let requests = receiver.requests();
    assert!(
        complete,
        "{} of {BURST} incidents reached the receiver ({} requests before the kill); log:\n{}",
        delivered_incidents(&requests).len(),
        at_kill.len(),
        notifier.log()
    );

    // Every copy of one announcement carries the same key and the same bytes.
    let mut keys_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut body_of: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for r in &requests {
        assert!(r.signed_with(SECRET));
        let incident = r.json()["incident"]["id"].as_str().unwrap().to_owned();
        keys_of.entry(incident).or_default().insert(r.key());
        let body = body_of.entry(r.key()).or_insert_with(|| r.body.clone());
        assert_eq!(*body, r.body, "copies of {} differ", r.key());
    }
    assert_eq!(keys_of.len(), BURST);
    for (incident, keys) in &keys_of {
        assert_eq!(
            keys.len(),
            1,
            "incident {incident} announced under {keys:?}"
        );
    }

    // The restarted notifier knows every one as delivered, once.
    let url = notifier.grpc_url();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let list = loop {
        let list = client(&url)
            .await
            .list_notifications(pb::ListNotificationsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .notifications;
        let done = list
            .iter()
            .filter(|n| n.status == pb::NotificationStatus::Delivered as i32)
            .count();
        if done == BURST || std::time::Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(list.len(), BURST, "one notification per incident");
    let distinct: BTreeSet<&str> = list.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(distinct.len(), BURST);
    assert!(
        list.iter()
            .all(|n| n.status == pb::NotificationStatus::Delivered as i32),
        "not all delivered: {:?}",
        list.iter()
            .filter(|n| n.status != pb::NotificationStatus::Delivered as i32)
            .take(3)
            .collect::<Vec<_>>()
    );
}
