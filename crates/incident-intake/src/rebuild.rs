//! Rebuilding intake's local log from `INCIDENT_EVENTS`, for when the log on disk is damaged
//! (sled lost its tail, a disk error, a tampered record). A new log is written beside the
//! damaged one with every event of the stream in stream order (same event ids, same bytes), the
//! relay cursor is set to the end, since all of it is on the stream already, and only then is
//! the damaged log moved aside (kept) and the new one put in its place.
//!
//! What the stream never received (commands answered while NATS was down and not yet relayed
//! when the log broke) cannot come back from it; the report says how many records the damaged
//! log had, when that can still be read, so an operator can compare.

use std::path::PathBuf;

use incident_bus::rebuild as from_stream;
use incident_bus::streams;
use incident_domain::{Envelope, stored};
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};

use crate::{Config, RELAY_CURSOR};

#[derive(Debug, serde::Serialize)]
pub struct RebuildReport {
    pub events: u64,
    pub incidents: usize,
    pub damaged_log_kept_at: Option<PathBuf>,
    /// Records the damaged log still showed (None when it could not be read at all).
    pub damaged_log_records: Option<u64>,
}

/// Moves `DATA_DIR/log` aside and writes a new one from the stream.
pub async fn rebuild_from_jetstream(config: &Config) -> anyhow::Result<RebuildReport> {
    let log_dir = config.data_dir.join("log");
    let staging = from_stream::Staging::begin(&log_dir)?;
    let js = from_stream::connect_once(&config.nats_url, &config.nats_auth).await?;
    let log = EventLog::open(staging.path())?;
    let mut batch = Vec::new();
    let mut written = 0u64;
    from_stream::read_all(&js, streams::INCIDENT_EVENTS.name, |msg| {
        let env = Envelope::from_slice(&msg.payload)
            .map_err(|e| format!("on {}: not an event envelope: {e}", msg.subject))?;
        stored::decode(&env).map_err(|e| format!("event {}: cannot be read: {e}", env.id))?;
        batch.push(AppendRequest {
            stream: env.subject.clone(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                id: env.id.clone(),
                bytes: msg.payload.to_vec(),
            }],
            processed: Vec::new(),
        });
        if batch.len() == 1000 {
            // a one-off tool: writing from the read loop keeps memory flat
            written += from_stream::append_all(&log, std::mem::take(&mut batch))?;
        }
        Ok(())
    })
    .await?;
    written += from_stream::append_all(&log, batch).map_err(|e| anyhow::anyhow!(e))?;
    let head = log.head().seq;
    log.set_cursor(RELAY_CURSOR, head)?;
    log.flush()?;
    let state = crate::rebuild(&log)?;
    drop(log);
    staging.check_not_empty(head)?;
    // the damaged log stays in place (intake keeps refusing to start) until the new one is whole
    let aside = staging.commit()?;
    Ok(RebuildReport {
        events: written,
        incidents: state.len(),
        damaged_log_kept_at: aside.as_ref().map(|a| a.path.clone()),
        damaged_log_records: aside.and_then(|a| a.readable_records),
    })
}
