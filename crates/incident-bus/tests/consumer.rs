//! The durable consumer against a real nats-server: acks what was handled, redelivers what
//! failed for a passing reason, dead-letters with the reason what can never be processed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use incident_bus::consumer::{self, ConsumerSpec, Handled};
use incident_bus::ensure_stream;
use incident_bus::streams::{INCIDENT_DEADLETTER, INCIDENT_INTAKE};
use incident_testkit::NatsServer;

#[tokio::test]
async fn handled_retried_and_dead_lettered() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let window = Duration::from_secs(120);
    ensure_stream(&js, &INCIDENT_INTAKE, window).await.unwrap();
    let dead = ensure_stream(&js, &INCIDENT_DEADLETTER, window)
        .await
        .unwrap();

    for body in ["good", "flaky", "poison"] {
        js.publish("incident.v1.intake", body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let seen: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut spec = ConsumerSpec::new("INCIDENT_INTAKE", "test-consumer");
    spec.backoff = vec![Duration::from_millis(50)];
    spec.max_deliver = 3;
    let task = {
        let seen = seen.clone();
        tokio::spawn(consumer::run(
            js.clone(),
            spec,
            move |d| {
                let seen = seen.clone();
                async move {
                    let body = String::from_utf8_lossy(&d.payload).into_owned();
                    seen.lock().unwrap().push((body.clone(), d.delivered));
                    match body.as_str() {
                        "flaky" if d.delivered == 1 => Handled::Retry("try again".into()),
                        "poison" => Handled::Reject("not JSON".into()),
                        _ => Handled::Done,
                    }
                }
            },
            stop_rx,
        ))
    };

    let mut done = false;
    for _ in 0..100 {
        {
            let s = seen.lock().unwrap();
            if s.iter().any(|(b, n)| b == "flaky" && *n == 2)
                && s.iter().any(|(b, _)| b == "poison")
            {
                done = true;
            }
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        done,
        "flaky redelivered and poison seen: {:?}",
        seen.lock().unwrap()
    );

    let msg = {
        let mut found = None;
        for _ in 0..50 {
            if let Ok(m) = dead
                .get_last_raw_message_by_subject("incident.v1.deadletter")
                .await
            {
                found = Some(m);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        found.expect("a dead letter")
    };
    assert_eq!(&msg.payload[..], b"poison");
    assert_eq!(
        msg.headers
            .get("Incident-Deadletter-Reason")
            .map(|v| v.as_str()),
        Some("not JSON")
    );
    assert_eq!(
        msg.headers
            .get("Incident-Deadletter-Stream")
            .map(|v| v.as_str()),
        Some("INCIDENT_INTAKE")
    );

    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(
        s.iter().filter(|(b, _)| b == "good").count(),
        1,
        "good handled once: {s:?}"
    );
    assert_eq!(
        s.iter().filter(|(b, _)| b == "poison").count(),
        1,
        "poison not retried: {s:?}"
    );
}

/// What a service killed between taking a delivery and acknowledging it waits for: JetStream
/// redelivers after the consumer's first backoff step, not its ack wait (nats-server sets the ack
/// wait to `backoff[0]` when a backoff is given). The SLA timer's catch-up gate relies on it.
#[tokio::test]
async fn an_unacknowledged_delivery_comes_back_after_the_first_backoff_step() {
    let nats = NatsServer::start();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client);
    let stream = ensure_stream(&js, &INCIDENT_INTAKE, Duration::from_secs(120))
        .await
        .unwrap();
    js.publish("incident.v1.intake", "taken, never acked".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let spec = ConsumerSpec::new("INCIDENT_INTAKE", "killed-consumer");
    assert!(spec.ack_wait >= Duration::from_secs(30));
    let consumer = stream.create_consumer(spec.config()).await.unwrap();
    let info = consumer.cached_info();
    assert_eq!(info.config.ack_wait, spec.backoff[0], "{:?}", info.config);

    // taken and dropped without an ack, as a killed process leaves it
    use futures::StreamExt;
    let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
    let first = batch.next().await.unwrap().unwrap();
    assert_eq!(first.info().unwrap().delivered, 1);
    drop(batch);
    let taken = std::time::Instant::now();
    let again = loop {
        let mut batch = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        if let Some(m) = batch.next().await {
            break m.unwrap();
        }
        assert!(
            taken.elapsed() < Duration::from_secs(15),
            "not redelivered within 15 s"
        );
    };
    // 2, or more when a redelivery reached a fetch just as it expired
    assert!(again.info().unwrap().delivered >= 2);
    assert!(
        taken.elapsed() < Duration::from_secs(10),
        "{:?}",
        taken.elapsed()
    );
    again.ack().await.unwrap();
}

type Seen = Arc<Mutex<Vec<(String, i64)>>>;

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..200 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn publish_bodies(js: &jetstream::Context, bodies: impl IntoIterator<Item = String>) {
    for body in bodies {
        js.publish("incident.v1.intake", body.into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

async fn consumer_info(js: &jetstream::Context, durable: &str) -> jetstream::consumer::Info {
    let stream = js.get_stream("INCIDENT_INTAKE").await.unwrap();
    let mut consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer(durable).await.unwrap();
    consumer.info().await.unwrap().clone()
}

/// With cumulative acks a run of finished messages is acked at once, a message waiting for
/// redelivery holds the acks of later ones back until it is done, and a dead-lettered one is
/// covered like a done one: in the end nothing is left pending. (What waits behind the retried
/// message past the ack wait is redelivered and handled again: handlers are idempotent, and a
/// dead letter is stored once.)
#[tokio::test]
async fn cumulative_acks_cover_finished_runs_and_wait_for_a_retried_message() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let window = Duration::from_secs(120);
    ensure_stream(&js, &INCIDENT_INTAKE, window).await.unwrap();
    let dead = ensure_stream(&js, &INCIDENT_DEADLETTER, window)
        .await
        .unwrap();
    publish_bodies(&js, (1..=40).map(|i| format!("m{i}"))).await;

    let seen: Seen = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut spec = ConsumerSpec::new("INCIDENT_INTAKE", "cumulative");
    spec.cumulative_ack = true;
    spec.concurrency = 16;
    spec.backoff = vec![Duration::from_millis(300)];
    spec.max_deliver = 3;
    let task = {
        let seen = seen.clone();
        tokio::spawn(consumer::run(
            js.clone(),
            spec,
            move |d| {
                let seen = seen.clone();
                async move {
                    let body = String::from_utf8_lossy(&d.payload).into_owned();
                    seen.lock().unwrap().push((body.clone(), d.delivered));
                    match body.as_str() {
                        "m7" if d.delivered == 1 => Handled::Retry("try again".into()),
                        "m20" => Handled::Reject("not JSON".into()),
                        _ => Handled::Done,
                    }
                }
            },
            stop_rx,
        ))
    };
    wait_for("m7 redelivered", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(b, n)| b == "m7" && *n == 2)
    })
    .await;
    let mut info = consumer_info(&js, "cumulative").await;
    for _ in 0..100 {
        if info.ack_floor.stream_sequence == 40 && info.num_ack_pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        info = consumer_info(&js, "cumulative").await;
    }
    assert_eq!(info.config.ack_policy, jetstream::consumer::AckPolicy::All);
    assert_eq!(info.ack_floor.stream_sequence, 40, "{info:?}");
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    let letter = dead
        .get_last_raw_message_by_subject("incident.v1.deadletter")
        .await
        .unwrap();
    assert_eq!(&letter.payload[..], b"m20");
    assert_eq!(dead.clone().info().await.unwrap().state.messages, 1);

    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap();
    let s = seen.lock().unwrap();
    for i in 1..=40 {
        assert!(s.iter().any(|(b, _)| *b == format!("m{i}")), "m{i}: {s:?}");
    }
    assert!(s.iter().take(40).all(|(_, n)| *n == 1), "{s:?}");
}

/// A process killed with messages taken and not finished: a cumulative ack of anything later
/// would cover them. The next process handles them first, in order, read back from the stream
/// (the redelivery, 30 s away here, is not waited for), and only then the new ones.
#[tokio::test]
async fn a_restart_handles_what_a_killed_process_took_before_anything_new() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let window = Duration::from_secs(120);
    ensure_stream(&js, &INCIDENT_INTAKE, window).await.unwrap();
    ensure_stream(&js, &INCIDENT_DEADLETTER, window)
        .await
        .unwrap();
    publish_bodies(&js, (1..=10).map(|i| format!("m{i}"))).await;
    let spec = {
        let mut spec = ConsumerSpec::new("INCIDENT_INTAKE", "restarted");
        spec.cumulative_ack = true;
        spec.concurrency = 16;
        spec.backoff = vec![Duration::from_secs(30)];
        spec
    };

    // the first process finishes m1..m5; m6..m10 never finish
    let first_client = async_nats::connect(nats.url()).await.unwrap();
    let first_seen: Seen = Arc::default();
    let (_stop_first, stop_rx) = tokio::sync::watch::channel(false);
    let first = {
        let seen = first_seen.clone();
        tokio::spawn(consumer::run(
            jetstream::new(first_client.clone()),
            spec.clone(),
            move |d| {
                let seen = seen.clone();
                async move {
                    let body = String::from_utf8_lossy(&d.payload).into_owned();
                    seen.lock().unwrap().push((body.clone(), d.delivered));
                    let n: u32 = body[1..].parse().unwrap();
                    if n > 5 {
                        futures::future::pending::<()>().await;
                    }
                    Handled::Done
                }
            },
            stop_rx,
        ))
    };
    wait_for("all ten taken", || first_seen.lock().unwrap().len() == 10).await;
    let mut info = consumer_info(&js, "restarted").await;
    for _ in 0..100 {
        if info.ack_floor.stream_sequence == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        info = consumer_info(&js, "restarted").await;
    }
    assert_eq!(info.ack_floor.stream_sequence, 5, "{info:?}");
    assert_eq!(info.num_ack_pending, 5, "{info:?}");
    // killed: its task and its connection go
    first.abort();
    let _ = first.await;
    first_client.drain().await.unwrap();
    drop(first_client);

    publish_bodies(&js, (11..=15).map(|i| format!("m{i}"))).await;
    let seen: Seen = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = std::time::Instant::now();
    let second = {
        let seen = seen.clone();
        tokio::spawn(consumer::run(
            js.clone(),
            spec,
            move |d| {
                let seen = seen.clone();
                async move {
                    let body = String::from_utf8_lossy(&d.payload).into_owned();
                    seen.lock().unwrap().push((body, d.delivered));
                    Handled::Done
                }
            },
            stop_rx,
        ))
    };
    let expected: Vec<String> = (6..=15).map(|i| format!("m{i}")).collect();
    wait_for("m6..m15 handled", || {
        let s = seen.lock().unwrap();
        expected.iter().all(|e| s.iter().any(|(b, _)| b == e))
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let order: Vec<String> = {
        let s = seen.lock().unwrap();
        let mut firsts = Vec::new();
        for (b, _) in s.iter() {
            if !firsts.contains(b) {
                firsts.push(b.clone());
            }
        }
        firsts
    };
    assert_eq!(order, expected, "stream order, the killed process's first");
    let mut info = consumer_info(&js, "restarted").await;
    for _ in 0..100 {
        if info.ack_floor.stream_sequence == 15 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        info = consumer_info(&js, "restarted").await;
    }
    assert_eq!(info.ack_floor.stream_sequence, 15, "{info:?}");
    assert_eq!(info.num_ack_pending, 0, "{info:?}");
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(15), second)
        .await
        .unwrap()
        .unwrap();
}

/// A durable created with explicit acks by an earlier build keeps them: every message is still
/// acked on its own.
#[tokio::test]
async fn an_explicit_ack_durable_keeps_explicit_acks() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = ensure_stream(&js, &INCIDENT_INTAKE, Duration::from_secs(120))
        .await
        .unwrap();
    let old = ConsumerSpec::new("INCIDENT_INTAKE", "older");
    stream.create_consumer(old.config()).await.unwrap();
    publish_bodies(&js, (1..=5).map(|i| format!("m{i}"))).await;

    let mut spec = ConsumerSpec::new("INCIDENT_INTAKE", "older");
    spec.cumulative_ack = true;
    spec.concurrency = 4;
    let count = Arc::new(Mutex::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = {
        let count = count.clone();
        tokio::spawn(consumer::run(
            js.clone(),
            spec,
            move |_| {
                let count = count.clone();
                async move {
                    *count.lock().unwrap() += 1;
                    Handled::Done
                }
            },
            stop_rx,
        ))
    };
    wait_for("five handled", || *count.lock().unwrap() == 5).await;
    let mut info = consumer_info(&js, "older").await;
    for _ in 0..100 {
        if info.ack_floor.stream_sequence == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        info = consumer_info(&js, "older").await;
    }
    assert_eq!(
        info.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );
    assert_eq!(info.ack_floor.stream_sequence, 5, "{info:?}");
    assert_eq!(info.num_ack_pending, 0);
    let _ = stop_tx.send(true);
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap();
}
