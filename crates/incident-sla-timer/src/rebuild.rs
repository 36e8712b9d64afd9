//! Rebuilding the SLA log from the streams, for when the log on disk is damaged.
//!
//! The SLA log holds two kinds of records: the incident events it consumed (inputs, kept in the
//! log only; they are on INCIDENT_EVENTS) and its own events (on SLA_EVENTS). Each of its own
//! events names in `after_input` the last input recorded before it, so the original order comes
//! back by merging the two streams: inputs in INCIDENT_EVENTS order, and each SLA event right
//! after the input it names. Inputs after the last one an SLA event names are not written: the
//! durable consumer is restarted just after that input, so they are consumed again and derive
//! what they derived before (an input's effect depends only on the state and the input).
//!
//! The new log is written beside the damaged one; the damaged log is moved aside (kept) only
//! once the new one is whole and the consumer restarted, so a failed rebuild can be run again.
//!
//! What SLA_EVENTS never received (events recorded but not yet relayed when the log broke) is
//! worked out again where it can be: a timer that fired but never reached the stream fires again.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;

use anyhow::Context as _;
use incident_bus::consumer::delivery_id;
use incident_bus::rebuild as from_stream;
use incident_bus::streams;
use incident_domain::{Envelope, stored};
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};

use crate::{Config, RELAY_CURSOR, writer};

#[derive(Debug, serde::Serialize)]
pub struct RebuildReport {
    /// Incident events written as inputs.
    pub inputs: u64,
    /// SLA events written (all from SLA_EVENTS).
    pub sla_events: u64,
    /// SLA events whose `after_input` was not found on INCIDENT_EVENTS (written at the end).
    pub unplaced: u64,
    pub incidents: usize,
    pub breaches: usize,
    /// INCIDENT_EVENTS sequence the consumer resumes after.
    pub consumer_resumes_after: u64,
    pub damaged_log_kept_at: Option<PathBuf>,
    pub damaged_log_records: Option<u64>,
}

struct Input {
    seq: u64,
    id: String,
    delivery_id: String,
    subject: String,
    bytes: Vec<u8>,
}

/// Moves `DATA_DIR/log` aside, writes a new one from SLA_EVENTS and INCIDENT_EVENTS and restarts
/// the durable consumer after the last input written.
pub async fn rebuild_from_jetstream(config: &Config) -> anyhow::Result<RebuildReport> {
    let log_dir = config.data_dir.join("log");
    let staging = from_stream::Staging::begin(&log_dir)?;
    let js = from_stream::connect_once(&config.nats_url, &config.nats_auth).await?;

    // the SLA timer's own events, in order, with the input each follows
    let mut own: VecDeque<(Envelope, Option<String>)> = VecDeque::new();
    from_stream::read_all(&js, streams::SLA_EVENTS.name, |msg| {
        let env = Envelope::from_slice(&msg.payload)
            .map_err(|e| format!("on {}: not an event envelope: {e}", msg.subject))?;
        // null: written before any input; missing: written by a version that did not record
        // the order, which cannot be put back
        let Some(after) = env.data.get("after_input") else {
            return Err(format!(
                "SLA event {} has no after_input (written before the order was recorded): \
                 the log cannot be rebuilt in its order from the streams",
                env.id
            ));
        };
        let after = after.as_str().map(str::to_owned);
        own.push_back((env, after));
        Ok(())
    })
    .await?;
    let named: HashSet<String> = own.iter().filter_map(|(_, a)| a.clone()).collect();

    let log = EventLog::open(staging.path())?;
    let mut report = RebuildReport {
        inputs: 0,
        sla_events: 0,
        unplaced: 0,
        incidents: 0,
        breaches: 0,
        consumer_resumes_after: 0,
        damaged_log_kept_at: None,
        damaged_log_records: None,
    };
    // inputs read but not yet written: written once an SLA event names one of them or a later one
    let mut pending: Vec<Input> = Vec::new();
    let mut written: HashSet<String> = HashSet::new();
    let mut batch: Vec<AppendRequest> = Vec::new();
    // SLA events before the first input
    place(&mut own, &written, &mut batch, &mut report);
    from_stream::read_all(&js, streams::INCIDENT_EVENTS.name, |msg| {
        // what the live consumer rejects (not an incident event) is no input
        let Ok(env) = Envelope::from_slice(&msg.payload) else {
            return Ok(());
        };
        if stored::decode(&env).is_err() {
            return Ok(());
        }
        let input = Input {
            seq: msg.sequence,
            delivery_id: delivery_id(
                streams::INCIDENT_EVENTS.name,
                msg.headers.as_ref(),
                msg.sequence,
            ),
            id: env.id.clone(),
            subject: env.subject.clone(),
            bytes: env.to_canonical_bytes(),
        };
        let is_named = named.contains(&input.id);
        pending.push(input);
        if is_named {
            for input in pending.drain(..) {
                report.inputs += 1;
                report.consumer_resumes_after = input.seq;
                written.insert(input.id.clone());
                batch.push(AppendRequest {
                    stream: writer::input_stream(&input.subject),
                    expected: ExpectedVersion::Any,
                    events: vec![NewEvent {
                        id: input.id,
                        bytes: input.bytes,
                    }],
                    processed: vec![input.delivery_id],
                });
            }
            place(&mut own, &written, &mut batch, &mut report);
        }
        if batch.len() >= 1000 {
            // a one-off tool: writing from the read loop keeps memory flat
            from_stream::append_all(&log, std::mem::take(&mut batch))?;
        }
        Ok(())
    })
    .await?;
    // what names an input that is not on the stream goes last, in stream order
    for (env, _) in own.drain(..) {
        report.unplaced += 1;
        report.sla_events += 1;
        batch.push(own_request(&env));
    }
    from_stream::append_all(&log, batch).map_err(|e| anyhow::anyhow!(e))?;
    let head = log.head().seq;
    log.set_cursor(RELAY_CURSOR, head)?;
    log.flush()?;

    let (engine, _) = crate::rebuild(&log).context("reading the rebuilt log")?;
    report.incidents = engine.incidents().count();
    report.breaches = engine.breaches().len();
    let head = log.head().seq;
    drop(log);
    staging.check_not_empty(head)?;

    // inputs after the last one written are delivered again; so is anything the old durable
    // had not acknowledged yet (what the new log holds of it is skipped by its processed id)
    let spec = crate::consumer_spec();
    let floor = from_stream::ack_floor(&js, &spec.stream, &spec.durable).await?;
    report.consumer_resumes_after =
        from_stream::restart_point(report.consumer_resumes_after, floor);
    from_stream::restart_consumer_after(&js, &spec, report.consumer_resumes_after).await?;
    // the damaged log stays in place (incident-sla keeps refusing to start) until now
    let aside = staging.commit()?;
    report.damaged_log_kept_at = aside.as_ref().map(|a| a.path.clone());
    report.damaged_log_records = aside.and_then(|a| a.readable_records);
    Ok(report)
}

/// Moves every SLA event at the front of `own` whose input is written (or that follows no
/// input) into `batch`.
fn place(
    own: &mut VecDeque<(Envelope, Option<String>)>,
    written: &HashSet<String>,
    batch: &mut Vec<AppendRequest>,
    report: &mut RebuildReport,
) {
    while let Some((_, after)) = own.front() {
        if after.as_ref().is_some_and(|a| !written.contains(a)) {
            return;
        }
        let (env, _) = own.pop_front().expect("front exists");
        report.sla_events += 1;
        batch.push(own_request(&env));
    }
}

fn own_request(env: &Envelope) -> AppendRequest {
    AppendRequest {
        stream: env.subject.clone(),
        expected: ExpectedVersion::Any,
        events: vec![NewEvent {
            id: env.id.clone(),
            bytes: env.to_canonical_bytes(),
        }],
        processed: Vec::new(),
    }
}
