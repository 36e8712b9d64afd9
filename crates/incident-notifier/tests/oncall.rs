//! On-call escalation: a page nobody acknowledges reaches the second tier after the first
//! tier's timeout (and stops when every round is exhausted); an acknowledged one does not.
//! Once in-process on tokio's paused clock (the engine with a real sled log, log channels), once
//! with the real binary, real webhooks and a short timeout.

mod common;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::*;
use incident_bus::Handled;
use incident_domain::{EventKind, Impact};
use incident_eventlog::EventLog;
use incident_notifier::channels::Deliverer;
use incident_notifier::clock::Clock;
use incident_notifier::engine::Engine;
use incident_notifier::input::{Decoded, Input, decode_incident};
use incident_notifier::metrics::Metrics;
use incident_notifier::routes::Routes;
use incident_notifier::state::State;
use incident_proto::v1 as pb;
use incident_testkit::NatsServer;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{Notify, watch};

const PAGING: &str = r#"
[[channels]]
name = "pager-1"
kind = "log"
[[channels]]
name = "pager-2"
kind = "log"

[[routes]]
name = "p1"
priorities = ["P1"]
events = ["incident.opened"]
oncall = "infra"

[[oncall]]
name = "infra"
tiers = [ { channels = ["pager-1"], ack_timeout = "5m" }, { channels = ["pager-2"], ack_timeout = "10m" } ]
"#;

fn input(env: &incident_domain::Envelope) -> Box<Input> {
    match decode_incident(&env.to_canonical_bytes()).unwrap() {
        Decoded::Input(i) => i,
        other => panic!("{other:?}"),
    }
}

/// (channel, tier, round, seconds after t0 it was queued) of an incident's page notifications.
fn page_steps(
    state: &Arc<RwLock<State>>,
    incident: &str,
    t0: Timestamp,
) -> Vec<(String, u32, u32, i64)> {
    state
        .read()
        .unwrap()
        .notifications(Some(incident))
        .into_iter()
        .filter_map(|n| {
            n.page.as_ref().map(|p| {
                (
                    n.channel.clone(),
                    p.tier,
                    p.round,
                    n.queued_at.duration_since(t0).as_secs(),
                )
            })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn paused_clock_unacknowledged_page_reaches_tier_two_acknowledged_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(&dir.path().join("log")).unwrap();
    let state = Arc::new(RwLock::new(State::default()));
    let routes = Arc::new(Routes::from_toml(PAGING).unwrap());
    let t0: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
    let engine = Engine::new(
        log,
        state.clone(),
        routes.clone(),
        Clock::starting_at(t0),
        Arc::new(Deliverer::new(routes).unwrap()),
        Arc::new(Notify::new()),
        Arc::new(Metrics::default()),
    );
    let mut applied = engine.watch_applied();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (handle, task) = engine.spawn(64, stop_rx);

    let acked = new_incident_id();
    let ignored = new_incident_id();
    for id in [&acked, &ignored] {
        let env = opened(id, "Checkout down", "payments", Impact::High);
        assert_eq!(handle.submit(input(&env)).await, Handled::Done);
    }
    // One minute later someone acknowledges the first.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let ack = incident_event(&acked, EventKind::Acknowledged);
    assert_eq!(handle.submit(input(&ack)).await, Handled::Done);
    // The same event redelivered is skipped.
    assert_eq!(handle.submit(input(&ack)).await, Handled::Done);

    // Nobody acknowledges the second: wait (on the paused clock) until its page moved on.
    let reached_tier_two = tokio::time::timeout(Duration::from_secs(7200), async {
        loop {
            if page_steps(&state, ignored.as_str(), t0)
                .iter()
                .any(|s| s.1 == 2)
            {
                return;
            }
            applied.changed().await.unwrap();
        }
    })
    .await;
    assert!(reached_tier_two.is_ok(), "tier 2 never paged");
    let steps = page_steps(&state, ignored.as_str(), t0);
    assert_eq!(steps[0], ("pager-1".into(), 1, 1, 0));
    assert_eq!(
        steps[1],
        ("pager-2".into(), 2, 1, 300),
        "tier 2 exactly at the 5m timeout"
    );

    // The acknowledged one's deadline passed as well (it came first): no second tier.
    assert_eq!(
        page_steps(&state, acked.as_str(), t0),
        vec![("pager-1".into(), 1, 1, 0)]
    );
    {
        let s = state.read().unwrap();
        let pages = s.pages(Some(acked.as_str()));
        assert_eq!(pages.len(), 1);
        assert!(!pages[0].active);
        let reason = pages[0].stop_reason.clone().unwrap_or_default();
        assert!(
            reason.contains("incident.acknowledged by tests"),
            "{reason}"
        );
    }

    // With no repeat, the second tier's 10m timeout ends the page.
    let exhausted = tokio::time::timeout(Duration::from_secs(7200), async {
        loop {
            let stopped = state.read().unwrap().pages(Some(ignored.as_str()))[0]
                .stop_reason
                .clone();
            if let Some(r) = stopped {
                return r;
            }
            applied.changed().await.unwrap();
        }
    })
    .await
    .expect("the page never stopped");
    assert!(exhausted.starts_with("exhausted"), "{exhausted}");
    let s = state.read().unwrap().pages(Some(ignored.as_str()))[0].clone();
    assert_eq!(
        s.updated_at.duration_since(t0),
        SignedDuration::from_secs(900)
    );
    assert_eq!(page_steps(&state, ignored.as_str(), t0).len(), 2);

    let _ = stop_tx.send(true);
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn process_unacknowledged_page_reaches_tier_two_webhook_acknowledged_does_not() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(0).await;
    let routes = routes_file(
        dir.path(),
        &format!(
            r#"
[[channels]]
name = "tier1"
kind = "webhook"
url = "{}"
[[channels]]
name = "tier2"
kind = "webhook"
url = "{}"

[[routes]]
name = "p1"
priorities = ["P1"]
events = ["incident.opened"]
oncall = "infra"

[[oncall]]
name = "infra"
tiers = [ {{ channels = ["tier1"], ack_timeout = "2s" }}, {{ channels = ["tier2"], ack_timeout = "1h" }} ]
"#,
            receiver.url("/tier1"),
            receiver.url("/tier2")
        ),
    );
    let js = jetstream(&nats).await;
    let notifier = spawn_notifier(&nats, dir.path(), &routes, "notifier.log");

    // Acknowledged right after it opened (same stream, so in that order).
    let acked = new_incident_id();
    publish_incident(&js, &opened(&acked, "Acked", "payments", Impact::High)).await;
    publish_incident(&js, &incident_event(&acked, EventKind::Acknowledged)).await;
    let url = notifier.grpc_url();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pages = client(&url)
            .await
            .list_pages(pb::ListPagesRequest {
                incident_id: acked.to_string(),
                active_only: false,
            })
            .await
            .unwrap()
            .into_inner()
            .pages;
        if pages.first().is_some_and(|p| !p.active) {
            assert!(
                pages[0].stop_reason.contains("incident.acknowledged"),
                "{pages:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the acknowledgement did not stop the page: {pages:?}\n{}",
            notifier.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Opened after, so its deadline comes after the acknowledged one's.
    let ignored = new_incident_id();
    publish_incident(&js, &opened(&ignored, "Ignored", "payments", Impact::High)).await;

    let incident_of = |r: &Received| {
        r.json()["incident"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        receiver
            .wait_until(Duration::from_secs(30), |reqs| {
                reqs.iter()
                    .any(|r| r.path == "/tier2" && incident_of(r) == ignored.as_str())
            })
            .await,
        "tier 2 was never paged; log:\n{}",
        notifier.log()
    );
    let reqs = receiver.requests();
    let tier1: Vec<String> = reqs
        .iter()
        .filter(|r| r.path == "/tier1")
        .map(incident_of)
        .collect();
    let tier2: Vec<String> = reqs
        .iter()
        .filter(|r| r.path == "/tier2")
        .map(incident_of)
        .collect();
    assert!(tier1.contains(&acked.to_string()) && tier1.contains(&ignored.to_string()));
    assert_eq!(
        tier2,
        vec![ignored.to_string()],
        "only the unacknowledged page escalates"
    );
    let page = reqs
        .iter()
        .find(|r| r.path == "/tier2")
        .map(|r| r.json()["page"].clone())
        .unwrap();
    assert_eq!(
        (
            page["oncall"].as_str(),
            page["tier"].as_u64(),
            page["round"].as_u64()
        ),
        (Some("infra"), Some(2), Some(1))
    );
}
