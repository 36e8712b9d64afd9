//! Rebuilding intake's local log from `INCIDENT_EVENTS`, for when the log on disk is damaged
//! (sled lost its tail, a disk error, a tampered record). The damaged log is kept aside, a new
//! log is written with every event of the stream in stream order (same event ids, same bytes),
//! and the relay cursor is set to the end, since all of it is on the stream already.
//!
//! What the stream never received (commands answered while NATS was down and not yet relayed
//! when the log broke) cannot come back from it; the report says how many records the damaged
//! log had, when that can still be read, so an operator can compare.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use incident_bus::streams;
use incident_domain::{Envelope, stored};
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent};

use crate::{Config, RELAY_CURSOR};

#[derive(Debug)]
pub struct RebuildReport {
    pub events: u64,
    pub incidents: usize,
    pub damaged_log_kept_at: Option<PathBuf>,
    /// Records the damaged log still showed (None when it could not be read at all).
    pub damaged_log_records: Option<u64>,
}

fn count_readable(path: &Path) -> Option<u64> {
    let db = sled::open(path).ok()?;
    let n = db.scan_prefix(b"r").filter_map(Result::ok).count() as u64;
    Some(n)
}

/// Moves `DATA_DIR/log` aside and writes a new one from the stream.
pub async fn rebuild_from_jetstream(config: &Config) -> anyhow::Result<RebuildReport> {
    let log_dir = config.data_dir.join("log");
    let mut kept = None;
    let mut damaged_records = None;
    if log_dir.exists() {
        let aside = config.data_dir.join(format!(
            "log.damaged-{}",
            jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")
        ));
        std::fs::rename(&log_dir, &aside)
            .with_context(|| format!("moving {} aside", log_dir.display()))?;
        damaged_records = count_readable(&aside);
        kept = Some(aside);
    }
    std::fs::create_dir_all(&config.data_dir)?;

    let client = config
        .nats_auth
        .apply(async_nats::ConnectOptions::new())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .connection_timeout(Duration::from_secs(5))
        .connect(
            incident_bus::connect::server_addrs(&config.nats_url)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        )
        .await
        .map_err(|e| anyhow::anyhow!("connecting to NATS at {}: {e}", config.nats_url))?;
    let js = jetstream::new(client);
    let mut stream = js
        .get_stream(streams::INCIDENT_EVENTS.name)
        .await
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", streams::INCIDENT_EVENTS.name))?;
    let total = stream
        .info()
        .await
        .map_err(|e| anyhow::anyhow!("stream info: {e}"))?
        .state
        .messages;
    let log = EventLog::open(&log_dir)?;
    let mut written = 0u64;
    if total > 0 {
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
        let mut batch = Vec::new();
        while written + (batch.len() as u64) < total {
            let msg = tokio::time::timeout(Duration::from_secs(30), messages.next())
                .await
                .context("the stream stopped delivering")?
                .context("the stream ended early")?
                .map_err(|e| anyhow::anyhow!("reading the stream: {e}"))?;
            let env = Envelope::from_slice(&msg.payload).with_context(|| {
                format!("stream message on {}: not an event envelope", msg.subject)
            })?;
            stored::decode(&env)
                .with_context(|| format!("stream event {}: cannot be read", env.id))?;
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
                written += append_all(&log, std::mem::take(&mut batch)).await?;
            }
        }
        written += append_all(&log, batch).await?;
    }
    let head = log.head().seq;
    log.set_cursor(RELAY_CURSOR, head)?;
    log.flush()?;
    let state = crate::rebuild(&log)?;
    Ok(RebuildReport {
        events: written,
        incidents: state.len(),
        damaged_log_kept_at: kept,
        damaged_log_records: damaged_records,
    })
}

async fn append_all(log: &EventLog, batch: Vec<AppendRequest>) -> anyhow::Result<u64> {
    let log = log.clone();
    let n = batch.len() as u64;
    let results = tokio::task::spawn_blocking(move || log.append_batch(batch)).await?;
    for r in results {
        r?;
    }
    Ok(n)
}
