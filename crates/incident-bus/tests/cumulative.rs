//! A consumer that acks cumulatively (`AckPolicy::All`) against a real nats-server: one ack
//! covers every earlier message, so it never passes a message that was not handled. A retried
//! message holds the floor until its redelivery is handled, a dead-lettered one is covered once
//! its dead letter is stored, and a message missing below the floor (taken by someone else, or
//! gone from the stream) is read by its sequence.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::AckPolicy};
use incident_bus::consumer::{self, ConsumerSpec, Handled};
use incident_bus::ensure_stream;
use incident_bus::streams::{INCIDENT_DEADLETTER, INCIDENT_INTAKE};
use incident_testkit::NatsServer;

type Seen = Arc<Mutex<Vec<(String, i64)>>>;

/// Runs a cumulative consumer on `stream` with `spec`'s durable: the handler records each
/// (body, delivery number), retries "flaky" on its first delivery and rejects "poison".
fn spawn_consumer(
    js: &jetstream::Context,
    spec: ConsumerSpec,
) -> (
    Seen,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let seen: Seen = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
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
    (seen, stop_tx, task)
}

async fn publish(js: &jetstream::Context, subject: &str, bodies: &[&str]) {
    for body in bodies {
        js.publish(subject.to_owned(), body.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
}

/// Waits (up to `within`) until the consumer's ack floor reaches `seq` with nothing pending.
async fn wait_all_acked(
    consumer: &mut jetstream::consumer::PullConsumer,
    seq: u64,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let info = consumer.info().await.unwrap();
        if info.ack_floor.stream_sequence == seq && info.num_ack_pending == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not all acked within {within:?}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(seen: &Seen, body: &str) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(b, _)| b == body)
        .count()
}

#[tokio::test]
async fn a_retried_message_holds_the_floor_and_a_dead_letter_is_covered_once_stored() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let window = Duration::from_secs(120);
    let stream = ensure_stream(&js, &INCIDENT_INTAKE, window).await.unwrap();
    let dead = ensure_stream(&js, &INCIDENT_DEADLETTER, window)
        .await
        .unwrap();
    publish(
        &js,
        "incident.v1.intake",
        &["one", "flaky", "three", "poison", "five"],
    )
    .await;

    let mut spec = ConsumerSpec::new("INCIDENT_INTAKE", "cumulative");
    spec.cumulative_ack = true;
    spec.concurrency = 8;
    // the retry comes back after 2 s: long enough to look at the floor meanwhile
    spec.backoff = vec![Duration::from_secs(2)];
    spec.max_deliver = 3;
    let (seen, stop, task) = spawn_consumer(&js, spec);

    let mut consumer: jetstream::consumer::PullConsumer = loop {
        if let Ok(c) = stream.get_consumer("cumulative").await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        consumer.info().await.unwrap().config.ack_policy,
        AckPolicy::All
    );

    // everything after the retried message was handled, and the floor stays below it
    let started = Instant::now();
    while count(&seen, "five") == 0 || count(&seen, "poison") == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "{seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = consumer.info().await.unwrap();
    assert_eq!(
        count(&seen, "flaky"),
        1,
        "not redelivered yet: {:?}",
        seen.lock().unwrap()
    );
    assert_eq!(
        info.ack_floor.stream_sequence, 1,
        "the ack stops below the retried message: {info:?}"
    );
    assert_eq!(info.num_ack_pending, 4, "{info:?}");

    // the redelivery is handled, and one ack covers the rest
    wait_all_acked(&mut consumer, 5, Duration::from_secs(10)).await;
    assert_eq!(count(&seen, "flaky"), 2);
    for body in ["one", "three", "poison", "five"] {
        assert_eq!(count(&seen, body), 1, "{body}: {:?}", seen.lock().unwrap());
    }
    let letter = dead
        .get_last_raw_message_by_subject("incident.v1.deadletter")
        .await
        .unwrap();
    assert_eq!(&letter.payload[..], b"poison");

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// A delivery this process never got (here taken by a fetch that never acks, as a lost
/// connection or a killed process leaves it) is not covered by the later ones' ack: it is read
/// from the stream by its sequence, handled, and only then covered.
#[tokio::test]
async fn a_delivery_taken_elsewhere_is_read_by_sequence_before_the_floor_passes_it() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = ensure_stream(&js, &INCIDENT_INTAKE, Duration::from_secs(120))
        .await
        .unwrap();
    let mut spec = ConsumerSpec::new("INCIDENT_INTAKE", "cumulative");
    spec.cumulative_ack = true;
    spec.concurrency = 8;
    // no redelivery within the test: only the read by sequence can fill the hole
    spec.backoff = vec![Duration::from_secs(120)];
    spec.max_deliver = 3;
    let mut consumer = stream.create_consumer(spec.config()).await.unwrap();

    publish(&js, "incident.v1.intake", &["lost"]).await;
    {
        use futures::StreamExt;
        let mut batch = consumer.fetch().max_messages(1).messages().await.unwrap();
        let taken = batch.next().await.unwrap().unwrap();
        assert_eq!(&taken.payload[..], b"lost");
    }
    publish(&js, "incident.v1.intake", &["two", "three"]).await;

    let (seen, stop, task) = spawn_consumer(&js, spec);
    let started = Instant::now();
    while count(&seen, "three") == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "{seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = consumer.info().await.unwrap();
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "two and three are not acked past the missing one: {info:?}"
    );
    let took = wait_all_acked(&mut consumer, 3, Duration::from_secs(15)).await;
    assert!(
        took >= consumer::HOLE_WAIT.saturating_sub(Duration::from_secs(1)),
        "{took:?}"
    );
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![
            ("two".to_owned(), 1),
            ("three".to_owned(), 1),
            ("lost".to_owned(), 1)
        ]
    );

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// A message deleted from the stream is found missing when read by its sequence, and passed
/// over: the floor does not stop below it for good.
#[tokio::test]
async fn a_message_gone_from_the_stream_does_not_hold_the_floor() {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: "HOLES".into(),
            subjects: vec!["holes.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    publish(&js, "holes.x", &["one", "deleted", "three"]).await;
    assert!(stream.delete_message(2).await.unwrap());

    let mut spec = ConsumerSpec::new("HOLES", "cumulative");
    spec.cumulative_ack = true;
    spec.concurrency = 8;
    let (seen, stop, task) = spawn_consumer(&js, spec);
    let mut consumer: jetstream::consumer::PullConsumer = loop {
        if let Ok(c) = stream.get_consumer("cumulative").await {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    wait_all_acked(&mut consumer, 3, Duration::from_secs(15)).await;
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![("one".to_owned(), 1), ("three".to_owned(), 1)]
    );

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}
