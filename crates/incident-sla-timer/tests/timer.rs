//! The SLA timer's engine, writer and timer loop on a real sled log, driven by tokio's paused
//! clock: warnings, breaches and escalations fire at their due instants, once, also after a
//! restart that missed them; pauses hold the clocks; redeliveries are skipped; bad input is
//! rejected.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use incident_bus::{Delivery, Handled};
use incident_domain::testing::test_id;
use incident_domain::{
    Envelope, EventKind, Impact, IncidentEvent, IncidentId, Source, Urgency, stored,
};
use incident_eventlog::EventLog;
use incident_sla::PolicySet;
use incident_sla_timer::timesource::TimeSource;
use incident_sla_timer::writer::{FIRE_BATCH, Writer};
use incident_sla_timer::{rebuild, timer_loop};
use jiff::Timestamp;
use tokio::sync::{Notify, watch};

const POLICY: &str = r#"
[[policies]]
name = "fast"
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
[[policies.escalation]]
at = 1.5
level = 2
"#;

fn t0() -> Timestamp {
    "2026-12-01T09:00:00Z".parse().unwrap()
}

fn at_ms(ms: i64) -> Timestamp {
    t0() + jiff::SignedDuration::from_millis(ms)
}

fn incident_event(ms: i64, kind: EventKind) -> Envelope {
    let e = IncidentEvent {
        incident_id: test_id(),
        at: at_ms(ms),
        actor: "alice".into(),
        kind,
    };
    stored::encode(&e, &uuid::Uuid::now_v7().to_string())
}

/// The open of a P1 incident of its own (a new id each call) at 0.
fn another_p1_opened() -> Envelope {
    let e = IncidentEvent {
        incident_id: IncidentId::from_uuid_bytes(*uuid::Uuid::now_v7().as_bytes()),
        at: t0(),
        actor: "alice".into(),
        kind: opened_p1(),
    };
    stored::encode(&e, &uuid::Uuid::now_v7().to_string())
}

fn opened_p1() -> EventKind {
    EventKind::Opened {
        title: "Checkout down".into(),
        description: String::new(),
        service: "payments".into(),
        group: "payments-oncall".into(),
        impact: Impact::High,
        urgency: Urgency::High,
        priority: incident_domain::Priority::P1,
        dedup_key: None,
        request_id: None,
        source: Source::person(),
    }
}

fn delivery(env: &Envelope) -> Delivery {
    Delivery {
        id: env.id.clone(),
        subject: format!("incident.v1.events.{}", env.subject),
        payload: env.to_canonical_bytes().into(),
        headers: None,
        stream_sequence: 1,
        delivered: 1,
    }
}

struct Harness {
    writer: Arc<Writer>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(log: &EventLog, now: Timestamp) -> Harness {
    let mut engine = rebuild(log).unwrap().0;
    let activation = engine.activate(PolicySet::from_toml(POLICY).unwrap(), now);
    let timer_wake = Arc::new(Notify::new());
    let writer = Arc::new(Writer::new(
        log.clone(),
        Arc::new(Mutex::new(engine)),
        Arc::new(Notify::new()),
        timer_wake.clone(),
    ));
    if let Some(env) = activation {
        writer.activate(env).await.unwrap();
    }
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(timer_loop(
        writer.clone(),
        TimeSource::new(now),
        timer_wake,
        stop_rx,
    ));
    Harness { writer, stop, task }
}

impl Harness {
    async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.task.await.unwrap();
    }
}

/// (type, data) of the SLA events in the log, in order.
fn sla_events(log: &EventLog) -> Vec<(String, serde_json::Value)> {
    log.read_from(1)
        .map(|r| Envelope::from_slice(&r.unwrap().event).unwrap())
        .filter(|e| e.source == "incident-sla" && e.ty != "sla.policy_activated.v1")
        .map(|e| (e.ty, e.data))
        .collect()
}

/// The ids of the incident events recorded in the log, in log order.
fn input_ids(log: &EventLog) -> Vec<String> {
    log.read_from(1)
        .map(|r| r.unwrap())
        .filter(|r| !incident_sla_timer::writer::is_own_event(r))
        .map(|r| Envelope::from_slice(&r.event).unwrap().id)
        .collect()
}

fn types(log: &EventLog) -> Vec<String> {
    sla_events(log).into_iter().map(|(t, _)| t).collect()
}

/// Lets the timer task run at the current (paused) instant.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_p1_warns_breaches_and_escalates_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let h = start(&log, t0()).await;
    assert_eq!(
        h.writer
            .on_delivery(delivery(&incident_event(0, opened_p1())))
            .await,
        Handled::Done
    );
    settle().await;
    assert_eq!(types(&log), ["sla.started.v1"]);

    tokio::time::advance(Duration::from_millis(990)).await;
    settle().await;
    assert_eq!(types(&log), ["sla.started.v1"], "nothing before 1 s");
    tokio::time::advance(Duration::from_millis(20)).await;
    settle().await;
    assert_eq!(
        types(&log),
        ["sla.started.v1", "sla.warning.v1"],
        "response warning at 50 %"
    );

    tokio::time::advance(Duration::from_secs(5)).await;
    settle().await;
    let events = sla_events(&log);
    let ty: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        ty,
        [
            "sla.started.v1",
            "sla.warning.v1",
            "sla.warning.v1",
            "sla.breached.v1",
            "sla.breached.v1",
            "escalation.triggered.v1",
            "escalation.triggered.v1",
        ]
    );
    let (_, breach) = &events[3];
    assert_eq!(breach["clock"], "response");
    assert_eq!(breach["target_secs"], 2);
    assert_eq!(breach["incident"]["priority"], "P1");
    assert_eq!(breach["policy"]["name"], "fast");
    assert_eq!(breach["due_at"], at_ms(2000).to_string());
    let (_, esc) = &events[6];
    assert_eq!(esc["level"], 2);
    assert_eq!(esc["due_at"], at_ms(6000).to_string());

    // nothing fires twice
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;
    assert_eq!(sla_events(&log).len(), 7);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_deadlines_is_recorded_in_group_commits_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let h = start(&log, t0()).await;
    // one more than a group commit of fired incidents holds: all due at the same instant
    let n = FIRE_BATCH + 1;
    for _ in 0..n {
        let d = delivery(&another_p1_opened());
        assert_eq!(h.writer.on_delivery(d).await, Handled::Done);
    }
    settle().await;
    let appends = |w: &Writer| w.counters.append_batches.load(Ordering::Relaxed);
    let before = appends(&h.writer);

    tokio::time::advance(Duration::from_millis(1010)).await;
    settle().await;
    let warned: Vec<String> = log
        .read_from(1)
        .map(|r| Envelope::from_slice(&r.unwrap().event).unwrap())
        .filter(|e| e.ty == "sla.warning.v1")
        .map(|e| e.subject)
        .collect();
    assert_eq!(warned.len(), n, "every incident warned");
    let distinct: std::collections::HashSet<&String> = warned.iter().collect();
    assert_eq!(distinct.len(), n, "each incident once");
    assert_eq!(
        appends(&h.writer) - before,
        2,
        "the burst takes two group commits, not one append per incident"
    );
    assert_eq!(h.writer.counters.warnings.load(Ordering::Relaxed), n as u64);
    h.shutdown().await;
}

#[tokio::test]
async fn incident_events_handled_together_are_recorded_in_one_group_commit_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let writer = consume_only(&log, &[]).await;
    let appends = |w: &Writer| w.counters.append_batches.load(Ordering::Relaxed);
    let before = appends(&writer);
    // 30 incidents opened, each acknowledged right after its open in the same batch; one
    // invalid message and one repeat of an open among them
    let mut deliveries = Vec::new();
    let mut opens = Vec::new();
    for _ in 0..30 {
        let open = another_p1_opened();
        let mut ack = incident_event(500, EventKind::Acknowledged);
        ack.subject = open.subject.clone();
        deliveries.push(delivery(&open));
        deliveries.push(delivery(&ack));
        opens.push(open);
    }
    let mut bad = delivery(&opens[0]);
    bad.id = "not-an-event".into();
    bad.payload = bytes_of("{\"not\": \"an event\"}");
    deliveries.insert(7, bad);
    deliveries.insert(20, delivery(&opens[3]));
    let order: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    // started in this order, as the consumer starts them, and all in flight at once
    let handled =
        futures::future::join_all(deliveries.into_iter().map(|d| writer.on_delivery(d))).await;

    for (i, h) in handled.iter().enumerate() {
        match i {
            7 => assert!(matches!(h, Handled::Reject(_)), "{h:?}"),
            _ => assert_eq!(h, &Handled::Done, "delivery {i}"),
        }
    }
    // the first finds the writer free and is recorded alone; the rest queue meanwhile
    assert_eq!(
        appends(&writer) - before,
        2,
        "two group commits, not one append per event"
    );
    assert_eq!(writer.counters.inputs.load(Ordering::Relaxed), 60);
    assert_eq!(
        writer.counters.duplicates_skipped.load(Ordering::Relaxed),
        1
    );
    // the inputs in the log in the order they were handed over, each once
    let inputs = input_ids(&log);
    let expected: Vec<String> = order
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7 && *i != 20)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(inputs, expected);
    // each acknowledgement met its incident's response clock: applied after its open
    let met = types(&log).iter().filter(|t| *t == "sla.met.v1").count();
    assert_eq!(met, 30);
}

/// Clocks with a target by state, counted the long way: each incident's state as of its last
/// change, as `Engine::clock_counts` defines it.
fn clocks_by_state_counted_one_by_one(engine: &incident_sla_timer::engine::Engine) -> [u64; 4] {
    let mut counts = [0; 4];
    for (_, t) in engine.incidents() {
        let st = t.clocks.state_at(t.clocks.last_input_at());
        for v in [&st.response, &st.resolution] {
            if v.target.is_some() {
                let i = incident_sla_timer::engine::CLOCK_STATES
                    .iter()
                    .position(|s| *s == v.state)
                    .unwrap();
                counts[i] += 1;
            }
        }
    }
    counts
}

#[tokio::test]
async fn clocks_by_state_are_kept_as_incidents_change_fire_and_are_put_back() {
    use incident_sla_timer::engine::Engine;
    let mut engine = Engine::default();
    let _ = engine.activate(PolicySet::from_toml(POLICY).unwrap(), t0());
    let check = |engine: &Engine, step: &str| {
        assert_eq!(
            engine.clock_counts(),
            clocks_by_state_counted_one_by_one(engine),
            "after {step}"
        );
    };
    let opens: Vec<Envelope> = (0..4).map(|_| another_p1_opened()).collect();
    for open in &opens {
        engine.on_incident_event(open, t0()).unwrap();
    }
    check(&engine, "the opens");
    assert_eq!(
        engine.clock_counts(),
        [8, 0, 0, 0],
        "two running clocks each"
    );
    let on = |i: usize, ms: i64, kind: EventKind| {
        let mut e = incident_event(ms, kind);
        e.subject = opens[i].subject.clone();
        e
    };
    engine
        .on_incident_event(&on(0, 500, EventKind::Acknowledged), t0())
        .unwrap();
    check(&engine, "an acknowledgement");
    let hold = on(
        1,
        500,
        EventKind::PutOnHold {
            reason: "waiting for the vendor".into(),
        },
    );
    let held = engine.on_incident_event(&hold, t0()).unwrap();
    check(&engine, "a hold");
    assert_eq!(engine.clock_counts(), [5, 2, 1, 0]);
    engine.undo(held.undo);
    check(&engine, "the hold put back");
    assert_eq!(engine.clock_counts(), [7, 0, 1, 0]);

    let mut fired = engine.fire_due(at_ms(2500));
    check(&engine, "the response breaches");
    assert_eq!(engine.clock_counts(), [4, 0, 1, 3]);
    let k = fired
        .iter()
        .position(|(id, _)| *id == opens[3].subject)
        .unwrap();
    engine.undo(fired.remove(k).1.undo);
    check(&engine, "one breach put back");
    assert_eq!(engine.clock_counts(), [5, 0, 1, 2]);
    engine
        .on_incident_event(&on(2, 3000, EventKind::Acknowledged), t0())
        .unwrap();
    check(&engine, "an acknowledgement after the breach");
}

#[tokio::test]
async fn an_event_already_recorded_under_another_delivery_id_does_not_hold_up_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let x = another_p1_opened();
    let writer = consume_only(&log, std::slice::from_ref(&x)).await;
    // X's open again under a stream sequence for an id (published without a message id), Y's
    // open twice so, and X's acknowledgement, all handled together
    let again = |env: &Envelope, seq: u64| {
        let mut d = delivery(env);
        d.id = format!("INCIDENT_EVENTS:{seq}");
        d
    };
    let y = another_p1_opened();
    let mut ack = incident_event(500, EventKind::Acknowledged);
    ack.subject = x.subject.clone();
    let deliveries = vec![again(&x, 3), again(&y, 4), again(&y, 5), delivery(&ack)];
    let handled =
        futures::future::join_all(deliveries.into_iter().map(|d| writer.on_delivery(d))).await;
    assert!(handled.iter().all(|h| *h == Handled::Done), "{handled:?}");

    let inputs = input_ids(&log);
    assert_eq!(
        inputs,
        [x.id.clone(), y.id.clone(), ack.id.clone()],
        "each event once"
    );
    let engine = writer.engine.lock().unwrap();
    assert!(engine.get(&y.subject).is_some(), "Y's clocks run");
    assert_eq!(
        engine.clock_counts(),
        clocks_by_state_counted_one_by_one(&engine)
    );
    // X: response met by the acknowledgement, resolution running; Y: both running
    assert_eq!(engine.clock_counts(), [3, 0, 1, 0]);
    // the state is what the log folds back to
    let rebuilt = rebuild(&log).unwrap().0;
    assert_eq!(rebuilt.clock_counts(), engine.clock_counts());
    assert_eq!(rebuilt.next_due_at(), engine.next_due_at());
}

#[tokio::test]
async fn incidents_fired_together_and_put_back_fire_again_the_same() {
    let mut engine = incident_sla_timer::engine::Engine::default();
    let _ = engine.activate(PolicySet::from_toml(POLICY).unwrap(), t0());
    for _ in 0..3 {
        engine
            .on_incident_event(&another_p1_opened(), t0())
            .unwrap();
    }
    let fired = engine.fire_due(at_ms(2500));
    assert_eq!(fired.len(), 3);
    assert_eq!(engine.breaches().len(), 3);
    let what =
        |fired: &[(String, incident_sla_timer::engine::Derived)]| -> Vec<(String, Vec<String>)> {
            fired
                .iter()
                .map(|(id, d)| (id.clone(), d.events.iter().map(|e| e.ty.clone()).collect()))
                .collect()
        };
    let first = what(&fired);
    // as the writer does when their append fails
    for (_, d) in fired.into_iter().rev() {
        engine.undo(d.undo);
    }
    assert_eq!(engine.breaches().len(), 0, "no breach left recorded");
    assert_eq!(
        engine.next_due_at(),
        Some(at_ms(1000)),
        "the first warning due again"
    );
    let again = engine.fire_due(at_ms(2500));
    assert_eq!(what(&again), first);
    assert_eq!(engine.breaches().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_p1_on_hold_before_its_deadline_pauses_and_does_not_breach() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let h = start(&log, t0()).await;
    h.writer
        .on_delivery(delivery(&incident_event(0, opened_p1())))
        .await;
    tokio::time::advance(Duration::from_millis(500)).await;
    settle().await;
    h.writer
        .on_delivery(delivery(&incident_event(500, EventKind::Acknowledged)))
        .await;
    h.writer
        .on_delivery(delivery(&incident_event(
            500,
            EventKind::PutOnHold {
                reason: "vendor".into(),
            },
        )))
        .await;
    tokio::time::advance(Duration::from_secs(30)).await;
    settle().await;
    assert_eq!(
        types(&log),
        ["sla.started.v1", "sla.met.v1", "sla.paused.v1"]
    );
    let state = h
        .writer
        .engine
        .lock()
        .unwrap()
        .get(test_id().as_str())
        .unwrap()
        .clocks
        .state_at(at_ms(30_500));
    assert_eq!(state.resolution.state, incident_sla::ClockState::Paused);
    assert_eq!(
        state.resolution.elapsed,
        jiff::SignedDuration::from_millis(500)
    );
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn deadlines_missed_while_down_fire_once_late_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let h = start(&log, t0()).await;
    h.writer
        .on_delivery(delivery(&incident_event(0, opened_p1())))
        .await;
    tokio::time::advance(Duration::from_millis(2100)).await;
    settle().await;
    assert_eq!(
        types(&log),
        [
            "sla.started.v1",
            "sla.warning.v1",
            "sla.warning.v1",
            "sla.breached.v1"
        ]
    );
    h.shutdown().await;

    // down for 10 s; the restarted timer fires what it missed, once, saying how late
    let h = start(&log, at_ms(12_100)).await;
    settle().await;
    let events = sla_events(&log);
    let ty: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        ty,
        [
            "sla.started.v1",
            "sla.warning.v1",
            "sla.warning.v1",
            "sla.breached.v1",
            "sla.breached.v1",
            "escalation.triggered.v1",
            "escalation.triggered.v1",
        ]
    );
    assert_eq!(events[4].1["clock"], "resolution");
    assert_eq!(events[4].1["late_ms"], 8_100);
    assert_eq!(events[6].1["late_ms"], 6_100);
    h.shutdown().await;

    // and a third start fires nothing more
    let h = start(&log, at_ms(20_000)).await;
    settle().await;
    assert_eq!(sla_events(&log).len(), 7);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn redeliveries_are_skipped_and_bad_input_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let h = start(&log, t0()).await;
    let open = incident_event(0, opened_p1());
    assert_eq!(h.writer.on_delivery(delivery(&open)).await, Handled::Done);
    assert_eq!(h.writer.on_delivery(delivery(&open)).await, Handled::Done);
    assert_eq!(
        types(&log),
        ["sla.started.v1"],
        "a redelivery derives nothing"
    );

    let mut garbage = delivery(&open);
    garbage.id = "garbage-1".into();
    garbage.payload = bytes_of("{not json");
    assert!(matches!(
        h.writer.on_delivery(garbage).await,
        Handled::Reject(_)
    ));
    let mut unknown = incident_event(1, EventKind::Acknowledged);
    unknown.ty = "incident.exploded.v1".into();
    assert!(matches!(
        h.writer.on_delivery(delivery(&unknown)).await,
        Handled::Reject(_)
    ));

    // valid traffic still flows
    h.writer
        .on_delivery(delivery(&incident_event(100, EventKind::Acknowledged)))
        .await;
    assert_eq!(types(&log), ["sla.started.v1", "sla.met.v1"]);
    h.shutdown().await;
}

fn bytes_of(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test(start_paused = true)]
async fn a_new_policy_version_is_recorded_and_old_clocks_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let h = start(&log, t0()).await;
    h.writer
        .on_delivery(delivery(&incident_event(0, opened_p1())))
        .await;
    h.shutdown().await;

    let mut engine = rebuild(&log).unwrap().0;
    let slower = PolicySet::from_toml(&POLICY.replace("P1 = \"2s\"", "P1 = \"1h\"")).unwrap();
    let old_hash = engine.active_policy().unwrap().hash().to_owned();
    assert!(
        engine.activate(slower.clone(), at_ms(100)).is_some(),
        "a changed file is a new version"
    );
    assert_ne!(old_hash, slower.hash());
    let state = engine
        .get(test_id().as_str())
        .unwrap()
        .clocks
        .state_at(at_ms(100));
    assert_eq!(
        state.policy_hash, old_hash,
        "the running incident keeps the version it started with"
    );
    assert_eq!(
        state.response.target,
        Some(jiff::SignedDuration::from_secs(2))
    );
    let mut same = rebuild(&log).unwrap().0;
    assert!(
        same.activate(PolicySet::from_toml(POLICY).unwrap(), at_ms(100))
            .is_none(),
        "an unchanged file is not recorded again"
    );
}

#[test]
fn the_example_policy_file_and_the_default_policy_load() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/sla-policy.toml"
    ))
    .unwrap();
    let set = PolicySet::from_toml(&text).unwrap();
    assert_eq!(set.policies().len(), 2);
    assert_eq!(
        set.select("payments", "", incident_sla::Priority::P3)
            .unwrap()
            .name(),
        "payments"
    );
    assert_eq!(
        set.select("mail", "", incident_sla::Priority::P3)
            .unwrap()
            .name(),
        "standard"
    );
    PolicySet::from_toml(incident_sla_timer::config::DEFAULT_POLICY).unwrap();
}

#[tokio::test(start_paused = true)]
async fn the_grpc_api_answers_bad_requests_with_clear_codes() {
    use incident_proto::v1 as pb;
    use incident_proto::v1::sla_service_server::SlaService;
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let h = start(&log, t0()).await;
    h.writer
        .on_delivery(delivery(&incident_event(0, opened_p1())))
        .await;
    let api =
        incident_sla_timer::grpc::SlaApi::new(h.writer.engine.clone(), TimeSource::new(at_ms(500)));
    let err = api
        .get_incident_sla(tonic::Request::new(pb::GetIncidentSlaRequest {
            incident_id: "a.b".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = api
        .get_incident_sla(tonic::Request::new(pb::GetIncidentSlaRequest {
            incident_id: "INC-NONE".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = api
        .report(tonic::Request::new(pb::ReportRequest {
            by: "weather".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("by"));
    let err = api
        .list_breaches(tonic::Request::new(pb::ListBreachesRequest {
            from: Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: 0,
            }),
            to: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let ok = api
        .get_incident_sla(tonic::Request::new(pb::GetIncidentSlaRequest {
            incident_id: test_id().to_string(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.clocks[0].state, "running");
    assert_eq!(ok.clocks[0].remaining_secs, 1);
    let at_risk = api
        .list_at_risk(tonic::Request::new(pb::ListAtRiskRequest { limit: 0 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(at_risk.clocks.len(), 2);
    assert_eq!(at_risk.clocks[0].clock.as_ref().unwrap().clock, "response");
    h.shutdown().await;
}

/// Consumes `envs` through a writer without a timer task (as while catching up after an outage).
async fn consume_only(log: &EventLog, envs: &[Envelope]) -> Arc<Writer> {
    let mut engine = rebuild(log).unwrap().0;
    let activation = engine.activate(PolicySet::from_toml(POLICY).unwrap(), t0());
    let writer = Arc::new(Writer::new(
        log.clone(),
        Arc::new(Mutex::new(engine)),
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    ));
    if let Some(env) = activation {
        writer.activate(env).await.unwrap();
    }
    for env in envs {
        assert_eq!(writer.on_delivery(delivery(env)).await, Handled::Done);
    }
    writer
}

#[tokio::test]
async fn an_acknowledgement_after_the_deadline_comes_after_the_breach() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    // opened at 0, acknowledged at 3 s: 1 s past the 2 s response target, and consumed only
    // now, long after both
    let writer = consume_only(
        &log,
        &[
            incident_event(0, opened_p1()),
            incident_event(3000, EventKind::Acknowledged),
        ],
    )
    .await;
    let types: Vec<String> = log
        .read_from(1)
        .map(|r| Envelope::from_slice(&r.unwrap().event).unwrap())
        .filter(|e| e.source == "incident-sla" && e.subject != "_policy")
        .map(|e| format!("{} {}", e.ty, e.data["clock"].as_str().unwrap_or("")))
        .collect();
    // the response warning (1 s), the resolution warning and the response breach (both at
    // 2 s) fire before the acknowledgement is applied, which then stops a breached clock
    assert_eq!(
        types,
        [
            "sla.started.v1 ",
            "sla.warning.v1 response",
            "sla.warning.v1 resolution",
            "sla.breached.v1 response",
            "sla.met.v1 response",
        ],
    );
    let breaches: Vec<_> = writer.engine.lock().unwrap().breaches().to_vec();
    assert_eq!(breaches.len(), 1);
    assert_eq!(breaches[0].clock, incident_sla::ClockKind::Response);
    assert!(breaches[0].late_ms > 1000, "{}", breaches[0].late_ms);

    // the log folds back to the same breaches, and a restart fires nothing of it again
    drop(writer);
    let engine = rebuild(&log).unwrap().0;
    assert_eq!(engine.breaches().len(), 1);
    let next = engine.next_due_at().unwrap();
    assert_eq!(next, at_ms(4000), "the resolution breach is still ahead");
}
