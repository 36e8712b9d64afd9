//! The relay: publishes a service's event log to its JetStream stream, in log order, exactly
//! once, whatever crashes in between.
//!
//! Each record goes to `<prefix><stream id>` with `Nats-Msg-Id` = the event id, so a re-publish
//! inside the stream's duplicate window is dropped by the server. A re-publish after the window
//! (a crash, or NATS down for a long time, between a publish and the cursor save) is caught
//! before it is sent: records that may already be on the stream ("uncertain": after a start or
//! a failed publish) are checked against the last message stored for their subject, whose
//! `Nats-Msg-Id` names the newest event of that incident already published.
//!
//! The cursor (the last log sequence known to be on the stream) lives in the log's cursor table.
//!
//! The stream holds the log in order without gaps (what the check above relies on): a record
//! is sent only once the one before it is stored, or names it (`Nats-Expected-Last-Msg-Id`)
//! so that once the server refuses a record, or another message comes between, it refuses
//! every later one of the chunk too.
//!
//! A chunk of records is sent with one acknowledgement, not one each: every record but the
//! last is published without asking for an ack, the last one with. The server stores a
//! connection's messages to a stream in the order they arrive, so the last one's ack tells
//! whether the chunk was stored whole: its first record asks for the stream's last sequence as
//! this relay last saw it (`Nats-Expected-Last-Sequence`), the others for the record before
//! them, and the ack must come at that sequence plus the chunk's length. Anything else (a
//! record the server refused, a duplicate, a message from another publisher, a reconnect in
//! the middle) makes the chunk uncertain: each of its records is checked against the stream
//! as after a start, and from the first one missing on, they are published again, one at a
//! time, each with its ack. The first chunk after a start or a failure is sent that way too,
//! to learn where the stream ends.
//!
//! Known limit: a message another publisher put on an incident's subject hides what of that
//! incident is on the stream from the check; its uncertain records are then published again
//! (dropped by the server inside the duplicate window, stored twice after it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use incident_eventlog::{EventLog, Record};
use tokio::sync::{Notify, watch};

use crate::streams::StreamSpec;

/// How many records one relay step publishes before it waits for their acks.
pub const CHUNK: usize = 256;

/// What the relay has done, for `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct RelayStatus {
    pub relayed: AtomicU64,
    pub skipped_already_published: AtomicU64,
    /// Chunks sent with one ack whose ack did not show every record stored: checked one by one.
    pub rechecked_chunks: AtomicU64,
    pub errors: AtomicU64,
    pub cursor: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading the event log: {0}")]
    Log(String),
    #[error("publishing to {stream}: {reason}")]
    Publish { stream: String, reason: String },
}

pub struct Relay {
    log: EventLog,
    js: jetstream::Context,
    spec: StreamSpec,
    cursor_name: String,
    /// Records up to this log sequence may already be on the stream.
    uncertain_until: u64,
    /// Per subject: the log sequence of the newest event found on the stream while checking.
    published: HashMap<String, u64>,
    /// The stream's last sequence after this relay's last publish, when known for sure: a
    /// chunk is then sent with one ack.
    stream_last: Option<u64>,
    status: Arc<RelayStatus>,
    wake: Arc<Notify>,
    /// Records for which this is false stay in the log only (e.g. inputs a service recorded).
    publish_if: fn(&Record) -> bool,
}

impl Relay {
    /// A relay of `log` to the stream `spec`; its cursor is stored under `cursor_name`.
    pub fn new(log: EventLog, js: jetstream::Context, spec: StreamSpec, cursor_name: &str) -> Self {
        let head = log.head().seq;
        Self {
            log,
            js,
            spec,
            cursor_name: cursor_name.to_owned(),
            uncertain_until: head,
            published: HashMap::new(),
            stream_last: None,
            status: Arc::new(RelayStatus::default()),
            wake: Arc::new(Notify::new()),
            publish_if: |_| true,
        }
    }

    /// Publishes only the records for which `publish_if` is true; the others are passed over.
    pub fn with_filter(mut self, publish_if: fn(&Record) -> bool) -> Self {
        self.publish_if = publish_if;
        self
    }

    pub fn status(&self) -> Arc<RelayStatus> {
        self.status.clone()
    }

    /// Notify this after an append to have the relay publish at once.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Relays until `shutdown` turns true: after each append it is woken, otherwise it looks
    /// every second; failures are retried with capped, jittered backoff.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.step().await {
                Ok(n) if n > 0 => {
                    failures = 0;
                    continue;
                }
                Ok(_) => {
                    failures = 0;
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.status.errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut last) = self.status.last_error.lock() {
                        *last = Some(e.to_string());
                    }
                    tracing::warn!(error = %e, failures, "relay step failed; retrying");
                    let delay = backoff(failures);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// Publishes the records past the cursor, up to one chunk; returns how many it moved past.
    pub async fn step(&mut self) -> Result<usize, RelayError> {
        let cursor = self
            .log
            .cursor(&self.cursor_name)
            .map_err(|e| RelayError::Log(e.to_string()))?;
        self.status.cursor.store(cursor, Ordering::Relaxed);
        let log = self.log.clone();
        let records = tokio::task::spawn_blocking(move || -> Result<Vec<Record>, String> {
            log.read_from(cursor + 1)
                .take(CHUNK)
                .map(|r| r.map_err(|e| e.to_string()))
                .collect()
        })
        .await
        .map_err(|e| RelayError::Log(e.to_string()))?
        .map_err(RelayError::Log)?;
        let Some(last) = records.last().map(|r| r.seq) else {
            return Ok(0);
        };

        let (sends, skipped) = self.records_to_send(&records).await?;
        // records come in log order: all are past the uncertain ones when the first is
        let certain = records[0].seq > self.uncertain_until;
        let published = match self.stream_last {
            Some(before) if certain && !sends.is_empty() => {
                match self.publish_with_one_ack(&sends, before).await {
                    Ok(true) => sends.len() as u64,
                    Ok(false) => {
                        // not every record is on the stream as sent: check each one
                        tracing::warn!(
                            stream = self.spec.name,
                            first = records[0].seq,
                            last,
                            "the stream did not take a chunk as sent; checking each record"
                        );
                        self.status.rechecked_chunks.fetch_add(1, Ordering::Relaxed);
                        self.uncertain_until = self.uncertain_until.max(last);
                        self.published.clear();
                        // what the check finds missing goes again, each with its ack; the
                        // rest was relayed by the chunk
                        let (missing, _) = self.records_to_send(&records).await?;
                        self.status.relayed.fetch_add(
                            sends.len().saturating_sub(missing.len()) as u64,
                            Ordering::Relaxed,
                        );
                        self.publish_each_acked(&missing, last).await?
                    }
                    Err(e) => return Err(self.failed(last, e)),
                }
            }
            _ => self.publish_each_acked(&sends, last).await?,
        };
        self.log
            .set_cursor(&self.cursor_name, last)
            .map_err(|e| RelayError::Log(e.to_string()))?;
        self.status.cursor.store(last, Ordering::Relaxed);
        self.status.relayed.fetch_add(published, Ordering::Relaxed);
        self.status
            .skipped_already_published
            .fetch_add(skipped, Ordering::Relaxed);
        if last >= self.uncertain_until {
            self.published.clear();
        }
        Ok(records.len())
    }

    /// The records of a chunk to publish: those the relay publishes, less those an uncertain
    /// record check finds on the stream already (counted as the second value).
    async fn records_to_send<'r>(
        &mut self,
        records: &'r [Record],
    ) -> Result<(Vec<(String, &'r Record)>, u64), RelayError> {
        let mut sends = Vec::with_capacity(records.len());
        let mut skipped = 0u64;
        let publish_if = self.publish_if;
        for rec in records.iter().filter(|r| publish_if(r)) {
            let subject = self.spec.subject_for(&rec.stream);
            if rec.seq <= self.uncertain_until && self.already_published(&subject, rec).await? {
                skipped += 1;
                continue;
            }
            sends.push((subject, rec));
        }
        Ok((sends, skipped))
    }

    fn message(rec: &Record) -> PublishMessage {
        PublishMessage::build()
            .message_id(&rec.event_id)
            .payload(Bytes::copy_from_slice(&rec.event))
    }

    /// Publishes each record with its own ack, one after the other: a refused record stops the
    /// rest, and a duplicate (a record already on the stream) is passed over. Learns the
    /// stream's last sequence from the acks when none was a duplicate. Returns how many were
    /// published.
    async fn publish_each_acked(
        &mut self,
        sends: &[(String, &Record)],
        last: u64,
    ) -> Result<u64, RelayError> {
        let (mut newest, mut duplicate) = (None, false);
        for (subject, rec) in sends {
            let ack = match self
                .js
                .send_publish(subject.clone(), Self::message(rec))
                .await
            {
                Ok(ack) => ack.await,
                Err(e) => return Err(self.failed(last, e.to_string())),
            };
            match ack {
                Ok(ack) => {
                    duplicate |= ack.duplicate;
                    newest = Some(ack.sequence);
                }
                Err(e) => return Err(self.failed(last, e.to_string())),
            }
        }
        if !sends.is_empty() {
            // a duplicate's ack names an older message: the stream's end is learned again
            self.stream_last = newest.filter(|_| !duplicate);
        }
        Ok(sends.len() as u64)
    }

    /// Publishes every record but the last without an ack and the last with one, chained as
    /// the module says; true when that ack shows the stream took the whole chunk after
    /// `before`, its last sequence as this relay last saw it.
    async fn publish_with_one_ack(
        &mut self,
        sends: &[(String, &Record)],
        before: u64,
    ) -> Result<bool, String> {
        let Some(((last_subject, last_rec), rest)) = sends.split_last() else {
            return Ok(true);
        };
        let client = self.js.client();
        let mut previous: Option<&Record> = None;
        for (subject, rec) in rest {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", rec.event_id.as_str());
            match previous {
                Some(p) => headers.insert("Nats-Expected-Last-Msg-Id", p.event_id.as_str()),
                None => headers.insert("Nats-Expected-Last-Sequence", before.to_string().as_str()),
            }
            client
                .publish_with_headers(subject.clone(), headers, Bytes::copy_from_slice(&rec.event))
                .await
                .map_err(|e| e.to_string())?;
            previous = Some(rec);
        }
        let message = match previous {
            Some(p) => Self::message(last_rec).expected_last_message_id(&p.event_id),
            None => Self::message(last_rec).expected_last_sequence(before),
        };
        let ack = self
            .js
            .send_publish(last_subject.clone(), message)
            .await
            .map_err(|e| e.to_string())?
            .await;
        let ack = match ack {
            Ok(ack) => ack,
            // the chain broke before the last record: the chunk is checked
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::PublishErrorKind::WrongLastMessageId
                        | jetstream::context::PublishErrorKind::WrongLastSequence
                ) =>
            {
                self.stream_last = None;
                return Ok(false);
            }
            Err(e) => return Err(e.to_string()),
        };
        // the last record is stored at the stream's end, whatever happened to those before it
        self.stream_last = (!ack.duplicate).then_some(ack.sequence);
        Ok(!ack.duplicate && ack.sequence == before + sends.len() as u64)
    }

    /// After a failed publish, every record of the chunk may or may not be on the stream.
    fn failed(&mut self, last: u64, reason: String) -> RelayError {
        self.uncertain_until = self.uncertain_until.max(last);
        self.published.clear();
        self.stream_last = None;
        RelayError::Publish {
            stream: self.spec.name.to_owned(),
            reason,
        }
    }

    /// Whether `rec` is already on the stream: the newest message of its subject is this event
    /// or a later one of the same incident.
    async fn already_published(&mut self, subject: &str, rec: &Record) -> Result<bool, RelayError> {
        let newest = match self.published.get(subject) {
            Some(seq) => *seq,
            None => {
                let seq = self.newest_published(subject).await?;
                self.published.insert(subject.to_owned(), seq);
                seq
            }
        };
        Ok(rec.seq <= newest)
    }

    /// The log sequence of the newest event of `subject` stored on the stream (0 if none).
    async fn newest_published(&self, subject: &str) -> Result<u64, RelayError> {
        let err = |reason: String| RelayError::Publish {
            stream: self.spec.name.to_owned(),
            reason,
        };
        let stream = self
            .js
            .get_stream_no_info(self.spec.name)
            .await
            .map_err(|e| err(e.to_string()))?;
        let msg = match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                ) =>
            {
                return Ok(0);
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let Some(id) = msg
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
        else {
            return Ok(0);
        };
        let log = self.log.clone();
        let seq = tokio::task::spawn_blocking(move || log.seq_of_event(&id))
            .await
            .map_err(|e| RelayError::Log(e.to_string()))?
            .map_err(|e| RelayError::Log(e.to_string()))?;
        if seq.is_none() {
            tracing::warn!(
                subject,
                "the newest message on the stream is not in this log; publishing anyway"
            );
        }
        Ok(seq.unwrap_or(0))
    }
}

/// Capped exponential backoff with jitter: 100 ms doubling to 5 s, each +-25 %.
pub fn backoff(failures: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << failures.min(6)).min(5_000);
    let jitter = rand::random_range(0.75..1.25);
    Duration::from_millis((base as f64 * jitter) as u64)
}
