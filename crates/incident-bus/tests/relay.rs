//! The relay against a real nats-server: order, exactly once across NATS outages and restarts,
//! and no re-publish after the duplicate window has passed.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use incident_bus::{Relay, ensure_stream, streams::INCIDENT_EVENTS};
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};
use incident_testkit::NatsServer;

fn append(log: &EventLog, stream: &str, n: usize) {
    let version = log.stream_version(stream).unwrap();
    let events = (0..n)
        .map(|i| {
            let id = format!("{stream}-{}", version as usize + i + 1);
            NewEvent {
                bytes: format!("{{\"id\":\"{id}\"}}").into_bytes(),
                id,
            }
        })
        .collect();
    log.append(AppendRequest {
        stream: stream.to_owned(),
        expected: ExpectedVersion::Exact(version),
        events,
        processed: vec![],
    })
    .unwrap();
}

async fn stream_ids(js: &jetstream::Context) -> Vec<String> {
    let stream = js.get_stream("INCIDENT_EVENTS").await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.cached_info().num_pending as usize;
    if pending == 0 {
        return vec![];
    }
    let mut msgs = consumer
        .fetch()
        .max_messages(pending)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut out = vec![];
    while let Some(Ok(m)) = msgs.next().await {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(
            m.subject.as_str(),
            format!(
                "incident.v1.events.{}",
                v["id"].as_str().unwrap().rsplit_once('-').unwrap().0
            )
        );
        out.push(v["id"].as_str().unwrap().to_owned());
        if out.len() == pending {
            break;
        }
    }
    out
}

async fn js(nats: &NatsServer, window: Duration) -> jetstream::Context {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    ensure_stream(&js, &INCIDENT_EVENTS, window).await.unwrap();
    js
}

async fn drain(relay: &mut Relay) {
    while relay.step().await.unwrap() > 0 {}
}

/// A step the stream refuses: an error, the cursor still at `cursor`, and the stream holding
/// exactly `ids` (the records before the refused one, each once, and none after it).
async fn assert_refused_and_held(
    relay: &mut Relay,
    log: &EventLog,
    js: &jetstream::Context,
    cursor: u64,
    ids: &[String],
) {
    assert!(
        relay.step().await.is_err(),
        "the refused record is an error"
    );
    assert_eq!(
        log.cursor("relay").unwrap(),
        cursor,
        "the cursor does not pass a record the stream does not hold"
    );
    assert_eq!(
        stream_ids(js).await,
        ids,
        "the records before it are on the stream, each once, and none after it"
    );
}

#[tokio::test]
async fn publishes_the_log_in_order_with_the_subject_per_incident() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    append(&log, "A", 2);
    append(&log, "B", 1);
    append(&log, "A", 1);
    let js = js(&nats, Duration::from_secs(120)).await;
    let mut relay = Relay::new(log.clone(), js.clone(), INCIDENT_EVENTS, "relay");
    drain(&mut relay).await;
    assert_eq!(stream_ids(&js).await, ["A-1", "A-2", "B-1", "A-3"]);
    assert_eq!(log.cursor("relay").unwrap(), 4);
    // stream config is the contract
    let info = js
        .get_stream("INCIDENT_EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    assert_eq!(info.discard, jetstream::stream::DiscardPolicy::New);
    assert!(info.deny_delete && info.deny_purge);
    assert_eq!(info.storage, jetstream::stream::StorageType::File);
}

#[tokio::test]
async fn a_republish_after_the_duplicate_window_is_skipped() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    append(&log, "A", 3);
    append(&log, "B", 2);
    // a tiny duplicate window: the server no longer remembers the ids when the relay comes back
    let js = js(&nats, Duration::from_millis(100)).await;
    let mut relay = Relay::new(log.clone(), js.clone(), INCIDENT_EVENTS, "relay");
    drain(&mut relay).await;
    assert_eq!(stream_ids(&js).await.len(), 5);

    // a crash after publishing but before the cursor reached the disk
    log.set_cursor("relay", 1).unwrap();
    append(&log, "A", 1);
    tokio::time::sleep(Duration::from_millis(400)).await; // let the server's window pass
    let mut restarted = Relay::new(log.clone(), js.clone(), INCIDENT_EVENTS, "relay");
    drain(&mut restarted).await;
    assert_eq!(
        stream_ids(&js).await,
        ["A-1", "A-2", "A-3", "B-1", "B-2", "A-4"]
    );
    assert_eq!(
        restarted
            .status()
            .skipped_already_published
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
}

#[tokio::test]
async fn catches_up_after_nats_comes_back() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let js = js(&nats, Duration::from_secs(120)).await;
    let mut relay = Relay::new(log.clone(), js.clone(), INCIDENT_EVENTS, "relay");
    append(&log, "A", 1);
    drain(&mut relay).await;

    nats.stop();
    append(&log, "A", 2);
    append(&log, "C", 1);
    assert!(
        relay.step().await.is_err(),
        "publishing with NATS down fails"
    );
    nats.restart();
    let mut ok = false;
    for _ in 0..100 {
        match relay.step().await {
            Ok(_) if log.cursor("relay").unwrap() == 4 => {
                ok = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(ok, "the relay caught up");
    assert_eq!(stream_ids(&js).await, ["A-1", "A-2", "A-3", "C-1"]);
}

/// Appends one event to each of `streams`, `rounds` times, one group commit per round.
fn append_rounds(log: &EventLog, streams: &[String], rounds: usize) -> Vec<String> {
    let mut ids = vec![];
    for _ in 0..rounds {
        let batch = streams
            .iter()
            .map(|s| {
                let version = log.stream_version(s).unwrap();
                let id = format!("{s}-{}", version + 1);
                ids.push(id.clone());
                AppendRequest {
                    stream: s.clone(),
                    expected: ExpectedVersion::Exact(version),
                    events: vec![NewEvent {
                        bytes: format!("{{\"id\":\"{id}\"}}").into_bytes(),
                        id,
                    }],
                    processed: vec![],
                }
            })
            .collect();
        for r in log.append_batch(batch) {
            r.unwrap();
        }
    }
    ids
}

/// Appends one event of 2 KiB to `stream` (more than the 512 bytes the tests allow).
fn append_big(log: &EventLog, stream: &str) {
    let version = log.stream_version(stream).unwrap();
    let id = format!("{stream}-{}", version + 1);
    log.append(AppendRequest {
        stream: stream.into(),
        expected: ExpectedVersion::Exact(version),
        events: vec![NewEvent {
            bytes: format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}", "x".repeat(2048)).into_bytes(),
            id,
        }],
        processed: vec![],
    })
    .unwrap();
}

/// Limits the stream's messages to 512 bytes (an operator's limit), or lifts the limit.
async fn limit_size(js: &jetstream::Context, limited: bool) {
    let mut config = INCIDENT_EVENTS.config(Duration::from_secs(120), 1);
    config.max_message_size = if limited { 512 } else { -1 };
    js.update_stream(&config).await.unwrap();
}

/// A nats-server with the events stream (a 120 s duplicate window) and an empty log.
async fn fixture() -> (NatsServer, tempfile::TempDir, EventLog, jetstream::Context) {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let js = js(&nats, Duration::from_secs(120)).await;
    (nats, dir, log, js)
}

/// Another publisher's message on `incident.v1.events.<incident>`.
async fn publish_foreign(js: &jetstream::Context, incident: &str, id: &str) {
    js.publish(
        format!("incident.v1.events.{incident}"),
        format!("{{\"id\":\"{id}\"}}").into(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

fn rechecked(relay: &Relay) -> u64 {
    relay
        .status()
        .rechecked_chunks
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// A relay that has published a first small chunk (each with its ack), so it knows where the
/// stream ends; returns the ids published.
async fn started(log: &EventLog, js: &jetstream::Context) -> (Relay, Vec<String>) {
    let mut relay = Relay::new(log.clone(), js.clone(), INCIDENT_EVENTS, "relay");
    let ids = append_rounds(log, &["first".to_owned()], 3);
    drain(&mut relay).await;
    (relay, ids)
}

#[tokio::test]
async fn a_long_log_goes_out_in_chunks_each_event_once_in_order() {
    let (_nats, _dir, log, js) = fixture().await;
    let (mut relay, mut ids) = started(&log, &js).await;
    let streams: Vec<String> = (0..50).map(|i| format!("S{i}")).collect();
    // more than two chunks
    ids.extend(append_rounds(&log, &streams, 12));
    drain(&mut relay).await;
    assert_eq!(stream_ids(&js).await, ids);
    assert_eq!(log.cursor("relay").unwrap(), ids.len() as u64);
    assert_eq!(rechecked(&relay), 0, "every chunk was taken as sent");
}

#[tokio::test]
async fn a_record_the_stream_refuses_inside_a_chunk_holds_the_cursor_and_nothing_is_lost() {
    let (_nats, _dir, log, js) = fixture().await;
    let (mut relay, mut ids) = started(&log, &js).await;
    let before = log.cursor("relay").unwrap();
    // an operator's limit the next record breaks: the server drops it without a word when no
    // ack is asked for
    limit_size(&js, true).await;
    let small: Vec<String> = (0..4).map(|i| format!("A{i}")).collect();
    ids.extend(append_rounds(&log, &small, 25));
    append_big(&log, "BIG");
    let after = append_rounds(&log, &small, 25);

    assert_refused_and_held(&mut relay, &log, &js, before, &ids).await;
    assert_eq!(
        rechecked(&relay),
        1,
        "the chunk was checked record by record"
    );
    // still refused, still held
    assert_refused_and_held(&mut relay, &log, &js, before, &ids).await;

    limit_size(&js, false).await;
    drain(&mut relay).await;
    ids.push("BIG-1".into());
    ids.extend(after);
    assert_eq!(
        stream_ids(&js).await,
        ids,
        "once lifted, it and the rest follow in log order, once"
    );
    assert_eq!(log.cursor("relay").unwrap(), log.head().seq);
}

/// A record refused in the middle of a chunk, followed by a later record of the same incident:
/// the later one must not stand for it when the chunk is checked subject by subject.
#[tokio::test]
async fn a_refused_record_is_not_covered_by_a_later_one_of_its_incident() {
    let (_nats, _dir, log, js) = fixture().await;
    let (mut relay, mut ids) = started(&log, &js).await;
    let before = log.cursor("relay").unwrap();
    limit_size(&js, true).await;
    append_big(&log, "INC");
    append(&log, "INC", 1);
    append(&log, "B", 3);
    assert_refused_and_held(&mut relay, &log, &js, before, &ids).await;
    limit_size(&js, false).await;
    drain(&mut relay).await;
    ids.extend(["INC-1", "INC-2", "B-1", "B-2", "B-3"].map(String::from));
    assert_eq!(stream_ids(&js).await, ids);
}

/// A record refused in a chunk while a message from another publisher comes before the chunk:
/// the count would match; the chain still stops at the first record.
#[tokio::test]
async fn a_refused_record_and_a_foreign_message_do_not_add_up_to_a_whole_chunk() {
    let (_nats, _dir, log, js) = fixture().await;
    let (mut relay, mut ids) = started(&log, &js).await;
    let before = log.cursor("relay").unwrap();
    limit_size(&js, true).await;
    publish_foreign(&js, "X", "X-1").await;
    ids.push("X-1".into());
    append(&log, "A", 2);
    append_big(&log, "BIG");
    append(&log, "C", 2);
    ids.extend(["A-1", "A-2"].map(String::from));
    assert_refused_and_held(&mut relay, &log, &js, before, &ids).await;
    assert_eq!(rechecked(&relay), 1);
}

#[tokio::test]
async fn a_message_from_another_publisher_costs_a_check_not_a_duplicate() {
    let (_nats, _dir, log, js) = fixture().await;
    let (mut relay, mut ids) = started(&log, &js).await;
    publish_foreign(&js, "X", "X-1").await;
    ids.push("X-1".into());
    let streams: Vec<String> = (0..10).map(|i| format!("S{i}")).collect();
    ids.extend(append_rounds(&log, &streams, 5));
    drain(&mut relay).await;
    assert_eq!(rechecked(&relay), 1);
    assert_eq!(stream_ids(&js).await, ids, "nothing published twice");
    // the last ack said where the stream ends: the next chunk is taken as sent
    ids.extend(append_rounds(&log, &streams, 5));
    drain(&mut relay).await;
    assert_eq!(rechecked(&relay), 1);
    assert_eq!(stream_ids(&js).await, ids);
}

/// After a start every record up to the head may be on the stream: each goes with its own ack,
/// and a refused one still stops the ones after it.
#[tokio::test]
async fn after_a_start_a_refused_record_stops_the_records_after_it() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let js = js(&nats, Duration::from_secs(120)).await;
    limit_size(&js, true).await;
    append(&log, "A", 2);
    append_big(&log, "INC");
    append(&log, "INC", 1);
    append(&log, "B", 2);
    let mut relay = Relay::new(log.clone(), js.clone(), INCIDENT_EVENTS, "relay");
    let before = ["A-1", "A-2"].map(String::from);
    assert_refused_and_held(&mut relay, &log, &js, 0, &before).await;
    limit_size(&js, false).await;
    drain(&mut relay).await;
    assert_eq!(
        stream_ids(&js).await,
        ["A-1", "A-2", "INC-1", "INC-2", "B-1", "B-2"]
    );
}

/// Another publisher's message on an incident's subject hides that incident's records from the
/// check after a start: they go again and the server drops them as duplicates inside its
/// window, without holding up the relay.
#[tokio::test]
async fn a_foreign_message_on_an_incident_subject_does_not_hold_up_a_restart() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let js = js(&nats, Duration::from_secs(120)).await;
    let mut relay = Relay::new(log.clone(), js.clone(), INCIDENT_EVENTS, "relay");
    append(&log, "A", 1);
    append(&log, "B", 1);
    append(&log, "A", 1);
    drain(&mut relay).await;
    publish_foreign(&js, "A", "A-foreign").await;
    // a crash before the cursor reached the disk
    log.set_cursor("relay", 0).unwrap();
    append(&log, "A", 1);
    let mut restarted = Relay::new(log.clone(), js.clone(), INCIDENT_EVENTS, "relay");
    drain(&mut restarted).await;
    assert_eq!(
        stream_ids(&js).await,
        ["A-1", "B-1", "A-2", "A-foreign", "A-3"]
    );
    assert_eq!(log.cursor("relay").unwrap(), 4);
}

/// The cluster deployment (three nodes, R3 streams): chunks sent with one ack are stored whole
/// and in order, and the relay's checks hold there too.
#[tokio::test]
async fn an_r3_stream_on_a_three_node_cluster_takes_each_chunk_whole() {
    let cluster: Vec<u16> = (0..3).map(|_| incident_testkit::free_port()).collect();
    let routes = cluster
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let nodes: Vec<NatsServer> = cluster
        .iter()
        .enumerate()
        .map(|(i, port)| {
            NatsServer::start_with(&[
                "-n",
                &format!("node-{i}"),
                "--cluster_name",
                "incident",
                "--cluster",
                &format!("nats://127.0.0.1:{port}"),
                "--routes",
                &routes,
            ])
        })
        .collect();
    let client = async_nats::connect(nodes[0].url()).await.unwrap();
    let js = jetstream::new(client);
    // the cluster elects its JetStream leader first
    let mut ready = false;
    for _ in 0..150 {
        if incident_bus::ensure_stream_replicated(
            &js,
            &INCIDENT_EVENTS,
            Duration::from_secs(120),
            3,
        )
        .await
        .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(ready, "the cluster took the R3 stream");
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let (mut relay, mut ids) = started(&log, &js).await;
    let streams: Vec<String> = (0..50).map(|i| format!("S{i}")).collect();
    ids.extend(append_rounds(&log, &streams, 12));
    drain(&mut relay).await;
    assert_eq!(stream_ids(&js).await, ids);
    assert_eq!(rechecked(&relay), 0, "every chunk was taken as sent");
    // another publisher's message between chunks is caught there too
    publish_foreign(&js, "X", "X-1").await;
    ids.push("X-1".into());
    ids.extend(append_rounds(&log, &streams, 2));
    drain(&mut relay).await;
    assert_eq!(rechecked(&relay), 1);
    assert_eq!(stream_ids(&js).await, ids);
    let replicas = js
        .get_stream("INCIDENT_EVENTS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .num_replicas;
    assert_eq!(replicas, 3);
}
