//! Rebuilding the notifier's log from JetStream, for when the log on disk is damaged
//! (`incident-notifier --rebuild-log-from-jetstream`, with the notifier stopped).
//!
//! The notifier's state is a fold of its own events only ([`crate::engine::fold_log`]), and the
//! relay publishes every one of them, in log order, to `NOTIFY_EVENTS` on
//! `notify.v1.events.<incident id>` (the log stream the engine wrote it to) with
//! `Nats-Msg-Id` = the event id. So:
//!
//! 1. Every event of `NOTIFY_EVENTS` is appended to a new log, in stream order, with the same
//!    event id, the same bytes and the same log stream. Each event that carries a trigger
//!    (`trigger.event_id`, or `by` of a stopped page) names an input the notifier processed:
//!    those ids are recorded as processed with it, so a redelivery of them is skipped.
//! 2. For each stream consumed (`INCIDENT_EVENTS`, `SLA_EVENTS`), the highest stream sequence of
//!    an input named by an event is found (matched on the envelope id, which is what the engine
//!    records as processed), and the durable consumer `incident-notifier` is created again to
//!    deliver from just after it. The relay publishes in log order and inputs are recorded in
//!    stream order, so an input before that point that no event names had no effect. An input
//!    after it had none that reached the stream: it is delivered again and decided again on the
//!    next start, with the routes and silences in force then (notification ids derive from the trigger, route and channel, so what it leads
//!    to again carries the same ids and webhook `Idempotency-Key`s). The one input out of order
//!    is a redelivery still pending when the log broke (retried after a failed write): when the
//!    old durable had not acknowledged everything up to that point, it restarts after its ack
//!    floor instead, so nothing it would still have delivered is skipped (what is delivered
//!    again and named is skipped by its processed id).
//! 3. The relay cursor is set to the new head (all of it is on the stream already), the log is
//!    flushed and folded, to check it and to count what the report shows.
//!
//! The new log is written next to the damaged one and only moved into place once it is complete
//! and the consumers are repositioned; the damaged log is then kept aside, never deleted. A
//! rebuild that fails leaves the damaged log where it was (the notifier keeps refusing to start),
//! so it can simply be run again.
//!
//! The limit: what the damaged log recorded but the relay never published cannot be read back.
//! An input after the restart point is decided again (a webhook it had sent is sent again, with
//! the same `Idempotency-Key`). The outcome of a delivery attempt or a page deadline is not an
//! input: a notification whose `delivered` was never relayed is attempted again (same key), a
//! page's next tier comes at its deadline. Anything else the stream lost (a single JetStream node
//! losing its last writes) is gone. The report shows how many records the damaged log still had,
//! to compare with the number rebuilt.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use async_nats::jetstream;
use incident_bus::rebuild::{self as from_stream, StoredMessage};
use incident_bus::streams;
use incident_domain::Envelope;
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};
use serde_json::{Value, json};

use crate::events::NotifierEvent;
use crate::state::NotificationStatus;
use crate::{Config, DURABLE, INPUT_STREAMS, RELAY_CURSOR, consumer_spec};

/// Events appended per group commit while rebuilding.
const BATCH: usize = 1000;

/// Where one durable consumer was put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRestart {
    pub stream: String,
    /// Messages read from the stream (0 when it does not exist: then nothing is restarted).
    pub messages: u64,
    /// The highest stream sequence of an input a rebuilt event names (0: none).
    pub last_named: u64,
    /// The old durable's ack floor (None: there was no such consumer).
    pub ack_floor: Option<u64>,
    /// The durable now delivers from the message after this one.
    pub restart_after: u64,
}

#[derive(Debug)]
pub struct RebuildReport {
    /// Events written to the new log.
    pub events: u64,
    /// Copies of an event id already read (written once).
    pub duplicates_skipped: u64,
    /// Input ids recorded as processed.
    pub inputs_processed: usize,
    pub incidents: usize,
    pub notifications: usize,
    /// Notifications by status, from the fold of the new log.
    pub by_status: Vec<(&'static str, u64)>,
    pub pages_active: usize,
    pub consumers: Vec<ConsumerRestart>,
    pub damaged_log_kept_at: Option<PathBuf>,
    /// Records the damaged log still showed (None when it could not be read at all).
    pub damaged_log_records: Option<u64>,
}

impl RebuildReport {
    /// The report the binary prints (under `rebuilt`).
    pub fn to_json(&self) -> Value {
        let by_status: serde_json::Map<String, Value> = self
            .by_status
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        let consumers: serde_json::Map<String, Value> = self
            .consumers
            .iter()
            .map(|c| {
                (
                    c.stream.clone(),
                    json!({
                        "messages": c.messages,
                        "last_named": c.last_named,
                        "ack_floor": c.ack_floor,
                        "restart_after": c.restart_after,
                    }),
                )
            })
            .collect();
        json!({
            "events": self.events,
            "duplicates_skipped": self.duplicates_skipped,
            "inputs_processed": self.inputs_processed,
            "incidents": self.incidents,
            "notifications": self.notifications,
            "by_status": by_status,
            "pages_active": self.pages_active,
            "consumers": consumers,
            "damaged_log_kept_at": self.damaged_log_kept_at.as_ref().map(|p| p.display().to_string()),
            "damaged_log_records": self.damaged_log_records,
        })
    }
}

/// The input an event of the notifier names: the one that caused it (or stopped its page).
pub fn named_input(ev: &NotifierEvent) -> Option<&str> {
    let trigger = match ev {
        NotifierEvent::Observed(o) => Some(&o.trigger),
        NotifierEvent::Queued(q) => Some(&q.trigger),
        NotifierEvent::Suppressed(s) => Some(&s.trigger),
        NotifierEvent::PageStarted(p) => Some(&p.trigger),
        NotifierEvent::PageStopped(p) => p.by.as_ref(),
        NotifierEvent::Delivered(_)
        | NotifierEvent::Failed(_)
        | NotifierEvent::PageEscalated(_) => None,
    };
    trigger
        .map(|t| t.event_id.as_str())
        .filter(|id| !id.is_empty())
}

pub use incident_bus::rebuild::restart_point;

/// Writes `NOTIFY_EVENTS` into a log, recording the inputs its events name as processed.
struct Writer<'a> {
    log: &'a EventLog,
    batch: Vec<AppendRequest>,
    events_seen: HashSet<String>,
    processed: HashSet<String>,
    written: u64,
    duplicates: u64,
}

impl Writer<'_> {
    fn add(&mut self, msg: StoredMessage) -> Result<(), String> {
        // the relay published the record of log stream S on <prefix>S
        let stream = msg
            .subject
            .strip_prefix(streams::NOTIFY_EVENTS.subject_prefix)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("subject {} is not a notifier event subject", msg.subject))?
            .to_owned();
        let (env, ev) = NotifierEvent::decode_bytes(&msg.payload)
            .map_err(|e| format!("on {}: cannot be read: {e}", msg.subject))?;
        if !self.events_seen.insert(env.id.clone()) {
            self.duplicates += 1;
            return Ok(());
        }
        let processed = named_input(&ev)
            .filter(|id| self.processed.insert((*id).to_owned()))
            .map(|id| vec![id.to_owned()])
            .unwrap_or_default();
        self.batch.push(AppendRequest {
            stream,
            expected: ExpectedVersion::Any,
            events: vec![NewEvent::new(env.id, msg.payload.to_vec())],
            processed,
        });
        if self.batch.len() >= BATCH {
            // a one-off tool: writing from the read loop keeps memory flat
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> Result<(), String> {
        self.written += from_stream::append_all(self.log, std::mem::take(&mut self.batch))?;
        Ok(())
    }
}

/// Finds the last input each stream holds of `processed` and restarts the durable after it.
async fn reposition_consumers(
    js: &jetstream::Context,
    processed: &HashSet<String>,
) -> anyhow::Result<Vec<ConsumerRestart>> {
    let mut out = Vec::new();
    for name in INPUT_STREAMS {
        match js.get_stream(name).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("stream not found") => {
                // nothing was ever consumed from it; the notifier creates both on start
                out.push(ConsumerRestart {
                    stream: name.to_owned(),
                    messages: 0,
                    last_named: 0,
                    ack_floor: None,
                    restart_after: 0,
                });
                continue;
            }
            Err(e) => bail!("reading stream {name}: {e}"),
        };
        let mut last_named = 0u64;
        let messages = from_stream::read_all(js, name, |msg| {
            // the engine records the envelope id as processed (what cannot be decoded was
            // dead-lettered, never recorded)
            if let Ok(env) = Envelope::from_slice(&msg.payload)
                && processed.contains(&env.id)
            {
                last_named = last_named.max(msg.sequence);
            }
            Ok(())
        })
        .await?;
        let floor = from_stream::ack_floor(js, name, DURABLE).await?;
        let restart_after = restart_point(last_named, floor);
        from_stream::restart_consumer_after(js, &consumer_spec(name), restart_after).await?;
        out.push(ConsumerRestart {
            stream: name.to_owned(),
            messages,
            last_named,
            ack_floor: floor,
            restart_after,
        });
    }
    Ok(out)
}

/// What the new log holds, before it is moved into place.
struct Built {
    writer_stats: (u64, u64),
    processed: HashSet<String>,
    head: u64,
}

/// Writes the new log at `dir` from `NOTIFY_EVENTS`, sets the relay cursor, flushes and folds it.
async fn build(js: &jetstream::Context, dir: &Path) -> anyhow::Result<Built> {
    let log = EventLog::open(dir)?;
    let mut writer = Writer {
        log: &log,
        batch: Vec::new(),
        events_seen: HashSet::new(),
        processed: HashSet::new(),
        written: 0,
        duplicates: 0,
    };
    from_stream::read_all(js, streams::NOTIFY_EVENTS.name, |msg| writer.add(msg)).await?;
    writer.write().map_err(|e| anyhow::anyhow!(e))?;
    let Writer {
        written,
        duplicates,
        processed,
        ..
    } = writer;
    let head = log.head().seq;
    log.set_cursor(RELAY_CURSOR, head)?;
    log.flush()?;
    // the check a normal start makes: every record folds
    crate::engine::fold_log(&log).context("the rebuilt log does not fold")?;
    Ok(Built {
        writer_stats: (written, duplicates),
        processed,
        head,
    })
}

/// Writes a new log from `NOTIFY_EVENTS`, repositions the durable consumers, then moves the
/// damaged `DATA_DIR/log` aside and the new one into its place.
pub async fn rebuild_from_jetstream(config: &Config) -> anyhow::Result<RebuildReport> {
    let log_dir = config.data_dir.join("log");
    let staging = from_stream::Staging::begin(&log_dir)?;
    let js = from_stream::connect_once(&config.nats_url, &config.nats_auth).await?;
    let built = build(&js, staging.path()).await?;
    staging.check_not_empty(built.head)?;
    // while the damaged log is still in place the notifier keeps refusing to start, so a
    // failure here leaves nothing half done that a second run does not redo
    let consumers = reposition_consumers(&js, &built.processed).await?;
    let aside = staging.commit()?;

    let log = EventLog::open(&log_dir)?;
    if log.head().seq != built.head || log.cursor(RELAY_CURSOR)? != built.head {
        bail!(
            "the rebuilt log at {} does not end at record {}",
            log_dir.display(),
            built.head
        );
    }
    let state = crate::engine::fold_log(&log)?;
    let counts = state.count_by_status();
    let (events, duplicates_skipped) = built.writer_stats;
    Ok(RebuildReport {
        events,
        duplicates_skipped,
        inputs_processed: built.processed.len(),
        incidents: state.incidents_known(),
        notifications: state.notifications(None).len(),
        by_status: NotificationStatus::ALL
            .iter()
            .map(|s| (s.as_str(), counts.get(s).copied().unwrap_or(0)))
            .collect(),
        pages_active: state.active_pages().count(),
        consumers,
        damaged_log_kept_at: aside.as_ref().map(|a| a.path.clone()),
        damaged_log_records: aside.and_then(|a| a.readable_records),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Delivered, Observed, PageStopped, Summary, Trigger};

    fn trigger(id: &str) -> Trigger {
        Trigger {
            event_id: id.into(),
            ty: "incident.opened.v1".into(),
        }
    }

    #[test]
    fn events_name_the_input_that_caused_them() {
        let observed = NotifierEvent::Observed(Observed {
            trigger: trigger("in-1"),
            incident: Summary::default(),
        });
        assert_eq!(named_input(&observed), Some("in-1"));
        let acked = NotifierEvent::PageStopped(PageStopped {
            page_id: "p".into(),
            oncall: "o".into(),
            reason: "incident.acknowledged by bob".into(),
            by: Some(trigger("in-2")),
        });
        assert_eq!(named_input(&acked), Some("in-2"));
        let exhausted = NotifierEvent::PageStopped(PageStopped {
            page_id: "p".into(),
            oncall: "o".into(),
            reason: "exhausted".into(),
            by: None,
        });
        assert_eq!(named_input(&exhausted), None);
        let delivered = NotifierEvent::Delivered(Delivered {
            notification_id: "n".into(),
            channel: "c".into(),
            attempts: 1,
            response: "200".into(),
        });
        assert_eq!(named_input(&delivered), None);
    }

    #[test]
    fn a_consumer_restarts_after_the_last_named_input_and_never_moves_forward() {
        // no durable left: just after the last named input
        assert_eq!(restart_point(7, None), 7);
        // the durable was further (inputs after 7 had effects that never reached the stream)
        assert_eq!(restart_point(7, Some(12)), 7);
        // a redelivery of input 5 was pending when the log broke: it is not skipped
        assert_eq!(restart_point(7, Some(4)), 4);
        assert_eq!(restart_point(0, Some(3)), 0);
    }
}
