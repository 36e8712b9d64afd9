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
