//! Crashes and damage: kill -9 of intake under concurrent clients loses no answered incident and
//! duplicates nothing on the stream; kill -9 while it consumes the intake subject loses and
//! repeats no message; a damaged log is refused and rebuilt from JetStream.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use incident_e2e::{ctl_ok, start_intake, stream_events, wait_for_intake_streams};
use incident_proto::v1 as pb;
use incident_proto::v1::intake_service_client::IntakeServiceClient;
use incident_testkit::{NatsServer, ServiceProcess, free_port};

fn intake_on_port(nats: &NatsServer, data: &std::path::Path, port: u16) -> ServiceProcess {
    ServiceProcess::spawn(
        "incident-intake",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data.display().to_string()),
            ("GRPC_ADDR", format!("127.0.0.1:{port}")),
        ],
        &data.with_extension("log"),
    )
}

/// Intake on a fixed gRPC port (so clients keep their address across restarts) and a data
/// directory that outlives it.
struct Killable {
    nats: NatsServer,
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    port: u16,
    url: String,
    intake: ServiceProcess,
}

impl Killable {
    fn start() -> Self {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("intake");
        let port = free_port();
        let intake = intake_on_port(&nats, &data, port);
        Killable {
            nats,
            _dir: dir,
            data,
            port,
            url: format!("http://127.0.0.1:{port}"),
            intake,
        }
    }

    /// Starts intake again on the same port and data (after a kill).
    fn restart(&mut self) {
        self.intake = intake_on_port(&self.nats, &self.data, self.port);
    }
}

/// Opens incidents until `stop`, retrying each one (same request id) until it is answered.
async fn client(
    url: String,
    name: usize,
    answered: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        n += 1;
        let request_id = format!("client-{name}-{n}");
        loop {
            let attempt = async {
                let mut c = IntakeServiceClient::connect(url.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                c.open_incident(pb::OpenIncidentRequest {
                    title: format!("load {request_id}"),
                    service: "load".into(),
                    impact: pb::Impact::Medium as i32,
                    urgency: pb::Urgency::Medium as i32,
                    request_id: request_id.clone(),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().incident.unwrap().id)
                .map_err(|s| s.to_string())
            };
            match tokio::time::timeout(Duration::from_secs(5), attempt).await {
                Ok(Ok(id)) => {
                    answered.lock().unwrap().push(id);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// The durable consumer intake pulls the intake subject with, once intake has created it.
async fn intake_consumer(
    stream: &async_nats::jetstream::stream::Stream,
) -> async_nats::jetstream::consumer::PullConsumer {
    for _ in 0..100 {
        if let Ok(c) = stream.get_consumer("incident-intake").await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("intake did not create its consumer within 10 s");
}

/// A kill -9 while intake consumes the intake subject leaves messages taken and not acked, some
/// of them already recorded. Each published message still opens exactly one incident.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_of_intake_while_it_consumes_the_intake_subject_loses_and_repeats_nothing() {
    let mut k = Killable::start();
    let (nats_url, url) = (k.nats.url(), k.url.clone());
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    wait_for_intake_streams(&js).await;

    const N: usize = 3000;
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for burst in (0..N).step_by(500) {
                publish_intake(&js, burst..burst + 500).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let stream = js.get_stream("INCIDENT_INTAKE").await.unwrap();
    // kill while intake holds taken messages: it may keep up with the publisher, so each kill
    // waits (up to 3 s) for messages in flight; at least two kills, more until one left some
    let mut left_pending = Vec::new();
    while left_pending.len() < 2 || (left_pending.iter().all(|n| *n == 0) && left_pending.len() < 6)
    {
        let mut consumer = intake_consumer(&stream).await;
        // messages taken past the last kill's, and some of them in flight
        let progress = ((left_pending.len() as u64 + 1) * 500).min(N as u64 - 1);
        for _ in 0..600 {
            let info = consumer.info().await.unwrap();
            if info.delivered.stream_sequence >= progress && info.num_ack_pending > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // the later kills give intake a moment to record some of what it took
        let round = left_pending.len() as u64;
        tokio::time::sleep(Duration::from_millis(round % 3 * 15)).await;
        k.intake.kill9();
        left_pending.push(consumer.info().await.unwrap().num_ack_pending);
        k.restart();
    }
    publisher.await.unwrap();
    assert!(
        left_pending.iter().any(|n| *n > 0),
        "a kill left messages taken and not acked: {left_pending:?}"
    );

    let mut consumer = intake_consumer(&stream).await;
    // intake acks cumulatively: one ack covers every message before it
    assert_eq!(
        consumer.info().await.unwrap().config.ack_policy,
        async_nats::jetstream::consumer::AckPolicy::All
    );
    wait_intake_acked(&stream, N as u64).await;
    assert_each_message_opened_once(&url, N);
}

/// Each of `msg-0` .. `msg-<n-1>` opened exactly one incident, and nothing else was opened.
fn assert_each_message_opened_once(url: &str, n: usize) {
    let listed = ctl_ok(url, &["list", "--all", "--limit", "10000"]);
    let mut titles: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["title"].as_str().unwrap())
        .collect();
    titles.sort_unstable();
    let mut expected: Vec<String> = (0..n).map(|i| format!("msg-{i}")).collect();
    expected.sort_unstable();
    assert_eq!(titles, expected, "each message opened exactly one incident");
}

/// Publishes `msg-<i>` for `range` to the intake subject and waits for the stream's acks.
async fn publish_intake(js: &async_nats::jetstream::Context, range: std::ops::Range<usize>) {
    let mut acks = Vec::new();
    for i in range {
        let body = serde_json::json!({
            "title": format!("msg-{i}"), "service": "queue",
            "impact": "low", "urgency": "low"
        });
        acks.push(
            js.publish("incident.v1.intake", body.to_string().into())
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
}

/// Waits (up to 30 s) until intake's consumer acked every message up to `seq`.
async fn wait_intake_acked(stream: &async_nats::jetstream::stream::Stream, seq: u64) {
    for _ in 0..300 {
        if let Ok(mut c) = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("incident-intake")
            .await
            && let Ok(info) = c.info().await
            && info.ack_floor.stream_sequence == seq
            && info.num_ack_pending == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("intake did not ack up to {seq} within 30 s");
}

/// nats-server restarted while intake consumes the intake subject (cumulative acks, a durable
/// restored from the server's store): the messages before and after are each opened once, and
/// all of them are acked.
#[tokio::test(flavor = "multi_thread")]
async fn a_nats_restart_while_intake_consumes_the_intake_subject_loses_and_repeats_nothing() {
    let mut k = Killable::start();
    let url = k.url.clone();
    let js = async_nats::jetstream::new(async_nats::connect(k.nats.url()).await.unwrap());
    wait_for_intake_streams(&js).await;
    let stream = js.get_stream("INCIDENT_INTAKE").await.unwrap();
    publish_intake(&js, 0..300).await;
    wait_intake_acked(&stream, 300).await;

    k.nats.restart();
    let js = async_nats::jetstream::new(async_nats::connect(k.nats.url()).await.unwrap());
    let stream = js.get_stream("INCIDENT_INTAKE").await.unwrap();
    publish_intake(&js, 300..600).await;
    wait_intake_acked(&stream, 600).await;

    assert_each_message_opened_once(&url, 600);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_of_intake_under_three_clients_loses_nothing_answered() {
    let mut k = Killable::start();
    let (nats_url, url) = (k.nats.url(), k.url.clone());

    let answered = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..3)
        .map(|i| tokio::spawn(client(url.clone(), i, answered.clone(), stop.clone())))
        .collect();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        k.intake.kill9();
        tokio::time::sleep(Duration::from_millis(300)).await;
        k.restart();
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    let answered: Vec<String> = answered.lock().unwrap().clone();
    assert!(
        answered.len() > 30,
        "the clients got work done: {}",
        answered.len()
    );
    let listed = ctl_ok(&url, &["list", "--all", "--limit", "1000"]);
    let listed: HashSet<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = answered.iter().filter(|id| !listed.contains(*id)).collect();
    assert!(lost.is_empty(), "answered but lost after kill -9: {lost:?}");
    // retries with the same request id never opened a second incident
    let unique: HashSet<&String> = answered.iter().collect();
    assert_eq!(unique.len(), answered.len());
    assert_eq!(
        listed.len(),
        answered.len(),
        "no incident that nobody was told about"
    );

    // every event reached the stream exactly once
    let events = stream_events(
        &nats_url,
        "INCIDENT_EVENTS",
        "incident.v1.events.*",
        listed.len(),
        Duration::from_secs(30),
    )
    .await;
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "an event was published twice");
    assert_eq!(
        events.len(),
        listed.len(),
        "one opened event per incident on the stream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_log_is_rebuilt_from_jetstream() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");
    let mut intake = start_intake(&nats, &data);
    let url = intake.grpc_url();
    let a = ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "A",
            "--service",
            "s",
            "--impact",
            "high",
            "--urgency",
            "high",
        ],
    );
    let b = ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "B",
            "--service",
            "s",
            "--impact",
            "low",
            "--urgency",
            "low",
        ],
    );
    let a_id = a["id"].as_str().unwrap().to_owned();
    ctl_ok(&url, &["ack", &a_id]);
    ctl_ok(&url, &["resolve", &a_id]);
    let all = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        "incident.v1.events.*",
        4,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(all.len(), 4);
    intake.kill9();

    // damage the last record behind the log's back
    incident_e2e::damage_record(&data.join("log"), Some(4), 5);
    let mut refused = start_intake(&nats, &data);
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("a damaged log stops the start");
    assert!(!status.success());
    assert!(refused.log().contains("record 4"), "{}", refused.log());

    let out = std::process::Command::new(incident_testkit::bin_path("incident-intake"))
        .env("NATS_URL", nats.url())
        .env("DATA_DIR", &data)
        .arg("--rebuild-log-from-jetstream")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["rebuilt"]["events"], 4);
    assert_eq!(report["rebuilt"]["incidents"], 2);

    let intake = start_intake(&nats, &data);
    let url = intake.grpc_url();
    assert_eq!(ctl_ok(&url, &["get", &a_id])["status"], "resolved");
    assert_eq!(
        ctl_ok(&url, &["get", b["id"].as_str().unwrap()])["title"],
        "B"
    );
    ctl_ok(
        &url,
        &[
            "open",
            "--title",
            "C",
            "--service",
            "s",
            "--impact",
            "low",
            "--urgency",
            "low",
        ],
    );
    let all = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        "incident.v1.events.*",
        6,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        all.len(),
        5,
        "the rebuilt log republished nothing; only C is new"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_does_not_start_while_its_log_is_being_rebuilt() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("intake");
    // what a rebuild stopped between moving the damaged log aside and the new one in leaves
    std::fs::create_dir_all(data.join("log.rebuilding")).unwrap();
    let mut refused = start_intake(&nats, &data);
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("it refuses to start");
    assert!(!status.success());
    assert!(
        refused.log().contains("log.rebuilding exists"),
        "{}",
        refused.log()
    );
    assert!(!data.join("log").exists(), "no empty log was created");
}
