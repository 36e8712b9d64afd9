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

/// Runs a consumer with `spec`: the handler records each (body, delivery number) and answers
/// what `decide` says.
fn spawn_with<F>(
    js: &jetstream::Context,
    spec: ConsumerSpec,
    decide: F,
) -> (
    Seen,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
)
where
    F: Fn(&str, i64) -> Handled + Send + Sync + 'static,
{
    spawn_gated(js, spec, Vec::new(), decide)
}

/// [`spawn_with`] a handler that retries "flaky" on its first delivery and rejects "poison".
fn spawn_consumer(
    js: &jetstream::Context,
    spec: ConsumerSpec,
) -> (
    Seen,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    spawn_with(js, spec, |body, delivered| match body {
        "flaky" if delivered == 1 => Handled::Retry("try again".into()),
        "poison" => Handled::Reject("not JSON".into()),
        _ => Handled::Done,
    })
}

fn cumulative_spec(stream: &str, durable: &str) -> ConsumerSpec {
    let mut spec = ConsumerSpec::new(stream, durable);
    spec.cumulative_ack = true;
    spec.concurrency = 64;
    spec
}

/// The consumer `durable` of `stream`, once it exists (with `policy`).
async fn consumer_with(
    stream: &jetstream::stream::Stream,
    durable: &str,
    policy: AckPolicy,
) -> jetstream::consumer::PullConsumer {
    let started = Instant::now();
    loop {
        if let Ok(mut c) = stream
            .get_consumer::<jetstream::consumer::pull::Config>(durable)
            .await
            && c.info().await.unwrap().config.ack_policy == policy
        {
            return c;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no {durable}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(stop: tokio::sync::watch::Sender<bool>, task: tokio::task::JoinHandle<()>) {
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap();
}

const WINDOW: Duration = Duration::from_secs(120);

/// A nats-server with the intake stream: the server, a client, the stream.
async fn with_intake_stream() -> (NatsServer, jetstream::Context, jetstream::stream::Stream) {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = ensure_stream(&js, &INCIDENT_INTAKE, WINDOW).await.unwrap();
    (nats, js, stream)
}

/// [`spawn_with`], with messages held in flight: each body in `gates` waits until its receiver
/// turns true, then answers the outcome given with it.
fn spawn_gated<F>(
    js: &jetstream::Context,
    spec: ConsumerSpec,
    gates: Vec<(&'static str, tokio::sync::watch::Receiver<bool>, Handled)>,
    decide: F,
) -> (
    Seen,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
)
where
    F: Fn(&str, i64) -> Handled + Send + Sync + 'static,
{
    let seen: Seen = Arc::default();
    let (gates, decide) = (Arc::new(gates), Arc::new(decide));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = {
        let seen = seen.clone();
        tokio::spawn(consumer::run(
            js.clone(),
            spec,
            move |d| {
                let (seen, gates, decide) = (seen.clone(), gates.clone(), decide.clone());
                async move {
                    let body = String::from_utf8_lossy(&d.payload).into_owned();
                    seen.lock().unwrap().push((body.clone(), d.delivered));
                    match gates.iter().find(|(b, _, _)| *b == body) {
                        Some((_, release, outcome)) => {
                            let _ = release.clone().wait_for(|r| *r).await;
                            outcome.clone()
                        }
                        None => decide(&body, d.delivered),
                    }
                }
            },
            stop_rx,
        ))
    };
    (seen, stop_tx, task)
}

/// A nats-server with a stream as an operator might set one up: deletes allowed, and at most
/// `max_messages` kept (0: no limit).
async fn operator_stream(
    name: &str,
    subjects: &str,
    max_messages: i64,
) -> (NatsServer, jetstream::Context, jetstream::stream::Stream) {
    let nats = NatsServer::start();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            max_messages,
            ..Default::default()
        })
        .await
        .unwrap();
    (nats, js, stream)
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
    let (_nats, js, stream) = with_intake_stream().await;
    let dead = ensure_stream(&js, &INCIDENT_DEADLETTER, WINDOW)
        .await
        .unwrap();
    publish(
        &js,
        "incident.v1.intake",
        &["one", "flaky", "three", "poison", "five"],
    )
    .await;

    let mut spec = cumulative_spec("INCIDENT_INTAKE", "cumulative");
    // the retry comes back after 4 s: long enough to look at the floor meanwhile
    spec.backoff = vec![Duration::from_secs(4)];
    spec.max_deliver = 3;
    let (seen, stop_tx, task) = spawn_consumer(&js, spec);
    let mut consumer = consumer_with(&stream, "cumulative", AckPolicy::All).await;

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
    wait_all_acked(&mut consumer, 5, Duration::from_secs(15)).await;
    assert_eq!(count(&seen, "flaky"), 2);
    for body in ["one", "three", "poison", "five"] {
        assert_eq!(count(&seen, body), 1, "{body}: {:?}", seen.lock().unwrap());
    }
    let letter = dead
        .get_last_raw_message_by_subject("incident.v1.deadletter")
        .await
        .unwrap();
    assert_eq!(&letter.payload[..], b"poison");

    stop(stop_tx, task).await;
}

/// A delivery this process never got (here taken by a fetch that never acks, as a lost
/// connection or a killed process leaves it) is not covered by the later ones' ack: it is read
/// from the stream by its sequence, handled, and only then covered.
#[tokio::test]
async fn a_delivery_taken_elsewhere_is_read_by_sequence_before_the_floor_passes_it() {
    let (_nats, js, stream) = with_intake_stream().await;
    let mut spec = cumulative_spec("INCIDENT_INTAKE", "cumulative");
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

    let (seen, stop_tx, task) = spawn_consumer(&js, spec);
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

    stop(stop_tx, task).await;
}

/// A message deleted from the stream is found in the stream's deleted list and passed over:
/// the floor does not stop below it for good.
#[tokio::test]
async fn a_message_gone_from_the_stream_does_not_hold_the_floor() {
    let (_nats, js, stream) = operator_stream("HOLES", "holes.>", 0).await;
    publish(&js, "holes.x", &["one", "deleted", "three"]).await;
    assert!(stream.delete_message(2).await.unwrap());

    let (seen, stop_tx, task) = spawn_consumer(&js, cumulative_spec("HOLES", "cumulative"));
    let mut consumer = consumer_with(&stream, "cumulative", AckPolicy::All).await;
    wait_all_acked(&mut consumer, 3, Duration::from_secs(15)).await;
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![("one".to_owned(), 1), ("three".to_owned(), 1)]
    );

    stop(stop_tx, task).await;
}

/// An operator limit removed messages the consumer never got, so its ack floor is below the
/// stream's first sequence: the floor passes over all of them at once, not one per wait.
#[tokio::test]
async fn messages_removed_by_limits_are_passed_over_at_once() {
    let (_nats, js, stream) = operator_stream("LIMITED", "limited.>", 10).await;
    let spec = cumulative_spec("LIMITED", "cumulative");
    // the durable exists, its ack floor 0, while 60 messages arrive and 50 are removed
    let mut consumer = stream.create_consumer(spec.config()).await.unwrap();
    for i in 1..=60 {
        publish(&js, "limited.x", &[&format!("m{i}")]).await;
    }
    assert_eq!(
        stream.clone().info().await.unwrap().state.first_sequence,
        51
    );

    let (seen, stop_tx, task) = spawn_with(&js, spec, |_, _| Handled::Done);
    wait_all_acked(&mut consumer, 60, Duration::from_secs(15)).await;
    let handled: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(b, _)| b.clone())
        .collect();
    let expected: Vec<String> = (51..=60).map(|i| format!("m{i}")).collect();
    assert_eq!(handled, expected);
    stop(stop_tx, task).await;
}

/// A message whose dead letter cannot be stored holds the floor; the handled messages above it
/// are redelivered until the server gives up on them, then the process is killed. The next
/// process finds them all missing and reads them by sequence together, not one per wait, and
/// the floor passes them once the dead letter is stored.
#[tokio::test]
async fn after_a_kill_with_a_held_floor_the_next_process_reads_every_missing_message_at_once() {
    let (nats, js, stream) = with_intake_stream().await;
    // no dead-letter stream yet: storing a dead letter fails
    let mut spec = cumulative_spec("INCIDENT_INTAKE", "cumulative");
    spec.max_deliver = 3;
    spec.backoff = vec![Duration::from_millis(200), Duration::from_millis(200)];
    let mut consumer = stream.create_consumer(spec.config()).await.unwrap();
    publish(&js, "incident.v1.intake", &["poison"]).await;
    for i in 1..=40 {
        publish(&js, "incident.v1.intake", &[&format!("ok{i}")]).await;
    }

    let reject_poison = |body: &str, _| match body {
        "poison" => Handled::Reject("not JSON".into()),
        _ => Handled::Done,
    };
    let (seen, _stop, task) = spawn_with(&js, spec.clone(), reject_poison);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let info = consumer.info().await.unwrap();
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "held by poison: {info:?}"
    );
    assert_eq!(
        count(&seen, "ok40"),
        1,
        "redeliveries are not handled again"
    );
    // kill -9
    task.abort();
    let _ = task.await;

    ensure_stream(&js, &INCIDENT_DEADLETTER, WINDOW)
        .await
        .unwrap();
    let js = jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let (seen, stop_tx, task) = spawn_with(&js, spec, reject_poison);
    publish(&js, "incident.v1.intake", &["last"]).await;
    let took = wait_all_acked(&mut consumer, 42, Duration::from_secs(15)).await;
    assert!(took < Duration::from_secs(10), "{took:?}");
    for body in ["poison", "ok1", "ok40", "last"] {
        assert_eq!(count(&seen, body), 1, "{body}: {:?}", seen.lock().unwrap());
    }
    stop(stop_tx, task).await;
}

/// The durable is deleted while the process runs (the only way to move a consumer created with
/// explicit acks to cumulative ones), and created again by the process with `AckPolicy::All`.
/// A message still in flight from the old consumer is not acked on the new one, where its ack
/// would cover an earlier message whose handling has not finished.
#[tokio::test]
async fn an_ack_from_a_consumer_created_again_covers_nothing() {
    let (_nats, js, stream) = with_intake_stream().await;
    ensure_stream(&js, &INCIDENT_DEADLETTER, WINDOW)
        .await
        .unwrap();
    let mut spec = cumulative_spec("INCIDENT_INTAKE", "intake");
    // the durable as an earlier build created it
    let mut explicit = spec.clone();
    explicit.cumulative_ack = false;
    stream.create_consumer(explicit.config()).await.unwrap();
    spec.concurrency = 8;
    publish(&js, "incident.v1.intake", &["a", "b"]).await;

    let (release_a_tx, release_a) = tokio::sync::watch::channel(false);
    let (release_b_tx, release_b) = tokio::sync::watch::channel(false);
    let gates = vec![
        ("a", release_a, Handled::Done),
        ("b", release_b, Handled::Done),
    ];
    let (seen, stop_tx, task) = spawn_gated(&js, spec.clone(), gates, |_, _| Handled::Done);
    let started = Instant::now();
    while count(&seen, "b") < 1 {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream.delete_consumer("intake").await.unwrap();
    let mut consumer = consumer_with(&stream, "intake", AckPolicy::All).await;
    // the new consumer delivers a and b again; both are in flight
    while count(&seen, "b") < 2 {
        assert!(started.elapsed() < Duration::from_secs(30), "{seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // b finishes (its old and its new delivery); a has not
    release_b_tx.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = consumer.info().await.unwrap();
    assert_eq!(
        info.ack_floor.stream_sequence, 0,
        "nothing acked while a (seq 1) is unfinished: {info:?}"
    );
    release_a_tx.send(true).unwrap();
    wait_all_acked(&mut consumer, 2, Duration::from_secs(10)).await;
    stop(stop_tx, task).await;
}

/// The stream is deleted and created again while the process runs: the new stream's messages
/// are handled, not taken for the old stream's messages of the same sequences.
#[tokio::test]
async fn the_messages_of_a_stream_created_again_are_handled() {
    let (_nats, js, stream) = with_intake_stream().await;
    let spec = cumulative_spec("INCIDENT_INTAKE", "cumulative");
    stream.create_consumer(spec.config()).await.unwrap();
    publish(&js, "incident.v1.intake", &["one", "two", "three"]).await;
    let (seen, stop_tx, task) = spawn_with(&js, spec, |_, _| Handled::Done);
    let started = Instant::now();
    while count(&seen, "three") < 1 {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    js.delete_stream("INCIDENT_INTAKE").await.unwrap();
    let stream = ensure_stream(&js, &INCIDENT_INTAKE, WINDOW).await.unwrap();
    publish(&js, "incident.v1.intake", &["four", "five"]).await;
    let mut consumer = consumer_with(&stream, "cumulative", AckPolicy::All).await;
    wait_all_acked(&mut consumer, 2, Duration::from_secs(20)).await;
    assert_eq!(count(&seen, "four"), 1, "{:?}", seen.lock().unwrap());
    assert_eq!(count(&seen, "five"), 1, "{:?}", seen.lock().unwrap());
    stop(stop_tx, task).await;
}

/// The stream and the durable are deleted and created again by someone else while this
/// process holds a full window, so no error tells it: the new consumer's first delivery does
/// (its consumer sequence starts again), and its messages are handled, not taken for the old
/// ones of the same sequences. (The message in flight ends in a retry: had it been recorded,
/// its ack would have reached the new consumer before anything showed the change, and covered
/// the new stream's first three messages; JetStream's ack subjects do not name the consumer's
/// incarnation. Hence the README's rule: create a durable or a stream again only with every
/// process consuming it stopped.)
#[tokio::test]
async fn a_consumer_created_again_by_someone_else_is_noticed_from_its_deliveries() {
    let (_nats, js, stream) = with_intake_stream().await;
    let mut spec = cumulative_spec("INCIDENT_INTAKE", "cumulative");
    spec.concurrency = 1;
    stream.create_consumer(spec.config()).await.unwrap();
    publish(&js, "incident.v1.intake", &["one", "two", "three"]).await;

    let (release_tx, release) = tokio::sync::watch::channel(false);
    let retry = Handled::Retry("the log is not writable".into());
    let (seen, stop_tx, task) = spawn_gated(
        &js,
        spec.clone(),
        vec![("three", release, retry)],
        |_, _| Handled::Done,
    );
    let started = Instant::now();
    while count(&seen, "three") < 1 {
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // with "three" in flight the window is full: the process asks for nothing meanwhile
    js.delete_stream("INCIDENT_INTAKE").await.unwrap();
    let stream = ensure_stream(&js, &INCIDENT_INTAKE, WINDOW).await.unwrap();
    let mut consumer = stream.create_consumer(spec.config()).await.unwrap();
    publish(&js, "incident.v1.intake", &["four", "five", "six"]).await;
    release_tx.send(true).unwrap();

    wait_all_acked(&mut consumer, 3, Duration::from_secs(20)).await;
    for body in ["four", "five", "six"] {
        assert_eq!(count(&seen, body), 1, "{body}: {:?}", seen.lock().unwrap());
    }
    stop(stop_tx, task).await;
}
