//! The durable consumer every service reads events with: a durable pull consumer with bounded
//! redelivery with backoff, and dead-lettering of what can never be processed.
//!
//! The handler makes its effect idempotent (it records the input's id in its own log together
//! with what it derived, and skips ids it has seen) and answers [`Handled`]; only then is the
//! message acked. A consumer that vanished (e.g. the server lost it) is created again.
//!
//! Acks are explicit (one per message) unless the spec asks for cumulative acks
//! ([`ConsumerSpec::cumulative_ack`], JetStream `AckPolicy::All`): then one ack covers every
//! earlier message, and it is sent only on a message below which every stream sequence was
//! handled (see [`crate::floor`]). A retried message holds the floor until it is handled; a
//! hole that stays open (a delivery lost with a connection, a message the server stopped
//! redelivering) is read from the stream by its sequence and handled like a delivery; a
//! dead-lettered message counts as handled once its dead letter is stored, and is acked, not
//! terminated (a terminate would cover the messages before it too). An existing consumer keeps
//! the ack policy it was created with, and is consumed by that policy.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use bytes::Bytes;
use std::future::Future as _;

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::floor::AckFloor;
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
    /// Create the consumer with `AckPolicy::All` and ack once per run of handled messages. Only
    /// for a stream whose sequences reach this consumer without holes: no filter, no deletes.
    pub cumulative_ack: bool,
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
            cumulative_ack: false,
        }
    }

    pub fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: if self.cumulative_ack {
                AckPolicy::All
            } else {
                AckPolicy::Explicit
            },
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
    /// Can never be processed: dead-letter it with the reason, then stop its redelivery
    /// (terminated, or with cumulative acks acked).
    Reject(String),
}

/// How long the lowest unhandled sequence may stay open, with later ones delivered, before a
/// cumulative consumer reads it from the stream by its sequence (a redelivery comes after the
/// first backoff step, 1 s by default).
pub const HOLE_WAIT: Duration = Duration::from_secs(5);

/// Consumes until `shutdown` turns true. Up to `spec.concurrency` messages are in flight at
/// once: each handler is started (polled for the first time) as its message arrives, in stream
/// order, and its message is acked on its outcome (one by one, or cumulatively, see the module
/// docs), so a handler that submits to an ordered queue on its first poll keeps the stream
/// order while earlier messages still wait for their effect.
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
    let mut cumulative: Option<Cumulative> = None;
    'consume: while !*shutdown.borrow() {
        let opened = match open(&js, &spec).await {
            Ok(o) => o,
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
        let Opened {
            messages,
            stream,
            ack_all,
            ack_floor,
        } = opened;
        if ack_all {
            let stream = Arc::new(stream);
            let c = cumulative.get_or_insert_with(|| {
                Cumulative::new(ack_floor, spec.backoff.clone(), stream.clone())
            });
            c.floor.server_acked(ack_floor);
            c.stream = stream;
        } else {
            cumulative = None;
        }
        tokio::pin!(messages);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let next = tokio::select! {
                biased;
                // stopping (or the sender is gone, which means the same)
                r = shutdown.changed() => if r.is_err() { break 'consume } else { break },
                Some(settled) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Some(c) = cumulative.as_mut() {
                        c.settle(settled).await;
                        // every outcome ready now, then one ack for all of them
                        while let Some(Some(s)) = in_flight.next().now_or_never() {
                            c.settle(s).await;
                        }
                        c.ack().await;
                    }
                    continue;
                }
                _ = tick.tick(), if cumulative.is_some() => {
                    if let Some(c) = cumulative.as_mut()
                        && let Some((seq, attempt)) = c.hole_to_read(Instant::now())
                    {
                        let read = Source::Read { stream: c.stream.clone(), seq, attempt };
                        in_flight.push(Box::pin(handle(&js, &spec, read, true, &handler)));
                    }
                    continue;
                }
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
            if let Some(c) = cumulative.as_mut()
                && let Ok(info) = msg.info()
            {
                let seq = info.stream_sequence;
                if c.floor.is_handled(seq) {
                    // delivered again while the floor was held below it: handled already
                    c.settle(Settled {
                        seq,
                        msg: Some(msg),
                        handled: true,
                    })
                    .await;
                    continue;
                }
                c.started(seq);
            }
            let mut handling = Box::pin(handle(
                &js,
                &spec,
                Source::Delivered(msg),
                cumulative.is_some(),
                &handler,
            ));
            // the first poll happens here, in stream order; the rest in the window
            let first = {
                let waker = futures::task::noop_waker_ref();
                let mut cx = std::task::Context::from_waker(waker);
                handling.as_mut().poll(&mut cx)
            };
            match first {
                std::task::Poll::Pending => in_flight.push(handling),
                std::task::Poll::Ready(settled) => {
                    if let Some(c) = cumulative.as_mut() {
                        c.settle(settled).await;
                        c.ack().await;
                    }
                }
            }
        }
    }
    // what is in flight finishes (or is redelivered later if it cannot within the grace)
    let drain = async {
        while let Some(settled) = in_flight.next().await {
            if let Some(c) = cumulative.as_mut() {
                c.settle(settled).await;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    if let Some(c) = cumulative.as_mut() {
        c.ack().await;
    }
}

/// An opened consumer: its messages, its stream, and how it acks.
struct Opened {
    messages: pull::Stream,
    stream: jetstream::stream::Stream,
    /// The consumer acks cumulatively (`AckPolicy::All`).
    ack_all: bool,
    /// The server's ack floor (a stream sequence) when it was opened.
    ack_floor: u64,
}

async fn open(js: &jetstream::Context, spec: &ConsumerSpec) -> Result<Opened, async_nats::Error> {
    let stream = js.get_stream(&spec.stream).await?;
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(&spec.durable, spec.config())
        .await?;
    // an existing consumer keeps the policy it was created with
    let info = consumer.info().await?;
    let ack_all = info.config.ack_policy == AckPolicy::All;
    let ack_floor = info.ack_floor.stream_sequence;
    let messages = consumer
        .stream()
        .max_messages_per_batch(spec.concurrency.clamp(1, 1024))
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?;
    Ok(Opened {
        messages,
        stream,
        ack_all,
        ack_floor,
    })
}

/// The id a handler records for a message: its `Nats-Msg-Id`, else `<stream>:<sequence>`.
pub fn delivery_id(stream: &str, headers: Option<&HeaderMap>, stream_sequence: u64) -> String {
    headers
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| format!("{stream}:{stream_sequence}"))
}

/// Where a message to handle comes from.
// the common variant is the large one: boxing it would allocate for every message
#[allow(clippy::large_enum_variant)]
enum Source {
    /// Delivered by the consumer.
    Delivered(jetstream::Message),
    /// A hole below the handled sequences, read from the stream by its sequence; `attempt`
    /// counts the reads of it.
    Read {
        stream: Arc<jetstream::stream::Stream>,
        seq: u64,
        attempt: i64,
    },
}

/// What became of one message.
struct Settled {
    seq: u64,
    /// The delivery to ack with; `None` for a message read by sequence.
    msg: Option<jetstream::Message>,
    /// Its handling finished: recorded, seen before, dead-lettered, or not in the stream.
    handled: bool,
}

/// Runs the handler on one message. With explicit acks the message is acked, retried or
/// terminated here; with cumulative acks (`cumulative`) only a retry is sent here (`NAK`, which
/// concerns that message alone), and the ack is left to the floor.
async fn handle<H, Fut>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    source: Source,
    cumulative: bool,
    handler: &H,
) -> Settled
where
    H: Fn(Delivery) -> Fut,
    Fut: std::future::Future<Output = Handled>,
{
    let (delivery, msg) = match source {
        Source::Delivered(msg) => {
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
            (delivery, Some(msg))
        }
        Source::Read {
            stream,
            seq,
            attempt,
        } => match stream.get_raw_message(seq).await {
            Ok(m) => {
                let delivery = Delivery {
                    id: delivery_id(&spec.stream, Some(&m.headers), seq),
                    subject: m.subject.to_string(),
                    payload: m.payload,
                    headers: Some(m.headers),
                    stream_sequence: seq,
                    delivered: attempt,
                };
                (delivery, None)
            }
            Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {
                tracing::warn!(seq, stream = %spec.stream, "a message below the ack floor is no longer in the stream; passing over it");
                return Settled {
                    seq,
                    msg: None,
                    handled: true,
                };
            }
            Err(e) => {
                tracing::warn!(seq, error = %e, "could not read a message missing below the ack floor; trying again");
                return Settled {
                    seq,
                    msg: None,
                    handled: false,
                };
            }
        },
    };
    let seq = delivery.stream_sequence;
    let delivered = delivery.delivered;
    let outcome = handler(delivery.clone()).await;
    if !cumulative {
        if let Some(msg) = &msg {
            explicit_ack(js, spec, msg, &delivery, outcome).await;
        }
        return Settled {
            seq,
            msg: None,
            handled: false,
        };
    }
    let handled = match outcome {
        Handled::Done => true,
        Handled::Retry(reason) if delivered < spec.max_deliver => {
            tracing::warn!(id = %delivery.id, delivered, %reason, "will be tried again");
            if let Some(msg) = &msg {
                let delay = retry_delay(&spec.backoff, delivered);
                if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                    tracing::warn!(id = %delivery.id, error = %e, "could not ask for a redelivery; it comes back after the ack wait");
                }
            }
            false
        }
        Handled::Retry(reason) => {
            let reason = format!("gave up after {delivered} deliveries: {reason}");
            dead_letter(js, spec, &delivery, &reason).await
        }
        Handled::Reject(reason) => dead_letter(js, spec, &delivery, &reason).await,
    };
    Settled { seq, msg, handled }
}

/// How long a retried message waits for its next delivery.
fn retry_delay(backoff: &[Duration], delivered: i64) -> Duration {
    backoff
        .get((delivered - 1).max(0) as usize)
        .copied()
        .unwrap_or(Duration::from_secs(30))
}

/// Acks, retries or terminates one message on its own outcome.
async fn explicit_ack(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    msg: &jetstream::Message,
    delivery: &Delivery,
    outcome: Handled,
) {
    let delivered = delivery.delivered;
    let result = match outcome {
        Handled::Done => msg.ack().await,
        Handled::Retry(reason) if delivered < spec.max_deliver => {
            tracing::warn!(id = %delivery.id, delivered, %reason, "will be redelivered");
            msg.ack_with(AckKind::Nak(Some(retry_delay(&spec.backoff, delivered))))
                .await
        }
        Handled::Retry(reason) => {
            let reason = format!("gave up after {delivered} deliveries: {reason}");
            dead_letter_then_term(js, spec, msg, delivery, &reason).await
        }
        Handled::Reject(reason) => dead_letter_then_term(js, spec, msg, delivery, &reason).await,
    };
    if let Err(e) = result {
        tracing::warn!(id = %delivery.id, error = %e, "could not ack; it will be redelivered");
    }
}

/// Dead-letters a message of a cumulative consumer: whether its dead letter is stored. One that
/// is not stays a hole, read again later.
async fn dead_letter(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    delivery: &Delivery,
    reason: &str,
) -> bool {
    tracing::warn!(id = %delivery.id, subject = %delivery.subject, %reason, "dead-lettered");
    match publish_dead_letter(js, &spec.stream, delivery, reason).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(id = %delivery.id, error = %e, "could not store the dead letter; trying again later");
            false
        }
    }
}

/// A cumulative consumer's floor and what it needs to find and fill holes.
struct Cumulative {
    floor: AckFloor<jetstream::Message>,
    /// Sequences being handled now.
    running: BTreeSet<u64>,
    /// The highest sequence delivered or read.
    highest: u64,
    /// The lowest open sequence, and since when it has been open with later ones delivered.
    hole: Option<(u64, Instant)>,
    /// How often each hole was read by sequence.
    reads: HashMap<u64, i64>,
    /// The consumer's redelivery delays, which pace the reads of a hole too.
    backoff: Vec<Duration>,
    stream: Arc<jetstream::stream::Stream>,
}

impl Cumulative {
    fn new(ack_floor: u64, backoff: Vec<Duration>, stream: Arc<jetstream::stream::Stream>) -> Self {
        Cumulative {
            floor: AckFloor::new(ack_floor),
            running: BTreeSet::new(),
            highest: ack_floor,
            hole: None,
            reads: HashMap::new(),
            backoff,
            stream,
        }
    }

    /// The handling of delivered `seq` starts.
    fn started(&mut self, seq: u64) {
        self.running.insert(seq);
        self.highest = self.highest.max(seq);
    }

    async fn settle(&mut self, s: Settled) {
        self.running.remove(&s.seq);
        if !s.handled {
            return;
        }
        self.reads.remove(&s.seq);
        if s.seq <= self.floor.handled() {
            // delivered again though covered (an ack that was lost): its own ack covers only
            // handled sequences
            if let Some(m) = s.msg {
                match m.ack().await {
                    Ok(()) => self.floor.acked_through(s.seq),
                    Err(e) => tracing::warn!(seq = s.seq, error = %e, "could not ack"),
                }
            }
            return;
        }
        self.floor.finished(s.seq, s.msg);
    }

    /// Acks the highest handled message the floor reached, covering every one before it.
    async fn ack(&mut self) {
        if let Some((seq, m)) = self.floor.to_ack() {
            match m.ack().await {
                Ok(()) => self.floor.acked_through(seq),
                // redelivered later, then acked on its own
                Err(e) => tracing::warn!(seq, error = %e, "could not ack"),
            }
        }
    }

    /// The hole to read by sequence now, with its attempt number: the lowest open sequence,
    /// when later ones were delivered, it is not being handled, and it stayed so for
    /// [`HOLE_WAIT`].
    fn hole_to_read(&mut self, now: Instant) -> Option<(u64, i64)> {
        let open = self.floor.first_open();
        if open > self.highest || self.running.contains(&open) {
            self.hole = None;
            return None;
        }
        match self.hole {
            Some((seq, since)) if seq == open => {
                let reads = self.reads.get(&open).copied().unwrap_or(0);
                let wait = match reads {
                    0 => HOLE_WAIT,
                    n => HOLE_WAIT.max(retry_delay(&self.backoff, n)),
                };
                if now.duration_since(since) < wait {
                    return None;
                }
            }
            _ => {
                self.hole = Some((open, now));
                return None;
            }
        }
        self.hole = Some((open, now));
        self.running.insert(open);
        let attempt = self.reads.entry(open).or_insert(0);
        *attempt += 1;
        tracing::info!(
            seq = open,
            attempt = *attempt,
            "reading a message missing below the ack floor from the stream"
        );
        Some((open, *attempt))
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
