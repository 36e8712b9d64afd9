//! The durable consumer every service reads events with: a durable pull consumer with explicit
//! ack, bounded redelivery with backoff, and dead-lettering of what can never be processed.
//!
//! The handler makes its effect idempotent (it records the input's id in its own log together
//! with what it derived, and skips ids it has seen) and answers [`Handled`]; only then is the
//! message acked. A consumer that vanished (e.g. the server lost it) is created again.
//!
//! With [`ConsumerSpec::cumulative_ack`] the consumer is created with JetStream's `AckPolicy::All`:
//! one ack covers every earlier message, so a group of messages finished together costs the
//! server one ack instead of one each. Such an ack is sent only for the highest message below
//! which every message this process took is finished; a message waiting for redelivery holds
//! it back. What a killed process had taken and not finished (between the consumer's ack floor
//! and its last delivery) is read back from the stream and handled first by the next start, in
//! stream order, before any new message: an ack covering it can then never skip it.

use std::collections::BTreeMap;
use std::task::Poll;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::jetstream::{self, AckKind, consumer::pull};
use bytes::Bytes;

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
    /// One ack covers a run of finished messages (`AckPolicy::All`, see the module docs). Only
    /// for a consumer without `filter_subjects`, read by one process at a time. A durable that
    /// already exists with explicit acks keeps them.
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

    fn cumulative(&self) -> bool {
        self.cumulative_ack && self.filter_subjects.is_empty()
    }

    pub fn config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: if self.cumulative() {
                jetstream::consumer::AckPolicy::All
            } else {
                jetstream::consumer::AckPolicy::Explicit
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
    // set once the consumer is known to take cumulative acks and what an earlier process left
    // unfinished has been handled
    let mut floor: Option<Floor> = None;
    let mut explicit = false;
    'consume: while !*shutdown.borrow() {
        let (messages, info) = match open(&js, &spec).await {
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
        let cumulative = info.config.ack_policy == AckPolicy::All;
        if cumulative {
            // what was delivered and not acked, that this process does not hold: all of it at
            // the first open; after a reopen, what was lost on its way here
            let after = info.ack_floor.stream_sequence;
            let to = info.delivered.stream_sequence;
            let known = |seq: u64| floor.as_ref().is_some_and(|f| f.knows(seq));
            match catch_up(&js, &spec, after, to, known, &handler, &mut shutdown).await {
                Ok(handled) => {
                    let floor = floor.get_or_insert_with(|| Floor::new(after));
                    floor.read_back(handled).await;
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(durable = %spec.durable, error = %e, "cannot read back unacked messages; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(failures)) => {}
                        r = shutdown.changed() => if r.is_err() { break 'consume },
                    }
                    continue;
                }
            }
        } else if spec.cumulative() && !explicit {
            explicit = true;
            tracing::info!(durable = %spec.durable, "the durable consumer takes explicit acks; acking each message");
        }
        tokio::pin!(messages);
        loop {
            let next = tokio::select! {
                biased;
                // stopping (or the sender is gone, which means the same)
                r = shutdown.changed() => if r.is_err() { break 'consume } else { break },
                Some(finished) = in_flight.next(), if !in_flight.is_empty() => {
                    if let (Some(floor), Some((seq, msg))) = (floor.as_mut(), finished) {
                        floor.finished(seq, msg).await;
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
            if let (true, Some(floor), Ok(info)) = (cumulative, floor.as_mut(), msg.info()) {
                floor.taken(info.stream_sequence);
            }
            let mut handling = Box::pin(handle_one(&js, &spec, msg, &handler, cumulative));
            // the first poll happens here, in stream order; the rest in the window
            match first_poll(&mut handling) {
                Poll::Pending => in_flight.push(handling),
                Poll::Ready(finished) => {
                    if let (Some(floor), Some((seq, msg))) = (floor.as_mut(), finished) {
                        floor.finished(seq, msg).await;
                    }
                }
            }
        }
    }
    // what is in flight finishes (or is redelivered later if it cannot within the grace)
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(finished) = in_flight.next().await {
            if let (Some(floor), Some((seq, msg))) = (floor.as_mut(), finished) {
                floor.finished(seq, msg).await;
            }
        }
    })
    .await;
}

/// Polls a handler once, where it is started: in stream order.
fn first_poll<F: std::future::Future>(f: &mut std::pin::Pin<Box<F>>) -> Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    f.as_mut().poll(&mut cx)
}

/// The messages this process took from a cumulative-ack consumer and has not acked yet, by
/// stream sequence. Every message at or below `acked` is finished (here, or by an earlier
/// process before the server's ack floor).
struct Floor {
    acked: u64,
    taken: BTreeMap<u64, Slot>,
}

enum Slot {
    /// Its handler runs, or it waits for redelivery.
    Open,
    /// Done or dead-lettered; with the delivery to ack it with, unless it was read back.
    Finished(Option<Box<jetstream::Message>>),
}

impl Floor {
    fn new(acked: u64) -> Self {
        Floor {
            acked,
            taken: BTreeMap::new(),
        }
    }

    fn knows(&self, seq: u64) -> bool {
        seq <= self.acked || self.taken.contains_key(&seq)
    }

    /// A delivery arrived. A redelivery of a message finished earlier keeps its finished state.
    fn taken(&mut self, seq: u64) {
        if seq > self.acked {
            self.taken.entry(seq).or_insert(Slot::Open);
        }
    }

    /// Messages [`catch_up`] read back and finished.
    async fn read_back(&mut self, seqs: Vec<u64>) {
        for seq in seqs {
            if seq > self.acked {
                self.taken.insert(seq, Slot::Finished(None));
            }
        }
        self.advance().await;
    }

    /// A delivered message is finished (done, or dead-lettered).
    async fn finished(&mut self, seq: u64, msg: jetstream::Message) {
        if seq <= self.acked {
            // a redelivery of what is already covered: ack it on its own (the server ignores an
            // ack below its floor, and takes this one if an earlier ack was not taken)
            if let Err(e) = msg.ack().await {
                tracing::warn!(seq, error = %e, "could not ack; it will be redelivered");
            }
            return;
        }
        self.taken.insert(seq, Slot::Finished(Some(Box::new(msg))));
        self.advance().await;
    }

    /// Acks the longest finished run from the lowest taken message, with one ack of the last
    /// delivery in it.
    async fn advance(&mut self) {
        let mut last = None;
        while let Some(entry) = self.taken.first_entry() {
            if matches!(entry.get(), Slot::Open) {
                break;
            }
            let (seq, slot) = entry.remove_entry();
            self.acked = seq;
            if let Slot::Finished(Some(msg)) = slot {
                last = Some(msg);
            }
        }
        if let Some(msg) = last
            && let Err(e) = msg.ack().await
        {
            // not lost: the messages are redelivered, handled again (idempotently), acked then
            tracing::warn!(seq = self.acked, error = %e, "could not ack; they will be redelivered");
        }
    }
}

/// Handles, in stream order, the messages after the consumer's ack floor up to its last
/// delivery that `known` does not know: what an earlier process took and may not have
/// finished, or deliveries lost on their way here. They are read from the stream rather than
/// waited for, so none of them can be covered by an ack of a later message before it is
/// handled here, even one the server will not deliver again. Answers the sequences it finished.
async fn catch_up<H, Fut>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    after: u64,
    to: u64,
    known: impl Fn(u64) -> bool,
    handler: &H,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Vec<u64>, async_nats::Error>
where
    H: Fn(Delivery) -> Fut,
    Fut: std::future::Future<Output = Handled>,
{
    let unknown: Vec<u64> = (after.saturating_add(1)..=to)
        .filter(|s| !known(*s))
        .collect();
    if unknown.is_empty() {
        return Ok(unknown);
    }
    tracing::info!(durable = %spec.durable, after, to, count = unknown.len(), "handling messages taken and not acked before");
    let stream = js.get_stream(&spec.stream).await?;
    let window = spec.concurrency.max(1);
    let mut in_flight = FuturesUnordered::new();
    let mut handled = Vec::with_capacity(unknown.len());
    for seq in unknown {
        let raw = match stream.get_raw_message(seq).await {
            Ok(m) => m,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => continue,
            Err(e) => return Err(e.into()),
        };
        let headers = (!raw.headers.is_empty()).then_some(raw.headers);
        let delivery = Delivery {
            id: delivery_id(&spec.stream, headers.as_ref(), seq),
            subject: raw.subject.to_string(),
            payload: raw.payload,
            headers,
            stream_sequence: seq,
            delivered: 1,
        };
        while in_flight.len() >= window {
            in_flight.next().await;
        }
        handled.push(seq);
        let mut handling = Box::pin(handle_read_back(
            js,
            spec,
            delivery,
            handler,
            shutdown.clone(),
        ));
        if first_poll(&mut handling).is_pending() {
            in_flight.push(handling);
        }
    }
    while in_flight.next().await.is_some() {}
    if *shutdown.borrow() {
        return Err("stopping before the messages read back were handled".into());
    }
    Ok(handled)
}

/// One message read back by [`catch_up`]: retried here with the consumer's backoff (there is no
/// delivery to nak), dead-lettered when it cannot be processed or retries run out.
async fn handle_read_back<H, Fut>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    mut delivery: Delivery,
    handler: &H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Delivery) -> Fut,
    Fut: std::future::Future<Output = Handled>,
{
    loop {
        let reason = match handler(delivery.clone()).await {
            Handled::Done => return,
            Handled::Reject(reason) => reason,
            Handled::Retry(reason) if delivery.delivered < spec.max_deliver => {
                let delay = spec
                    .backoff
                    .get((delivery.delivered - 1).max(0) as usize)
                    .copied()
                    .unwrap_or(Duration::from_secs(30));
                tracing::warn!(id = %delivery.id, %reason, "will be retried");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.changed() => return,
                }
                delivery.delivered += 1;
                continue;
            }
            Handled::Retry(reason) => {
                format!("gave up after {} deliveries: {reason}", delivery.delivered)
            }
        };
        tracing::warn!(id = %delivery.id, subject = %delivery.subject, %reason, "dead-lettered");
        while let Err(e) = publish_dead_letter(js, &spec.stream, &delivery, &reason).await {
            tracing::warn!(id = %delivery.id, error = %e, "could not dead-letter; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
        }
        return;
    }
}

async fn open(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
) -> Result<(pull::Stream, jetstream::consumer::Info), async_nats::Error> {
    let stream = js.get_stream(&spec.stream).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(&spec.durable, spec.config())
        .await?;
    let info = consumer.cached_info().clone();
    let messages = consumer
        .stream()
        .max_messages_per_batch(spec.concurrency.clamp(1, 1024))
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?;
    Ok((messages, info))
}

/// The id a handler records for a message: its `Nats-Msg-Id`, else `<stream>:<sequence>`.
pub fn delivery_id(stream: &str, headers: Option<&HeaderMap>, stream_sequence: u64) -> String {
    headers
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned())
        .unwrap_or_else(|| format!("{stream}:{stream_sequence}"))
}

/// Handles one delivery. With explicit acks it acks, naks or terminates it itself and answers
/// `None`. With cumulative acks it naks what is to be retried, and answers the finished message
/// (done or dead-lettered) for the [`Floor`] to ack.
async fn handle_one<H, Fut>(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    msg: jetstream::Message,
    handler: &H,
    cumulative: bool,
) -> Option<(u64, jetstream::Message)>
where
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
    let reason = match handler(delivery.clone()).await {
        Handled::Done if cumulative => return Some((stream_sequence, msg)),
        Handled::Done => {
            warn_unacked(&delivery, msg.ack().await);
            return None;
        }
        Handled::Retry(reason) if delivered < spec.max_deliver => {
            tracing::warn!(id = %delivery.id, delivered, %reason, "will be redelivered");
            let delay = spec
                .backoff
                .get((delivered - 1).max(0) as usize)
                .copied()
                .unwrap_or(Duration::from_secs(30));
            warn_unacked(&delivery, msg.ack_with(AckKind::Nak(Some(delay))).await);
            return None;
        }
        Handled::Retry(reason) => format!("gave up after {delivered} deliveries: {reason}"),
        Handled::Reject(reason) => reason,
    };
    tracing::warn!(id = %delivery.id, subject = %delivery.subject, %reason, "dead-lettered");
    match publish_dead_letter(js, &spec.stream, &delivery, &reason).await {
        // terminating it would, under cumulative acks, ack every earlier message as well
        Ok(()) if cumulative => Some((stream_sequence, msg)),
        Ok(()) => {
            warn_unacked(&delivery, msg.ack_with(AckKind::Term).await);
            None
        }
        Err(e) => {
            warn_unacked(&delivery, Err(e));
            None
        }
    }
}

fn warn_unacked(delivery: &Delivery, result: Result<(), async_nats::Error>) {
    if let Err(e) = result {
        tracing::warn!(id = %delivery.id, error = %e, "could not ack; it will be redelivered");
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
