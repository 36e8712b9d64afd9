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

        let mut acks = Vec::with_capacity(records.len());
        let mut skipped = 0u64;
        let publish_if = self.publish_if;
        for rec in records.iter().filter(|r| publish_if(r)) {
            let subject = self.spec.subject_for(&rec.stream);
            if rec.seq <= self.uncertain_until && self.already_published(&subject, rec).await? {
                skipped += 1;
                continue;
            }
            let publish = PublishMessage::build()
                .message_id(&rec.event_id)
                .payload(Bytes::copy_from_slice(&rec.event));
            match self.js.send_publish(subject, publish).await {
                Ok(ack) => acks.push(ack),
                Err(e) => return Err(self.failed(last, e.to_string())),
            }
        }
        let mut published = 0u64;
        for ack in acks {
            match ack.await {
                Ok(_) => published += 1,
                Err(e) => return Err(self.failed(last, e.to_string())),
            }
        }
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

    /// After a failed publish, every record of the chunk may or may not be on the stream.
    fn failed(&mut self, last: u64, reason: String) -> RelayError {
        self.uncertain_until = self.uncertain_until.max(last);
        self.published.clear();
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
