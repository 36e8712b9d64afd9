//! What every `--rebuild-log-from-jetstream` shares: writing the new log beside the damaged one
//! and swapping them only once it is complete ([`Staging`]), connecting once, reading a stream
//! from its first message to the last one stored when the read began (with stream sequences),
//! and restarting a durable consumer just after a given sequence.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull};
use bytes::Bytes;
use futures::StreamExt;

use crate::NatsAuth;
use crate::consumer::ConsumerSpec;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("{0}")]
    Io(String),
    #[error("connecting to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("reading stream {stream}: {reason}")]
    Read { stream: String, reason: String },
    #[error("restarting consumer {durable} on {stream}: {reason}")]
    Consumer {
        stream: String,
        durable: String,
        reason: String,
    },
}

/// Where the damaged log was moved, and how many records it still showed (None when it could
/// not be opened at all).
#[derive(Debug, Clone)]
pub struct SetAside {
    pub path: PathBuf,
    pub readable_records: Option<u64>,
}

/// Moves `log_dir` to `<log_dir>.damaged-<UTC time>` next to it, if it exists, so nothing is
/// deleted; the caller writes a new log at `log_dir`.
fn set_aside(log_dir: &Path) -> Result<Option<SetAside>, RebuildError> {
    if !log_dir.exists() {
        return Ok(None);
    }
    let name = log_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "log".into());
    let stamp = format!(
        "{name}.damaged-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    );
    // a second rebuild within the same second must not land on (or fail at) the first one's
    let aside = (1u32..)
        .map(|n| match n {
            1 => log_dir.with_file_name(&stamp),
            n => log_dir.with_file_name(format!("{stamp}-{n}")),
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| log_dir.with_file_name(&stamp));
    std::fs::rename(log_dir, &aside).map_err(|e| {
        RebuildError::Io(format!(
            "moving {} aside to {}: {e}",
            log_dir.display(),
            aside.display()
        ))
    })?;
    let readable_records = readable_records(&aside);
    Ok(Some(SetAside {
        path: aside,
        readable_records,
    }))
}

/// The new log, written at `<log_dir>.rebuilding` while the damaged one stays in place (so the
/// service keeps refusing to start and a failed rebuild can simply be run again). Dropped
/// without [`Staging::commit`], the incomplete copy is removed.
#[derive(Debug)]
pub struct Staging {
    log_dir: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staging {
    /// Refuses while a running service holds `log_dir`, or while another rebuild's copy exists.
    pub fn begin(log_dir: &Path) -> Result<Self, RebuildError> {
        // a log too damaged to open is what a rebuild is for; a held lock is not
        if log_dir.exists()
            && let Err(e) = incident_eventlog::open_db(log_dir)
            && e.to_string().contains("could not acquire lock")
        {
            return Err(RebuildError::Io(format!(
                "{} is in use: stop the service before rebuilding its log",
                log_dir.display()
            )));
        }
        let name = log_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "log".into());
        let path = log_dir.with_file_name(format!("{name}.rebuilding"));
        if path.exists() {
            return Err(RebuildError::Io(format!(
                "{} exists: another rebuild is running, or one was interrupted (then it is an \
                 incomplete copy: remove it and run the rebuild again)",
                path.display()
            )));
        }
        if let Some(parent) = log_dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| RebuildError::Io(format!("creating {}: {e}", parent.display())))?;
        }
        Ok(Self {
            log_dir: log_dir.to_owned(),
            path,
            committed: false,
        })
    }

    /// Where the new log is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses an empty new log in place of one that still shows records (the streams were the
    /// wrong ones, or lost). Called before anything outside the log is changed.
    pub fn check_not_empty(&self, new_records: u64) -> Result<(), RebuildError> {
        if new_records == 0
            && let Some(old) = readable_records(&self.log_dir)
            && old > 0
        {
            return Err(RebuildError::Io(format!(
                "the streams hold nothing for this log, but {} still shows {old} records: \
                 not replacing it (check NATS_URL and that the streams are the ones it was \
                 relayed to)",
                self.log_dir.display()
            )));
        }
        Ok(())
    }

    /// Moves the damaged log aside (kept, never deleted) and the new one into its place. The
    /// new log must be closed (every handle dropped) first.
    pub fn commit(mut self) -> Result<Option<SetAside>, RebuildError> {
        let aside = set_aside(&self.log_dir)?;
        std::fs::rename(&self.path, &self.log_dir).map_err(|e| {
            RebuildError::Io(format!(
                "moving the rebuilt log {} to {}: {e}",
                self.path.display(),
                self.log_dir.display()
            ))
        })?;
        self.committed = true;
        Ok(aside)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Refuses to start a service while a rebuild of its log is running or was interrupted (its
/// copy `<log_dir>.rebuilding` exists): the log in place may be the damaged one, or missing if
/// the rebuild stopped between moving it aside and moving the new one in.
pub fn refuse_if_rebuilding(log_dir: &Path) -> Result<(), RebuildError> {
    let name = log_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "log".into());
    let staging = log_dir.with_file_name(format!("{name}.rebuilding"));
    if staging.exists() {
        return Err(RebuildError::Io(format!(
            "{} exists: a rebuild of this log is running or was interrupted; let it finish, or \
             remove that folder and run the rebuild again",
            staging.display()
        )));
    }
    Ok(())
}

/// How many records a (possibly damaged) log still shows: the frames of its record file, or
/// for a log an earlier build wrote (format 1, not moved because it is damaged) its records in
/// sled; None when it cannot be opened.
fn readable_records(log_dir: &Path) -> Option<u64> {
    use incident_eventlog::layout;
    if !log_dir.exists() {
        return None;
    }
    let db = incident_eventlog::open_db(log_dir).ok()?;
    let meta = db.get(layout::META_KEY).ok()?;
    let legacy = meta
        .is_some_and(|m| m.strip_prefix(layout::MAGIC) == Some(&[layout::LEGACY_LOG_FORMAT][..]));
    if legacy {
        return Some(
            db.scan_prefix([layout::RECORD])
                .filter_map(Result::ok)
                .count() as u64,
        );
    }
    match layout::record_frames(log_dir) {
        Ok(frames) => Some(frames.len() as u64),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Err(_) => None,
    }
}

/// One connection for the rebuild (no retry loop: a rebuild without NATS fails at once).
pub async fn connect_once(url: &str, auth: &NatsAuth) -> Result<jetstream::Context, RebuildError> {
    let err = |reason: String| RebuildError::Connect {
        url: url.to_owned(),
        reason,
    };
    let addrs = crate::connect::server_addrs(url).map_err(|e| err(e.to_string()))?;
    let client = auth
        .apply(async_nats::ConnectOptions::new())
        .await
        .map_err(|e| err(e.to_string()))?
        .connection_timeout(Duration::from_secs(5))
        .connect(addrs)
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(jetstream::new(client))
}

/// Appends a batch of the new log; answers how many requests were written.
pub fn append_all(
    log: &incident_eventlog::EventLog,
    batch: Vec<incident_eventlog::AppendRequest>,
) -> Result<u64, String> {
    let n = batch.len() as u64;
    for r in log.append_batch(batch) {
        r.map_err(|e| e.to_string())?;
    }
    Ok(n)
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub sequence: u64,
    pub subject: String,
    pub payload: Bytes,
    pub headers: Option<HeaderMap>,
}

/// Calls `f` with every message of `stream`, in stream order, up to the last message stored
/// when the read began; answers how many were read. A stream that does not exist has none.
pub async fn read_all<F>(
    js: &jetstream::Context,
    stream: &str,
    mut f: F,
) -> Result<u64, RebuildError>
where
    F: FnMut(StoredMessage) -> Result<(), String>,
{
    let err = |reason: String| RebuildError::Read {
        stream: stream.to_owned(),
        reason,
    };
    let mut handle = match js.get_stream(stream).await {
        Ok(s) => s,
        Err(e) => return Err(err(e.to_string())),
    };
    let info = handle.info().await.map_err(|e| err(e.to_string()))?;
    let (last, stored) = (info.state.last_sequence, info.state.messages);
    // a stream whose messages are all gone (aged out) still has a last sequence: nothing would
    // ever be delivered up to it
    if last == 0 || stored == 0 {
        return Ok(0);
    }
    let consumer = handle
        .create_consumer(pull::OrderedConfig {
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut messages = consumer.messages().await.map_err(|e| err(e.to_string()))?;
    let mut read = 0u64;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .map_err(|_| err("the stream stopped delivering".into()))?
            .ok_or_else(|| err("the stream ended early".into()))?
            .map_err(|e| err(e.to_string()))?;
        let sequence = msg.info().map_err(|e| err(e.to_string()))?.stream_sequence;
        f(StoredMessage {
            sequence,
            subject: msg.subject.to_string(),
            payload: msg.payload.clone(),
            headers: msg.headers.clone(),
        })
        .map_err(|reason| err(format!("message {sequence}: {reason}")))?;
        read += 1;
        if sequence >= last {
            return Ok(read);
        }
    }
}

/// The stream sequence up to which `durable` on `stream` has acknowledged everything (None
/// when there is no such consumer).
pub async fn ack_floor(
    js: &jetstream::Context,
    stream: &str,
    durable: &str,
) -> Result<Option<u64>, RebuildError> {
    let err = |reason: String| RebuildError::Consumer {
        stream: stream.to_owned(),
        durable: durable.to_owned(),
        reason,
    };
    let handle = js
        .get_stream(stream)
        .await
        .map_err(|e| err(e.to_string()))?;
    let info = match handle.consumer_info(durable).await {
        Ok(info) => info,
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    if info.ack_floor.consumer_sequence > 0 {
        return Ok(Some(info.ack_floor.stream_sequence));
    }
    // nothing acknowledged since it was created: the server reports a floor of 0 even for a
    // consumer that starts further on (as one a rebuild created does)
    Ok(Some(match info.config.deliver_policy {
        DeliverPolicy::ByStartSequence { start_sequence } => start_sequence.saturating_sub(1),
        _ => 0,
    }))
}

/// Where a consumer restarts: just after the last input the new log holds, or earlier when the
/// old durable had not acknowledged everything up to there (it is never moved forward; what is
/// delivered again and already in the log is skipped by its processed id).
pub fn restart_point(last_written: u64, ack_floor: Option<u64>) -> u64 {
    ack_floor.map_or(last_written, |floor| floor.min(last_written))
}

/// Deletes the durable consumer of `spec` (if any) and creates it again so that its first
/// delivery is the message after `after_sequence` (everything when it is 0).
pub async fn restart_consumer_after(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    after_sequence: u64,
) -> Result<(), RebuildError> {
    let err = |reason: String| RebuildError::Consumer {
        stream: spec.stream.clone(),
        durable: spec.durable.clone(),
        reason,
    };
    let stream = js
        .get_stream(&spec.stream)
        .await
        .map_err(|e| err(e.to_string()))?;
    match stream.consumer_info(&spec.durable).await {
        Ok(_) => {
            stream
                .delete_consumer(&spec.durable)
                .await
                .map_err(|e| err(e.to_string()))?;
        }
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {}
        // not knowing whether it exists (a timeout): do not guess
        Err(e) => return Err(err(e.to_string())),
    }
    let mut config = spec.config();
    config.deliver_policy = if after_sequence == 0 {
        DeliverPolicy::All
    } else {
        DeliverPolicy::ByStartSequence {
            start_sequence: after_sequence + 1,
        }
    };
    stream
        .create_consumer(config)
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}
