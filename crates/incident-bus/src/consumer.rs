//! The durable consumer every service reads events with: a durable pull consumer with explicit
//! ack, bounded redelivery with backoff, and dead-lettering of what can never be processed.
//!
//! The handler makes its effect idempotent (it records the input's id in its own log together
//! with what it derived, and skips ids it has seen) and answers [`Handled`]; only then is the
//! message acked. A consumer that vanished (e.g. the server lost it) is created again.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use bytes::Bytes;
use std::future::Future as _;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::watch;

use crate::relay::backoff;
use crate::streams::DEADLETTER_SUBJECT;

#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable: String,
    pub filter_subjects: Vec<String>,
    /// After this many deliveries a message that still fails is dead-lettered.
    pub max_deliver: i64,
    pub ack_wait: Duration,
    /// Redelivery delays (JetStream `backoff`); its length must stay below `max_deliver`.
    pub backoff: Vec<Duration>,
    /// How many messages may be in flight in this process at once (1: one at a time). Handlers
    /// are started in stream order, so a handler that submits to an ordered queue before its
    /// first wait keeps the order; each message is acked on its own outcome.
    pub concurrency: usize,
}

impl ConsumerSpec {
    pub fn new(stream: &str, durable: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            durable: durable.to_owned(),
            filter_subjects: Vec::new(),
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(15),
                Duration::from_secs(30),
            ],
            concurrency: 1,
        }
    }

    pub fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            backoff: self.backoff.clone(),
            filter_subjects: self.filter_subjects.clone(),
            ..Default::default()
        }
    }
}

/// One delivered message, as the handler sees it.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// `Nats-Msg-Id` when the publisher set one, else `<stream>:<stream sequence>`: the id the
    /// handler records to make its effect idempotent.
    pub id: String,
    pub subject: String,
    pub payload: Bytes,
    pub headers: Option<HeaderMap>,
    pub stream_sequence: u64,
    /// 1 on first delivery.
    pub delivered: i64,
}

/// What the handler made of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Processed (or seen before): ack it.
    Done,
    /// A passing failure: redeliver later (dead-lettered once `max_deliver` is reached).
    Retry(String),
    /// Can never be processed: dead-letter it with the reason, then terminate it.
    Reject(String),
}

/// Consumes until `shutdown` turns true. Up to `spec.concurrency` messages are in flight at
/// once: each handler is started (polled for the first time) as its message arrives, in stream
/// order, and acked on its own outcome, so a handler that submits to an ordered queue on its
/// first poll keeps the stream order while earlier messages still wait for their effect.
pub async fn run<H, Fut>(
    js: jetstream::Context,
    spec: ConsumerSpec,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Delivery) -> Fut,
    Fut: std::future::Future<Output = Handled>,
{
    let window = spec.concurrency.max(1);
    let mut in_flight = FuturesUnordered::new();
    let mut failures = 0u32;
    'consume: while !*shutdown.borrow() {
        let messages = match open(&js, &spec).await {
            Ok(m) => m,
            Err(e) => {
                failures += 1;
                tracing::warn!(durable = %spec.durable, error = %e, "consumer unavailable; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff(failures)) => {}
                    r = shutdown.changed() => if r.is_err() { break 'consume },
                }
                continue;
            }
        };
        failures = 0;
        tokio::pin!(messages);
        loop {
            let next = tokio::select! {
                biased;
                // stopping (or the sender is gone, which means the same)
                r = shutdown.changed() => if r.is_err() { break 'consume } else { break },
                Some(()) = in_flight.next(), if !in_flight.is_empty() => continue,
                m = messages.next(), if in_flight.len() < window => m,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(durable = %spec.durable, error = %e, "consumer stream error; reopening");
                    break;
                }
                None => break,
            };
            let mut handling = Box::pin(handle_one(&js, &spec, msg, &handler));
            // the first poll happens here, in stream order; the rest in the window
            let waker = futures::task::noop_waker_ref();
            let mut cx = std::task::Context::from_waker(waker);
            if handling.as_mut().poll(&mut cx).is_pending() {
                in_flight.push(handling);
            }
        }
    }
    // what is in flight finishes (or is redelivered later if it cannot within the grace)
    let _ = tokio::time::timeout(Duration::from_secs(10), in_flight.for_each(|()| async {})).await;
}

async fn open(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
) -> Result<pull::Stream, async_nats::Error> {
    let stream = js.get_stream(&spec.stream).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(&spec.durable, spec.config())
        .await?;
    Ok(consumer
        .stream()
        .max_messages_per_batch(spec.concurrency.clamp(1, 1024))
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?)
}

/// The id a handler records for a message: its `Nats-Msg-Id`, else `<stream>:<sequence>`.
pub fn delivery_id(stream: &str, headers: Option<&HeaderMap>, stream_sequence: u64) -> String {
    headers
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| format!("{stream}:{stream_sequence}"))
}

async fn handle_one<H, Fut>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    msg: jetstream::Message,
    handler: &H,
) where
    H: Fn(Delivery) -> Fut,
    Fut: std::future::Future<Output = Handled>,
{
    let (stream_sequence, delivered) = match msg.info() {
        Ok(info) => (info.stream_sequence, info.delivered),
        Err(_) => (0, 1),
    };
    let delivery = Delivery {
        id: delivery_id(&spec.stream, msg.headers.as_ref(), stream_sequence),
        subject: msg.subject.to_string(),
        payload: msg.payload.clone(),
        headers: msg.headers.clone(),
        stream_sequence,
        delivered,
    };
    let outcome = handler(delivery.clone()).await;
    let result = match outcome {
        Handled::Done => msg.ack().await,
        Handled::Retry(reason) if delivered < spec.max_deliver => {
            tracing::warn!(id = %delivery.id, delivered, %reason, "will be redelivered");
            let delay = spec
                .backoff
                .get((delivered - 1).max(0) as usize)
                .copied()
                .unwrap_or(Duration::from_secs(30));
            msg.ack_with(AckKind::Nak(Some(delay))).await
        }
        Handled::Retry(reason) => {
            let reason = format!("gave up after {delivered} deliveries: {reason}");
            dead_letter_then_term(js, spec, &msg, &delivery, &reason).await
        }
        Handled::Reject(reason) => dead_letter_then_term(js, spec, &msg, &delivery, &reason).await,
    };
    if let Err(e) = result {
        tracing::warn!(id = %delivery.id, error = %e, "could not ack; it will be redelivered");
    }
}

async fn dead_letter_then_term(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    msg: &jetstream::Message,
    delivery: &Delivery,
    reason: &str,
) -> Result<(), async_nats::Error> {
    tracing::warn!(id = %delivery.id, subject = %delivery.subject, %reason, "dead-lettered");
    publish_dead_letter(js, &spec.stream, delivery, reason).await?;
    msg.ack_with(AckKind::Term).await
}

/// Publishes the original bytes to `incident.v1.deadletter` with the reason and where they came
/// from in headers, and waits for the stream to store them.
pub async fn publish_dead_letter(
    js: &jetstream::Context,
    stream: &str,
    delivery: &Delivery,
    reason: &str,
) -> Result<(), async_nats::Error> {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", format!("dl-{}", delivery.id).as_str());
    headers.insert("Incident-Deadletter-Reason", one_line(reason).as_str());
    headers.insert("Incident-Deadletter-Stream", stream);
    headers.insert("Incident-Deadletter-Subject", delivery.subject.as_str());
    headers.insert(
        "Incident-Deadletter-Sequence",
        delivery.stream_sequence.to_string().as_str(),
    );
    js.publish_with_headers(DEADLETTER_SUBJECT, headers, delivery.payload.clone())
        .await?
        .await?;
    Ok(())
}

/// Header values must be one line.
fn one_line(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    out.truncate(1024);
    out
}
