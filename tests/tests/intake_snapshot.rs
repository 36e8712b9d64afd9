//! Intake starts from the snapshot of its state that a clean shutdown wrote: the same incidents,
//! retries and repeats still answered by the incidents they were answered by before (the
//! `by_request` and `by_dedup` indexes survive), events written after the snapshot folded on
//! top, and a damaged snapshot set aside for a full fold.

use std::path::Path;
use std::time::{Duration, Instant};

use incident_eventlog::EventLog;
use incident_intake::snapshot;
use incident_proto::v1 as pb;
use incident_proto::v1::intake_service_client::IntakeServiceClient;
use incident_testkit::{NatsServer, ServiceProcess};
use tonic::transport::Channel;

/// Starts intake on `data` and waits until `/readyz` answers 200.
async fn start(nats: &NatsServer, data: &Path, run: u32) -> ServiceProcess {
    start_with(nats, data, run, &[]).await
}

async fn start_with(
    nats: &NatsServer,
    data: &Path,
    run: u32,
    env: &[(&str, String)],
) -> ServiceProcess {
    let mut vars = vec![
        ("NATS_URL", nats.url()),
        ("DATA_DIR", data.display().to_string()),
    ];
    vars.extend(env.iter().cloned());
    let intake = ServiceProcess::spawn(
        "incident-intake",
        &vars,
        &data.with_extension(format!("{run}.log")),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("{}/readyz", intake.http_url());
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status() == 200
        {
            return intake;
        }
        assert!(
            Instant::now() < deadline,
            "intake not ready after 30 s:\n{}",
            intake.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The service's log without terminal colours.
fn log_text(intake: &ServiceProcess) -> String {
    let raw = intake.log();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            // an escape sequence runs to its final letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

async fn client(intake: &ServiceProcess) -> IntakeServiceClient<Channel> {
    IntakeServiceClient::connect(intake.grpc_url())
        .await
        .unwrap()
}

fn req(title: &str, dedup: &str, request: &str) -> pb::OpenIncidentRequest {
    pb::OpenIncidentRequest {
        title: title.into(),
        service: "payments".into(),
        group: "payments-oncall".into(),
        impact: pb::Impact::High as i32,
        urgency: pb::Urgency::Medium as i32,
        dedup_key: dedup.into(),
        request_id: request.into(),
        ..Default::default()
    }
}

async fn open(c: &mut IntakeServiceClient<Channel>, r: pb::OpenIncidentRequest) -> (String, bool) {
    let out = c.open_incident(r).await.unwrap().into_inner();
    (out.incident.unwrap().id, out.deduplicated)
}

async fn list(c: &mut IntakeServiceClient<Channel>) -> Vec<pb::Incident> {
    c.list_incidents(pb::ListIncidentsRequest {
        page_size: 1000,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .incidents
}

/// Stops intake with SIGTERM and checks that it exited cleanly.
fn stop(intake: &mut ServiceProcess) {
    let status = intake.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "intake did not stop cleanly ({status:?}):\n{}",
        intake.log()
    );
}

/// (snapshot seq, log head) of the stopped intake's log; and a start from its snapshot gives
/// exactly the state a fold of the whole log gives.
fn snapshot_and_head(data: &Path) -> (Option<u64>, u64) {
    let log = EventLog::open(&data.join("log")).unwrap();
    let seq = log.load_snapshot(snapshot::NAME).unwrap().map(|(s, _)| s);
    if seq.is_some() {
        let (from_snapshot, _) = snapshot::load(&log).unwrap();
        assert!(
            from_snapshot == incident_intake::rebuild(&log).unwrap(),
            "the state loaded from the snapshot differs from the fold of the log"
        );
    }
    (seq, log.head().seq)
}

/// What the tests open: an incident with a dedup key and a request id, repeated once under
/// another request id (which only the `by_request` index remembers); one with a request id
/// only; one with a dedup key that is then resolved (its key no longer active); a plain one.
struct Opened {
    db: String,
    report: String,
    disk: String,
}

async fn open_some(c: &mut IntakeServiceClient<Channel>) -> Opened {
    let (db, d) = open(c, req("Database down", "db-down", "r-db")).await;
    assert!(!d);
    let (again, d) = open(c, req("Database down (repeat)", "db-down", "r-db-2")).await;
    assert!(d, "a repeat with an active key is deduplicated");
    assert_eq!(again, db);
    let (report, _) = open(c, req("Slow reports", "", "r-report")).await;
    let (disk, _) = open(c, req("Disk full", "disk", "")).await;
    c.resolve_incident(pb::ResolveIncidentRequest {
        id: disk.clone(),
        note: "cleaned up".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    open(c, req("Certificate expires", "", "")).await;
    Opened { db, report, disk }
}

/// The indexes answer as before: retries by request id return their incidents, the active key
/// is deduplicated, the resolved one is not.
async fn indexes_answer(c: &mut IntakeServiceClient<Channel>, o: &Opened) {
    assert_eq!(
        open(c, req("Database down", "db-down", "r-db")).await,
        (o.db.clone(), true)
    );
    // the repeat's request id, kept only in the index
    assert_eq!(
        open(c, req("Database down (repeat)", "db-down", "r-db-2")).await,
        (o.db.clone(), true)
    );
    assert_eq!(
        open(c, req("Slow reports", "", "r-report")).await,
        (o.report.clone(), true)
    );
    assert_eq!(
        open(c, req("Database down, new alert", "db-down", "r-db-3")).await,
        (o.db.clone(), true),
        "the active dedup key survived the restart"
    );
    let (disk_again, d) = open(c, req("Disk full again", "disk", "")).await;
    assert!(!d, "the resolved incident's key is not active");
    assert_ne!(disk_again, o.disk);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_restart_starts_from_the_snapshot_with_incidents_and_indexes() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");

    let mut intake = start(&nats, &data, 1).await;
    let mut c = client(&intake).await;
    let opened = open_some(&mut c).await;
    let before = list(&mut c).await;
    assert_eq!(before.len(), 4);
    drop(c);
    stop(&mut intake);
    assert!(
        intake.log().contains("snapshot written"),
        "{}",
        intake.log()
    );

    // the stopped intake's log: a snapshot at its head, and a load that folds nothing
    let (seq, head) = snapshot_and_head(&data);
    assert_eq!(seq, Some(head));
    {
        let log = EventLog::open(&data.join("log")).unwrap();
        let (state, loaded) = snapshot::load(&log).unwrap();
        assert_eq!((loaded.snapshot_seq, loaded.folded), (Some(head), 0));
        assert_eq!(state.len(), 4);
    }

    let mut intake = start(&nats, &data, 2).await;
    let text = log_text(&intake);
    assert!(
        text.contains("state loaded from the snapshot") && text.contains("folded=0"),
        "{text}"
    );
    let mut c = client(&intake).await;
    assert_eq!(list(&mut c).await, before);
    indexes_answer(&mut c, &opened).await;
    drop(c);
    stop(&mut intake);

    // a start and stop with nothing recorded in between leaves the snapshot as it is
    let (snap, head) = snapshot_and_head(&data);
    assert_eq!(snap, Some(head));
    let mut intake = start(&nats, &data, 3).await;
    stop(&mut intake);
    let text = log_text(&intake);
    assert!(
        text.contains("the snapshot is current") && !text.contains("snapshot written"),
        "{text}"
    );
    assert_eq!(snapshot_and_head(&data), (Some(head), head));
}

#[tokio::test(flavor = "multi_thread")]
async fn events_after_the_snapshot_are_folded_on_top_after_a_kill9() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");

    let mut intake = start(&nats, &data, 1).await;
    let mut c = client(&intake).await;
    let opened = open_some(&mut c).await;
    drop(c);
    stop(&mut intake);
    let (snap, head) = snapshot_and_head(&data);
    assert_eq!(snap, Some(head));

    // more commands, then SIGKILL: no new snapshot
    let mut intake = start(&nats, &data, 2).await;
    let mut c = client(&intake).await;
    c.acknowledge_incident(pb::AcknowledgeIncidentRequest {
        id: opened.db.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let (late, _) = open(&mut c, req("Queue backlog", "queue", "r-queue")).await;
    c.resolve_incident(pb::ResolveIncidentRequest {
        id: opened.report.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let expected = list(&mut c).await;
    drop(c);
    intake.kill9();
    let (snap_after_kill, head_after_kill) = snapshot_and_head(&data);
    assert_eq!(snap_after_kill, Some(head), "kill -9 wrote no snapshot");
    assert_eq!(head_after_kill, head + 3);

    let mut intake = start(&nats, &data, 3).await;
    let text = log_text(&intake);
    assert!(
        text.contains("state loaded from the snapshot") && text.contains("folded=3"),
        "{text}"
    );
    let mut c = client(&intake).await;
    let now = list(&mut c).await;
    assert_eq!(now, expected);
    let db = now.iter().find(|i| i.id == opened.db).unwrap();
    assert_eq!(db.status, pb::Status::Acknowledged as i32);
    // an index entry written after the snapshot
    assert_eq!(
        open(&mut c, req("Queue backlog", "queue", "r-queue")).await,
        (late.clone(), true)
    );
    assert_eq!(
        open(&mut c, req("Queue backlog, again", "queue", "")).await,
        (late, true)
    );
    // and the ones from before it
    indexes_answer(&mut c, &opened).await;
    drop(c);
    stop(&mut intake);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_snapshot_is_set_aside_and_the_whole_log_folded() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");

    let mut intake = start(&nats, &data, 1).await;
    let mut c = client(&intake).await;
    let opened = open_some(&mut c).await;
    let before = list(&mut c).await;
    drop(c);
    stop(&mut intake);

    // 1. bytes that are not a snapshot, stored with a valid checksum
    {
        let log = EventLog::open(&data.join("log")).unwrap();
        let head = log.head().seq;
        log.save_snapshot(snapshot::NAME, head, b"{\"not\":\"a snapshot\"}")
            .unwrap();
    }
    let mut intake = start(&nats, &data, 2).await;
    let text = log_text(&intake);
    assert!(
        text.contains("snapshot not used") && text.contains("by folding the whole log"),
        "{text}"
    );
    let mut c = client(&intake).await;
    assert_eq!(list(&mut c).await, before);
    drop(c);
    stop(&mut intake);
    let (snap, head) = snapshot_and_head(&data);
    assert_eq!(snap, Some(head), "the clean stop wrote a good one again");

    // 2. a snapshot whose stored bytes no longer match their checksum (a flipped byte on disk)
    {
        let db = incident_eventlog::open_db(&data.join("log")).unwrap();
        let key = snapshot::NAME.as_bytes();
        let snapshots = db
            .open_tree(incident_eventlog::layout::SNAPSHOT_TREE)
            .unwrap();
        let mut v = snapshots.get(key).unwrap().unwrap().to_vec();
        let at = v.len() - 5;
        v[at] ^= 0x01;
        snapshots.insert(key, v).unwrap();
        snapshots.flush().unwrap();
    }
    let mut intake = start(&nats, &data, 3).await;
    let text = log_text(&intake);
    assert!(
        text.contains("snapshot not used")
            && text.contains("checksum")
            && text.contains("by folding the whole log"),
        "{text}"
    );
    let mut c = client(&intake).await;
    assert_eq!(list(&mut c).await, before);
    indexes_answer(&mut c, &opened).await;
    drop(c);
    stop(&mut intake);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_fold_leaves_a_snapshot_and_zero_turns_snapshots_off() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");
    let off = [("SNAPSHOT_AFTER_EVENTS", "0".to_string())];

    // off: a clean stop writes none
    let mut intake = start_with(&nats, &data, 1, &off).await;
    let mut c = client(&intake).await;
    let opened = open_some(&mut c).await;
    let before = list(&mut c).await;
    drop(c);
    stop(&mut intake);
    let (snap, head) = snapshot_and_head(&data);
    assert_eq!(snap, None, "SNAPSHOT_AFTER_EVENTS=0 writes no snapshot");

    // a start that folds at least SNAPSHOT_AFTER_EVENTS records writes one in the background
    let at_most_head = [("SNAPSHOT_AFTER_EVENTS", head.to_string())];
    let mut intake = start_with(&nats, &data, 2, &at_most_head).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log_text(&intake).contains("snapshot written") {
        assert!(Instant::now() < deadline, "{}", log_text(&intake));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    intake.kill9();
    assert_eq!(snapshot_and_head(&data), (Some(head), head));

    // off again: the snapshot is neither read nor replaced
    let mut intake = start_with(&nats, &data, 3, &off).await;
    let text = log_text(&intake);
    assert!(text.contains("by folding the whole log"), "{text}");
    assert!(!text.contains("snapshot not used"), "{text}");
    let mut c = client(&intake).await;
    assert_eq!(list(&mut c).await, before);
    c.acknowledge_incident(pb::AcknowledgeIncidentRequest {
        id: opened.db.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    drop(c);
    stop(&mut intake);
    assert_eq!(snapshot_and_head(&data), (Some(head), head + 1));

    // on: from the start's snapshot, with the acknowledgement folded on top
    let mut intake = start(&nats, &data, 4).await;
    let text = log_text(&intake);
    assert!(
        text.contains("state loaded from the snapshot") && text.contains("folded=1"),
        "{text}"
    );
    let mut c = client(&intake).await;
    let db = list(&mut c)
        .await
        .into_iter()
        .find(|i| i.id == opened.db)
        .unwrap();
    assert_eq!(db.status, pb::Status::Acknowledged as i32);
    indexes_answer(&mut c, &opened).await;
    drop(c);
    stop(&mut intake);
}

/// A dashboard watching incidents does not hold a clean stop up: its stream ends with
/// `UNAVAILABLE` (watch again elsewhere), intake exits well inside docker-compose's grace
/// period, and the snapshot is written.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_with_a_watcher_connected_ends_the_watch_and_writes_the_snapshot() {
    use futures::StreamExt;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");
    let mut intake = start(&nats, &data, 1).await;
    let mut c = client(&intake).await;
    let mut watch = c
        .watch_incidents(pb::WatchIncidentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    open(&mut c, req("Checkout down", "", "")).await;
    let change = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("a change within 10 s");
    assert!(change.unwrap().is_ok());

    let stopping = tokio::task::spawn_blocking(move || {
        let status = intake.terminate(Duration::from_secs(8));
        (intake, status)
    });
    let ended = tokio::time::timeout(Duration::from_secs(8), watch.next())
        .await
        .expect("the watch ends when intake stops");
    match ended {
        Some(Err(status)) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status}"),
        None => {}
        Some(Ok(change)) => panic!("a change after the stop: {change:?}"),
    }
    let (intake, status) = stopping.await.unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "intake did not stop cleanly within 8 s with a watcher connected: {status:?}\n{}",
        intake.log()
    );
    assert!(
        log_text(&intake).contains("snapshot written"),
        "{}",
        intake.log()
    );
}
