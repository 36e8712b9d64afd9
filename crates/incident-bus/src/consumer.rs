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
//! handled (see [`crate::floor`]). A retried message holds the floor until it is handled. When
//! the lowest unhandled sequence stays open for [`HOLE_WAIT`] (a delivery lost with a
//! connection, one taken by a process that was killed, one the server stopped redelivering),
//! the consumer asks the stream what it holds: sequences it no longer has (below its first
//! sequence, or deleted) are passed over, and every other open one below the highest delivered
//! is read by its sequence and handled like a delivery. A redelivery of a message already
//! handled is not handled again. A dead-lettered message counts as handled once its dead letter
//! is stored, and is acked, not terminated (a terminate would cover the messages before it
//! too). An existing consumer keeps the ack policy it was created with, and is consumed by
//! that policy. A consumer or stream created again while the process runs is a new
//! generation, noticed when the consumer is opened again (creation times) or from a delivery
//! (its consumer sequence starts again): deliveries of an earlier consumer are not acked on the
//! new one, and what was handled of an earlier stream is forgotten. An ack already sent by
//! then reaches the new consumer (JetStream's ack subjects do not name the incarnation), so a
//! durable or its stream must be created again only with every process consuming it stopped.

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
/// cumulative consumer looks for it: a redelivery comes after the first backoff step (1 s by
/// default); after this wait the missing messages are read from the stream by sequence.
pub const HOLE_WAIT: Duration = Duration::from_secs(5);

/// Most missing messages read by sequence at once.
const MAX_READS: usize = 256;

/// Which stream and consumer a delivery came from. A stream or consumer created again while
/// this process runs starts a new generation: an ack subject from an older consumer must not
/// be used (under `AckPolicy::All` it would cover the new one's messages), and what was handled
/// of an older stream says nothing about the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Generation {
    stream: u64,
    consumer: u64,
}

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
    let mut generation = Generation::default();
    let mut created: Option<(jetstream::stream::Info, jetstream::consumer::Info)> = None;
    // the consumer sequence of the last delivery: it only grows within one consumer
    let mut last_delivery = 0u64;
    // a delivery showed the consumer was created again under this process
    let mut replaced = false;
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
            consumer_info,
        } = opened;
        let stream_info = stream.cached_info().clone();
        if let Some((s, c)) = &created {
            if s.created != stream_info.created {
                tracing::warn!(stream = %spec.stream, "the stream was created again; starting from its consumer's ack floor");
                generation.stream += 1;
                generation.consumer += 1;
                last_delivery = 0;
                cumulative = None;
            } else if replaced || !same_consumer(c, &consumer_info) {
                tracing::warn!(durable = %spec.durable, "the consumer was created again; earlier deliveries are not acked");
                generation.consumer += 1;
                last_delivery = 0;
                if let Some(c) = cumulative.as_mut() {
                    c.floor.forget_ack_subjects();
                }
            }
        }
        replaced = false;
        let ack_floor = consumer_info.ack_floor.stream_sequence;
        if consumer_info.config.ack_policy == AckPolicy::All {
            let stream = Arc::new(stream);
            let c = cumulative.get_or_insert_with(|| {
                Cumulative::new(ack_floor, spec.backoff.clone(), stream.clone())
            });
            c.floor.server_acked(ack_floor);
            c.stream = stream;
        } else {
            cumulative = None;
        }
        created = Some((stream_info, consumer_info));
        tokio::pin!(messages);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let next = tokio::select! {
                biased;
                // stopping (or the sender is gone, which means the same)
                r = shutdown.changed() => if r.is_err() { break 'consume } else { break },
                Some(settled) = in_flight.next(), if !in_flight.is_empty() => {
                    settle(&mut cumulative, generation, settled).await;
                    // every outcome ready now, then one ack for all of them
                    while let Some(Some(s)) = in_flight.next().now_or_never() {
                        settle(&mut cumulative, generation, s).await;
                    }
                    if let Some(c) = cumulative.as_mut() {
                        c.ack().await;
                    }
                    continue;
                }
                _ = tick.tick(), if cumulative.is_some() => {
                    let Some(c) = cumulative.as_mut() else { continue };
                    if !c.hole_due(Instant::now()) {
                        continue;
                    }
                    match c.find_holes(&spec, &created).await {
                        Ok(reads) => {
                            c.ack().await;
                            for (seq, attempt) in reads {
                                let read = Source::Read { stream: c.stream.clone(), seq, attempt };
                                in_flight.push(Box::pin(handle(&js, &spec, read, generation, &handler)));
                            }
                        }
                        // the stream changed under the consumer: open it again
                        Err(Reopen) => break,
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
            let info = msg
                .info()
                .ok()
                .map(|i| (i.stream_sequence, i.consumer_sequence, i.delivered));
            if let Some((seq, delivery, delivered)) = info {
                let first_of_handled =
                    delivered == 1 && cumulative.as_ref().is_some_and(|c| c.floor.is_handled(seq));
                if delivery <= last_delivery || first_of_handled {
                    // another consumer under the same name (deleted and created again while
                    // this process ran): nothing of it is handled or acked before it is
                    // opened again and its stream checked
                    tracing::warn!(durable = %spec.durable, seq, delivery, last_delivery, "a delivery of a consumer created again; opening it again");
                    replaced = true;
                    break;
                }
                last_delivery = delivery;
            }
            if let Some(c) = cumulative.as_mut() {
                let Some((seq, _, _)) = info else {
                    // no stream sequence to place it by: its ack would cover what it cannot name
                    tracing::warn!(durable = %spec.durable, reply = ?msg.reply, "a delivery without a JetStream ack subject; ignored");
                    continue;
                };
                if c.running.contains(&seq) {
                    // delivered again while its handling runs: that handling settles it
                    continue;
                }
                if c.floor.is_handled(seq) {
                    // delivered again while the floor was held below it: handled already
                    c.settle(seq, Some(msg), Outcome::Done).await;
                    c.ack().await;
                    continue;
                }
                c.started(seq);
            }
            // an ack subject that does not parse (explicit acks only reach here with one):
            // sequence 0, first delivery
            let (seq, delivered) = info.map_or((0, 1), |(seq, _, delivered)| (seq, delivered));
            let mut handling = Box::pin(handle(
                &js,
                &spec,
                Source::Delivered {
                    msg,
                    seq,
                    delivered,
                },
                generation,
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
                    settle(&mut cumulative, generation, settled).await;
                    if let Some(c) = cumulative.as_mut() {
                        c.ack().await;
                    }
                }
            }
        }
    }
    // what is in flight finishes (or is redelivered later if it cannot within the grace)
    let drain = async {
        while let Some(settled) = in_flight.next().await {
            settle(&mut cumulative, generation, settled).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    if let Some(c) = cumulative.as_mut() {
        c.ack().await;
    }
}

/// Whether two infos name the same consumer by its creation time: nats-server 2.9 restores a durable's
/// creation time from its own file after a restart, microseconds off what it said before.
fn same_consumer(a: &jetstream::consumer::Info, b: &jetstream::consumer::Info) -> bool {
    (a.created.unix_timestamp_nanos() - b.created.unix_timestamp_nanos()).abs() < 1_000_000_000
}

/// An opened consumer: its messages, its stream and what the server says of the consumer.
struct Opened {
    messages: pull::Stream,
    stream: jetstream::stream::Stream,
    consumer_info: jetstream::consumer::Info,
}

async fn open(js: &jetstream::Context, spec: &ConsumerSpec) -> Result<Opened, async_nats::Error> {
    let stream = js.get_stream(&spec.stream).await?;
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(&spec.durable, spec.config())
        .await?;
    // an existing consumer keeps the policy it was created with
    let consumer_info = consumer.info().await?.clone();
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
        consumer_info,
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
    /// Delivered by the consumer, with its stream sequence and delivery count (read from its
    /// ack subject once, by the loop).
    Delivered {
        msg: jetstream::Message,
        seq: u64,
        delivered: i64,
    },
    /// Missing below the handled sequences, read from the stream by its sequence; `attempt`
    /// counts the reads of it.
    Read {
        stream: Arc<jetstream::stream::Stream>,
        seq: u64,
        attempt: i64,
    },
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Recorded, or seen before: ack it.
    Done,
    /// Dead-lettered, its dead letter stored: terminate it (explicit acks) or count it handled.
    DeadLettered,
    /// A passing failure: ask for a redelivery after this delay.
    Retry(Duration),
    /// Not handled, nothing to send (a dead letter not stored, a read that failed): it comes
    /// back after the ack wait.
    Open,
}

/// One message's outcome, with what to ack it with.
struct Settled {
    seq: u64,
    /// The delivery; `None` for a message read by sequence.
    msg: Option<jetstream::Message>,
    generation: Generation,
    outcome: Outcome,
}

/// Runs the handler on one message and dead-letters what must be; the ack is the caller's.
async fn handle<H, Fut>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    source: Source,
    generation: Generation,
    handler: &H,
) -> Settled
where
    H: Fn(Delivery) -> Fut,
    Fut: std::future::Future<Output = Handled>,
{
    let settled = |seq, msg, outcome| Settled {
        seq,
        msg,
        generation,
        outcome,
    };
    let (delivery, msg) = match source {
        Source::Delivered {
            msg,
            seq,
            delivered,
        } => {
            let delivery = Delivery {
                id: delivery_id(&spec.stream, msg.headers.as_ref(), seq),
                subject: msg.subject.to_string(),
                payload: msg.payload.clone(),
                headers: msg.headers.clone(),
                stream_sequence: seq,
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
            // "no message found" is also the answer to a store that failed to load it: only
            // the stream's own state (first sequence, deleted list) says it is gone
            Err(e) => {
                tracing::warn!(seq, error = %e, "could not read a message missing below the ack floor; trying again");
                return settled(seq, None, Outcome::Open);
            }
        },
    };
    let seq = delivery.stream_sequence;
    let delivered = delivery.delivered;
    let outcome = match handler(delivery.clone()).await {
        Handled::Done => Outcome::Done,
        Handled::Retry(reason) if delivered < spec.max_deliver => {
            tracing::warn!(id = %delivery.id, delivered, %reason, "will be tried again");
            Outcome::Retry(retry_delay(&spec.backoff, delivered))
        }
        Handled::Retry(reason) => {
            let reason = format!("gave up after {delivered} deliveries: {reason}");
            dead_letter(js, spec, &delivery, &reason).await
        }
        Handled::Reject(reason) => dead_letter(js, spec, &delivery, &reason).await,
    };
    settled(seq, msg, outcome)
}

/// Sends what `s` calls for: with explicit acks an ack, a retry or a terminate of its own
/// message (only on the consumer that delivered it); with cumulative acks it joins the floor.
async fn settle(cumulative: &mut Option<Cumulative>, generation: Generation, s: Settled) {
    if let Some(c) = cumulative.as_mut() {
        let Settled {
            seq,
            msg,
            generation: from,
            outcome,
        } = s;
        if from.stream != generation.stream {
            // of a stream that was created again: it says nothing about this one
            return;
        }
        // an ack subject of an earlier consumer would ack this one's messages
        let msg = msg.filter(|_| from.consumer == generation.consumer);
        c.settle(seq, msg, outcome).await;
        return;
    }
    let Some(msg) = s.msg.filter(|_| s.generation == generation) else {
        // delivered by a consumer that was created again: the new one redelivers it
        return;
    };
    let result = match s.outcome {
        Outcome::Done => msg.ack().await,
        Outcome::Retry(delay) => msg.ack_with(AckKind::Nak(Some(delay))).await,
        Outcome::DeadLettered => msg.ack_with(AckKind::Term).await,
        Outcome::Open => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(seq = s.seq, error = %e, "could not ack; it will be redelivered");
    }
}

/// How long a retried message waits for its next delivery.
fn retry_delay(backoff: &[Duration], delivered: i64) -> Duration {
    backoff
        .get((delivered - 1).max(0) as usize)
        .copied()
        .unwrap_or(Duration::from_secs(30))
}

/// Publishes a message's dead letter: [`Outcome::DeadLettered`] once it is stored, else
/// [`Outcome::Open`] (the message comes back and is dead-lettered again).
async fn dead_letter(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    delivery: &Delivery,
    reason: &str,
) -> Outcome {
    tracing::warn!(id = %delivery.id, subject = %delivery.subject, %reason, "dead-lettered");
    match publish_dead_letter(js, &spec.stream, delivery, reason).await {
        Ok(()) => Outcome::DeadLettered,
        Err(e) => {
            tracing::warn!(id = %delivery.id, error = %e, "could not store the dead letter; it will be tried again");
            Outcome::Open
        }
    }
}

/// The stream changed under the consumer (it was created again): open it again.
struct Reopen;

/// A cumulative consumer's floor and what it needs to find and fill holes.
struct Cumulative {
    floor: AckFloor<jetstream::Message>,
    /// Sequences being handled now.
    running: BTreeSet<u64>,
    /// The highest sequence delivered or read.
    highest: u64,
    /// The lowest open sequence, and since when it has been open with later ones delivered.
    hole: Option<(u64, Instant)>,
    /// How often each missing sequence was read by sequence.
    reads: HashMap<u64, i64>,
    /// The consumer's redelivery delays, which pace the reads too.
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

    /// `seq` settled with `outcome`; `msg` is a delivery of the current consumer, if any.
    async fn settle(&mut self, seq: u64, msg: Option<jetstream::Message>, outcome: Outcome) {
        self.running.remove(&seq);
        match outcome {
            Outcome::Open => {}
            Outcome::Retry(delay) => {
                // a NAK concerns its own message only
                if let Some(m) = msg
                    && let Err(e) = m.ack_with(AckKind::Nak(Some(delay))).await
                {
                    tracing::warn!(seq, error = %e, "could not ask for a redelivery; it comes back after the ack wait");
                }
            }
            Outcome::Done | Outcome::DeadLettered => {
                self.reads.remove(&seq);
                if seq > self.floor.handled() {
                    self.floor.finished(seq, msg);
                    return;
                }
                // delivered again though handled: an ack was lost, or ignored by the server
                let Some(m) = msg else { return };
                if seq > self.floor.acked() {
                    // it carries the next ack if it is the highest handled one
                    self.floor.offer(seq, m);
                    return;
                }
                // its own ack covers only handled sequences
                match m.ack().await {
                    Ok(()) => self.floor.acked_through(seq),
                    Err(e) => tracing::warn!(seq, error = %e, "could not ack"),
                }
            }
        }
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

    /// Whether the lowest open sequence, with later ones delivered and not being handled, has
    /// waited long enough: [`HOLE_WAIT`], or the backoff step of its next read if longer.
    fn hole_due(&mut self, now: Instant) -> bool {
        let open = self.floor.first_open();
        if open > self.highest || self.running.contains(&open) {
            self.hole = None;
            return false;
        }
        match self.hole {
            Some((seq, since)) if seq == open => {
                let wait = match self.reads.get(&open).copied().unwrap_or(0) {
                    0 => HOLE_WAIT,
                    n => HOLE_WAIT.max(retry_delay(&self.backoff, n)),
                };
                if now.duration_since(since) < wait {
                    return false;
                }
                self.hole = Some((open, now));
                true
            }
            _ => {
                self.hole = Some((open, now));
                false
            }
        }
    }

    /// Looks at the stream for the open sequences below the highest delivered one: what it no
    /// longer holds (below its first sequence, or deleted) is passed over; up to
    /// [`MAX_READS`] of the rest are returned to be read by sequence, with their attempt.
    async fn find_holes(
        &mut self,
        spec: &ConsumerSpec,
        created: &Option<(jetstream::stream::Info, jetstream::consumer::Info)>,
    ) -> Result<Vec<(u64, i64)>, Reopen> {
        let info = match self.stream.info_builder().with_deleted(true).fetch().await {
            Ok(i) => i.info,
            Err(e) => {
                tracing::warn!(stream = %spec.stream, error = %e, "could not look for messages missing below the ack floor");
                return Ok(Vec::new());
            }
        };
        if created
            .as_ref()
            .is_some_and(|(s, _)| s.created != info.created)
        {
            return Err(Reopen);
        }
        let first = info.state.first_sequence;
        if first > self.floor.first_open() {
            tracing::warn!(stream = %spec.stream, from = self.floor.first_open(), to = first - 1, "messages removed from the stream before they were handled; passing over them");
            self.floor.pass_through(first - 1);
        }
        let deleted: std::collections::HashSet<u64> =
            info.state.deleted.unwrap_or_default().into_iter().collect();
        let mut reads = Vec::new();
        let mut seq = self.floor.first_open();
        while seq <= self.highest && reads.len() < MAX_READS {
            if !self.running.contains(&seq) && !self.floor.is_handled(seq) {
                if deleted.contains(&seq) {
                    tracing::warn!(seq, stream = %spec.stream, "a message deleted from the stream before it was handled; passing over it");
                    self.floor.finished(seq, None);
                } else {
                    self.running.insert(seq);
                    let attempt = self.reads.entry(seq).or_insert(0);
                    *attempt += 1;
                    reads.push((seq, *attempt));
                }
            }
            seq += 1;
        }
        if !reads.is_empty() {
            tracing::info!(stream = %spec.stream, count = reads.len(), first = reads[0].0, "reading messages missing below the ack floor from the stream");
        }
        Ok(reads)
    }
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
