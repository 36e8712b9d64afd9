//! NATS stopped and restarted under load with all three services running: intake keeps taking
//! incidents, relays and consumers resume, and every incident reaches the stream once, gets its
//! SLA clocks once, and is announced by the notifier.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use incident_e2e::{start_intake, start_sla, stream_events};
use incident_proto::v1 as pb;
use incident_proto::v1::intake_service_client::IntakeServiceClient;
use incident_testkit::{NatsServer, ServiceProcess};

#[tokio::test(flavor = "multi_thread")]
async fn nats_restart_under_load_loses_and_duplicates_nothing() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("sla.toml");
    std::fs::write(
        &policy,
        "[[policies]]\nname = \"p\"\ncalendar = \"24x7\"\n[policies.response]\nP2 = \"1h\"\n[policies.resolution]\nP2 = \"8h\"\n",
    )
    .unwrap();
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let _sla = start_sla(&nats, &dir.path().join("sla"), &policy);
    let data = dir.path().join("notifier");
    let _notifier = ServiceProcess::spawn(
        "incident-notifier",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data.display().to_string()),
        ],
        &data.with_extension("log"),
    );
    let mut client = IntakeServiceClient::connect(intake.grpc_url())
        .await
        .unwrap();

    let mut opened = Vec::new();
    let started = Instant::now();
    let mut stopped = false;
    let mut restarted = false;
    while started.elapsed() < Duration::from_secs(6) {
        let t = started.elapsed();
        if !stopped && t > Duration::from_secs(2) {
            nats.stop();
            stopped = true;
        }
        if stopped && !restarted && t > Duration::from_secs(4) {
            nats.restart();
            restarted = true;
        }
        let inc = client
            .open_incident(pb::OpenIncidentRequest {
                title: format!("load {}", opened.len()),
                service: "load".into(),
                impact: pb::Impact::High as i32,
                urgency: pb::Urgency::Medium as i32,
                ..Default::default()
            })
            .await
            .expect("intake takes incidents whatever NATS does")
            .into_inner()
            .incident
            .unwrap();
        opened.push(inc.id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(opened.len() > 50, "{}", opened.len());
    let want: HashSet<&String> = opened.iter().collect();

    // every incident once on INCIDENT_EVENTS
    let events = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        "incident.v1.events.*",
        opened.len(),
        Duration::from_secs(60),
    )
    .await;
    let subjects: Vec<String> = events
        .iter()
        .map(|e| e["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        subjects.len(),
        opened.len(),
        "each incident exactly once on the stream"
    );
    assert_eq!(subjects.iter().collect::<HashSet<_>>(), want);

    // the SLA timer started each incident's clocks once
    let started_events = wait_for(
        &nats,
        "SLA_EVENTS",
        "sla.v1.events.*",
        "sla.started.v1",
        opened.len(),
    )
    .await;
    assert_eq!(
        started_events.len(),
        opened.len(),
        "one sla.started per incident"
    );
    assert_eq!(started_events.keys().collect::<HashSet<_>>(), want);
    assert!(
        started_events.values().all(|n| *n == 1),
        "no incident started twice"
    );

    // the notifier announced every incident (the default route logs every event)
    let delivered = wait_for(
        &nats,
        "NOTIFY_EVENTS",
        "notify.v1.events.*",
        "notification.delivered.v1",
        opened.len(),
    )
    .await;
    assert_eq!(
        delivered.keys().collect::<HashSet<_>>(),
        want,
        "every incident announced"
    );
}

/// Per incident (subject suffix), how many events of `ty` are on the stream, waiting up to a
/// minute for at least `want` incidents to have one.
async fn wait_for(
    nats: &NatsServer,
    stream: &str,
    filter: &str,
    ty: &str,
    want: usize,
) -> HashMap<String, usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = stream_events(&nats.url(), stream, filter, 1, Duration::from_secs(5)).await;
        let mut counts: HashMap<String, usize> = HashMap::new();
        for e in events.iter().filter(|e| e["type"] == ty) {
            *counts
                .entry(e["subject"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        if counts.len() >= want || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
