//! The notifier's damaged log is refused, then rebuilt from JetStream
//! (`incident-notifier --rebuild-log-from-jetstream`): what it had delivered stays delivered and
//! is not sent again, an incident opened while it was down is delivered once, redeliveries of
//! inputs it had processed are skipped even when NATS loses its consumers, and what it did but
//! never relayed comes back from its inputs with the same Idempotency-Key.
//!
//! Real nats-server, intake, notifier and incidentctl processes; webhooks go to a real local
//! HTTP receiver.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use incident_e2e::{ctl_ok, open_incident, start_intake, stream_events};
use incident_testkit::webhook::{ReceivedRequest, WebhookReceiver};
use incident_testkit::{NatsServer, ServiceProcess, bin_path};
use serde_json::Value;

const DURABLE: &str = "incident-notifier";

/// Polls `check` until it answers Ok, up to `within`; the Err text explains a timeout.
async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(state) if Instant::now() >= deadline => {
                panic!("{what}: still not so after {within:?}: {state}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn routes_file(dir: &Path, receiver: &WebhookReceiver) -> PathBuf {
    let path = dir.join("routes.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[channels]]
name = "ops"
kind = "webhook"
url = "{}"

[[routes]]
name = "opened"
events = ["incident.opened"]
channels = ["ops"]
"#,
            receiver.url("/ops")
        ),
    )
    .unwrap();
    path
}

fn start_notifier(nats: &NatsServer, data: &Path, routes: &Path, run: u32) -> ServiceProcess {
    ServiceProcess::spawn(
        "incident-notifier",
        &[
            ("NATS_URL", nats.url()),
            ("DATA_DIR", data.display().to_string()),
            ("ROUTES_FILE", routes.display().to_string()),
        ],
        &data.with_file_name(format!("notifier-{run}.log")),
    )
}

/// `incident-notifier --rebuild-log-from-jetstream`: its one-line JSON report.
fn rebuild(nats: &NatsServer, data: &Path) -> Value {
    let out = std::process::Command::new(bin_path("incident-notifier"))
        .env("NATS_URL", nats.url())
        .env("DATA_DIR", data)
        .arg("--rebuild-log-from-jetstream")
        .output()
        .expect("run the rebuild");
    assert!(
        out.status.success(),
        "the rebuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.trim().lines().count(), 1, "one line: {stdout}");
    serde_json::from_str(stdout.trim()).expect("a JSON report")
}

/// `incidentctl -o json --notifier-url URL notifications`.
fn notifications(notifier_url: &str) -> Vec<Value> {
    let out = std::process::Command::new(bin_path("incidentctl"))
        .args([
            "-o",
            "json",
            "--notifier-url",
            notifier_url,
            "notifications",
        ])
        .output()
        .expect("run incidentctl");
    assert!(
        out.status.success(),
        "incidentctl notifications: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).expect("a JSON array");
    list.as_array().unwrap().clone()
}

fn incident_of(n: &Value) -> &str {
    n["incident_id"].as_str().unwrap()
}

/// (incident, status) of each notification, for failure messages.
fn brief(list: &[Value]) -> Vec<(String, String)> {
    list.iter()
        .map(|n| {
            (
                incident_of(n).to_owned(),
                n["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Webhook requests by Idempotency-Key.
fn by_key(requests: &[ReceivedRequest]) -> BTreeMap<String, Vec<ReceivedRequest>> {
    let mut out: BTreeMap<String, Vec<ReceivedRequest>> = BTreeMap::new();
    for r in requests {
        assert!(!r.idempotency_key().is_empty(), "no Idempotency-Key: {r:?}");
        out.entry(r.idempotency_key().to_owned())
            .or_default()
            .push(r.clone());
    }
    out
}

async fn js(nats: &NatsServer) -> jetstream::Context {
    jetstream::new(async_nats::connect(nats.url()).await.unwrap())
}

/// Every envelope on NOTIFY_EVENTS, in stream order.
async fn notify_events(js: &jetstream::Context) -> Vec<Value> {
    incident_testkit::stream::read_subject(js, "NOTIFY_EVENTS", "notify.v1.events.*")
        .await
        .into_iter()
        .map(|(p, _)| serde_json::from_slice(&p).unwrap())
        .collect()
}

fn of_type<'a>(events: &'a [Value], ty: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == ty).collect()
}

async fn consumer(js: &jetstream::Context, stream: &str) -> Option<jetstream::consumer::Info> {
    js.get_stream(stream)
        .await
        .ok()?
        .consumer_info(DURABLE)
        .await
        .ok()
}

/// Waits until the notifier's durable on INCIDENT_EVENTS has nothing pending or unacked.
async fn wait_consumed(js: &jetstream::Context) {
    eventually(
        "INCIDENT_EVENTS consumed",
        Duration::from_secs(30),
        async || match consumer(js, "INCIDENT_EVENTS").await {
            Some(i) if i.num_pending == 0 && i.num_ack_pending == 0 => Ok(()),
            other => Err(format!(
                "{:?}",
                other.map(|i| (i.num_pending, i.num_ack_pending))
            )),
        },
    )
    .await;
}

async fn metric(notifier: &ServiceProcess, name: &str) -> Result<u64, String> {
    let text = reqwest::get(format!("{}/metrics", notifier.http_url()))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .ok_or_else(|| format!("no {name} in\n{text}"))
}

/// Flips a byte of the last record of the log behind its back (as the intake test does);
/// answers that record's sequence number.
fn damage_last_record(log_dir: &Path) -> u64 {
    incident_e2e::damage_record(log_dir, None, 5)
}

/// Starts the notifier on the damaged log: it must refuse, naming the damage.
fn assert_refused(nats: &NatsServer, data: &Path, routes: &Path, run: u32, damaged: u64) {
    let mut refused = start_notifier(nats, data, routes, run);
    let status = refused
        .wait_exit(Duration::from_secs(20))
        .expect("a damaged log stops the start");
    assert!(!status.success());
    let log = refused.log();
    assert!(
        log.contains("is damaged")
            && log.contains(&format!("record {damaged}"))
            && log.contains("rebuild it from JetStream"),
        "the refusal names the damage and the way out:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_notifier_log_is_rebuilt_and_nothing_is_sent_twice() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("notifier");
    let receiver = WebhookReceiver::start();
    let routes = routes_file(dir.path(), &receiver);
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let intake_url = intake.grpc_url();
    let js = js(&nats).await;
    let mut notifier = start_notifier(&nats, &data, &routes, 1);

    let old: Vec<String> = ["A", "B", "C"]
        .iter()
        .map(|t| open_incident(&intake_url, t, "high"))
        .collect();
    ctl_ok(&intake_url, &["ack", &old[0]]);
    receiver
        .wait_until(Duration::from_secs(30), |r| by_key(r).len() == 3)
        .unwrap_or_else(|r| panic!("3 webhooks: {r:?}\n{}", notifier.log()));
    wait_consumed(&js).await;
    // everything it did is on NOTIFY_EVENTS (the acknowledgement too) before it is killed
    eventually("relayed", Duration::from_secs(30), async || {
        let lag = metric(&notifier, "incident_notifier_relay_lag_events").await?;
        let events = notify_events(&js).await;
        let delivered = of_type(&events, "notification.delivered.v1").len();
        let acked = events
            .iter()
            .any(|e| e["data"]["incident"]["status"] == "acknowledged");
        (lag == 0 && delivered == 3 && acked)
            .then_some(())
            .ok_or(format!(
                "lag {lag}, delivered {delivered}, ack seen {acked}"
            ))
    })
    .await;
    let before = notifications(&notifier.grpc_url());
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(
        before.iter().all(|n| n["status"] == "delivered"),
        "{before:?}"
    );
    let notify_before = notify_events(&js).await;

    notifier.kill9();
    let damaged = damage_last_record(&data.join("log"));
    // opened while the notifier is down
    let late = open_incident(&intake_url, "D", "high");
    let inputs = stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        "incident.v1.events.*",
        5,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(inputs.len(), 5, "3 opened, 1 acknowledged, 1 opened");
    assert_refused(&nats, &data, &routes, 2, damaged);

    let report = rebuild(&nats, &data);
    let r = &report["rebuilt"];
    assert_eq!(r["events"], notify_before.len(), "{report}");
    assert_eq!(r["damaged_log_records"], notify_before.len(), "{report}");
    assert_eq!(r["duplicates_skipped"], 0, "{report}");
    assert_eq!(r["inputs_processed"], 4, "3 opens and the ack: {report}");
    assert_eq!(r["notifications"], 3, "{report}");
    assert_eq!(r["by_status"]["delivered"], 3, "{report}");
    assert_eq!(r["incidents"], 3, "{report}");
    // the ack is the 4th message: the durable delivers from the incident opened while down
    let incidents = &r["consumers"]["INCIDENT_EVENTS"];
    assert_eq!(incidents["messages"], 5, "{report}");
    assert_eq!(incidents["last_named"], 4, "{report}");
    assert_eq!(incidents["restart_after"], 4, "{report}");
    assert_eq!(r["consumers"]["SLA_EVENTS"]["restart_after"], 0, "{report}");
    let kept = PathBuf::from(r["damaged_log_kept_at"].as_str().unwrap());
    assert!(
        kept.is_dir(),
        "the damaged log is kept at {}",
        kept.display()
    );
    assert!(data.join("log").is_dir());
    // run again (as after an interrupted rebuild): the same log, the same restart point, and
    // the first result is kept aside too
    let again = rebuild(&nats, &data);
    let r2 = &again["rebuilt"];
    for field in ["events", "inputs_processed", "notifications", "incidents"] {
        assert_eq!(r2[field], r[field], "{field}: {again}");
    }
    assert_eq!(r2["damaged_log_records"], r["events"], "{again}");
    assert_eq!(
        r2["consumers"]["INCIDENT_EVENTS"]["restart_after"], 4,
        "{again}"
    );
    let kept_again = PathBuf::from(r2["damaged_log_kept_at"].as_str().unwrap());
    assert!(kept.is_dir() && kept_again.is_dir() && kept != kept_again);
    let info = consumer(&js, "INCIDENT_EVENTS").await.expect("the durable");
    assert_eq!(info.num_pending, 1, "only D is left to deliver: {info:?}");

    let notifier = start_notifier(&nats, &data, &routes, 3);
    receiver
        .wait_until(Duration::from_secs(30), |r| r.len() >= 4)
        .unwrap_or_else(|r| panic!("D's webhook: {r:?}\n{}", notifier.log()));
    wait_consumed(&js).await;
    eventually("relayed", Duration::from_secs(30), async || {
        let lag = metric(&notifier, "incident_notifier_relay_lag_events").await?;
        let delivered = of_type(&notify_events(&js).await, "notification.delivered.v1").len();
        (lag == 0 && delivered == 4)
            .then_some(())
            .ok_or(format!("lag {lag}, delivered {delivered}"))
    })
    .await;
    let after = notifications(&notifier.grpc_url());
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(
        after[..3],
        before[..],
        "the same notifications, delivered, as before the damage"
    );
    assert_eq!(incident_of(&after[3]), late);
    assert_eq!(after[3]["status"], "delivered", "{after:?}");
    assert_eq!(after[3]["attempts"], 1, "{after:?}");
    let requests = receiver.requests();

    let keys = by_key(&requests);
    assert_eq!(requests.len(), 4, "no second delivery: {keys:?}");
    assert_eq!(keys.len(), 4);
    let late_key = after[3]["id"].as_str().unwrap();
    assert_eq!(keys[late_key].len(), 1, "D is delivered once");
    assert_eq!(keys[late_key][0].json()["incident"]["id"], late.as_str());
    // nothing was decided again for the old incidents
    let notify_after = notify_events(&js).await;
    let old_after: Vec<&Value> = notify_after
        .iter()
        .filter(|e| e["subject"] != late.as_str())
        .collect();
    assert_eq!(
        old_after,
        notify_before.iter().collect::<Vec<_>>(),
        "no new notifier event for A, B, C"
    );

    // NATS loses the consumers too: every input is delivered again and skipped as processed
    let mut notifier = notifier;
    let status = notifier.terminate(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{}", notifier.log());
    for stream in ["INCIDENT_EVENTS", "SLA_EVENTS"] {
        js.get_stream(stream)
            .await
            .unwrap()
            .delete_consumer(DURABLE)
            .await
            .unwrap();
    }
    let notifier = start_notifier(&nats, &data, &routes, 4);
    wait_consumed(&js).await;
    eventually(
        "all 5 redeliveries skipped",
        Duration::from_secs(30),
        async || {
            let skipped = metric(&notifier, "incident_notifier_inputs_duplicate_total").await?;
            (skipped == 5)
                .then_some(())
                .ok_or(format!("skipped {skipped}\n{}", notifier.log()))
        },
    )
    .await;
    assert_eq!(
        metric(&notifier, "incident_notifier_inputs_processed_total").await,
        Ok(0)
    );
    assert_eq!(notifications(&notifier.grpc_url()), after);
    assert_eq!(receiver.requests().len(), 4, "still no second delivery");
    assert_eq!(notify_events(&js).await, notify_after);
}

#[tokio::test(flavor = "multi_thread")]
async fn what_was_done_but_never_relayed_comes_back_from_the_inputs() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("notifier");
    let receiver = WebhookReceiver::start();
    let routes = routes_file(dir.path(), &receiver);
    let intake = start_intake(&nats, &dir.path().join("intake"));
    let intake_url = intake.grpc_url();
    let js = js(&nats).await;
    let mut notifier = start_notifier(&nats, &data, &routes, 1);

    let a = open_incident(&intake_url, "A", "high");
    eventually("A relayed", Duration::from_secs(30), async || {
        let events = notify_events(&js).await;
        (of_type(&events, "notification.delivered.v1").len() == 1)
            .then_some(events.len())
            .ok_or(format!("{} events", events.len()))
    })
    .await;
    // NOTIFY_EVENTS takes no more (limits, discard new): the relay stalls from here on
    let set_limit = |max: Option<i64>| {
        let js = js.clone();
        async move {
            let mut stream = js.get_stream("NOTIFY_EVENTS").await.unwrap();
            let info = stream.info().await.unwrap();
            let stored = info.state.messages;
            let mut config = info.config.clone();
            config.max_messages = max.unwrap_or(stored as i64);
            js.update_stream(config).await.unwrap();
            stored
        }
    };
    let relayed = set_limit(None).await;
    let b = open_incident(&intake_url, "B", "high");
    let c = open_incident(&intake_url, "C", "high");
    receiver
        .wait_until(Duration::from_secs(30), |r| by_key(r).len() == 3)
        .unwrap_or_else(|r| panic!("3 webhooks: {r:?}\n{}", notifier.log()));
    wait_consumed(&js).await;
    let before = eventually(
        "B and C recorded delivered",
        Duration::from_secs(30),
        async || {
            let list = notifications(&notifier.grpc_url());
            (list.len() == 3 && list.iter().all(|n| n["status"] == "delivered"))
                .then(|| list.clone())
                .ok_or(format!("{:?}", brief(&list)))
        },
    )
    .await;
    assert_eq!(
        notify_events(&js).await.len() as u64,
        relayed,
        "the relay is stalled"
    );

    notifier.kill9();
    let damaged = damage_last_record(&data.join("log"));
    let late = open_incident(&intake_url, "D", "high");
    stream_events(
        &nats.url(),
        "INCIDENT_EVENTS",
        "incident.v1.events.*",
        4,
        Duration::from_secs(15),
    )
    .await;
    assert_refused(&nats, &data, &routes, 2, damaged);
    set_limit(Some(-1)).await;

    let report = rebuild(&nats, &data);
    let r = &report["rebuilt"];
    assert_eq!(r["events"], relayed, "{report}");
    assert!(
        r["damaged_log_records"].as_u64().unwrap() > relayed,
        "the report shows the damaged log had more: {report}"
    );
    assert_eq!(r["notifications"], 1, "{report}");
    let incidents = &r["consumers"]["INCIDENT_EVENTS"];
    assert_eq!(incidents["last_named"], 1, "A's open: {report}");
    assert_eq!(incidents["ack_floor"], 3, "B and C were acked: {report}");
    assert_eq!(incidents["restart_after"], 1, "{report}");

    let notifier = start_notifier(&nats, &data, &routes, 3);
    let after = eventually("4 delivered", Duration::from_secs(30), async || {
        let list = notifications(&notifier.grpc_url());
        (list.len() == 4 && list.iter().all(|n| n["status"] == "delivered"))
            .then(|| list.clone())
            .ok_or(format!("{:?}", brief(&list)))
    })
    .await;
    wait_consumed(&js).await;
    let ids = |list: &[Value]| -> Vec<(String, String)> {
        list.iter()
            .map(|n| {
                (
                    incident_of(n).to_owned(),
                    n["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        ids(&after[..3]),
        ids(&before),
        "B and C came back as the same notifications"
    );
    assert_eq!(incident_of(&after[3]), late);

    let keys = by_key(&receiver.requests());
    let key_of = |incident: &str| -> String {
        after.iter().find(|n| incident_of(n) == incident).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let count = |incident: &str| keys.get(&key_of(incident)).map_or(0, Vec::len);
    assert_eq!(count(&a), 1, "A was relayed: not sent again");
    // B's and C's deliveries never reached the stream: sent again, with the same key
    assert_eq!(count(&b), 2, "{keys:?}");
    assert_eq!(count(&c), 2, "{keys:?}");
    assert_eq!(count(&late), 1, "D once");
    assert_eq!(keys.len(), 4, "no other key: {keys:?}");
    let incidents_seen: HashSet<String> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["incident"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(incidents_seen.len(), 4);
}
