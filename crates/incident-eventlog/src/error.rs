//! The crate's errors: [`LogError`] for opening, reading and maintaining a log, and
//! [`AppendError`] for one append request. Damage always names the log and the record.

use std::path::{Path, PathBuf};

use crate::record::Damage;

/// " at <path>" when the damage came from a log on disk.
fn at(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" at {}", p.display()),
        None => String::new(),
    }
}

/// What can go wrong opening, reading or maintaining a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// A record (or the head, or a snapshot) is missing or does not match its contents.
    #[error(
        "event log{at} is damaged: {0}; rebuild it from JetStream (see README)",
        at = at(&.0.path)
    )]
    Damaged(Damage),
    /// A value that is not a record (an index entry, a cursor, a stream version) cannot be read.
    #[error(
        "event log at {} is damaged: {what}: {reason}; rebuild it from JetStream (see README)",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        what: String,
        reason: String,
    },
    /// The folder holds a sled database that is not an event log.
    #[error("{} is not an incident event log: {reason}", path.display())]
    NotALog { path: PathBuf, reason: String },
    /// The log was written in a format this build cannot read.
    #[error(
        "event log at {} has format {found}; this build reads format {supported}",
        path.display()
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: u8,
        supported: u8,
    },
    /// sled failed (I/O, or the database could not be opened).
    #[error("event log storage error: {0}")]
    Storage(String),
}

impl LogError {
    pub(crate) fn damaged(path: &Path, damage: Damage) -> Self {
        LogError::Damaged(damage.at(path))
    }

    pub(crate) fn corrupt(path: &Path, what: impl Into<String>, reason: impl Into<String>) -> Self {
        LogError::Corrupt {
            path: path.to_path_buf(),
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn storage(path: &Path, doing: &str, e: impl std::fmt::Display) -> Self {
        LogError::Storage(format!("{doing} {}: {e}", path.display()))
    }

    /// The damage, when this error is about a broken record.
    pub fn damage(&self) -> Option<&Damage> {
        match self {
            LogError::Damaged(d) => Some(d),
            _ => None,
        }
    }
}

/// Why one append request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The stream is not at the version the request expected; nothing was written.
    #[error("stream {stream}: expected version {expected}, but it is at version {actual}")]
    Conflict {
        stream: String,
        expected: u64,
        actual: u64,
    },
    /// An event with this id is already in the log (or earlier in the same batch).
    #[error("event id {0} is already in the log")]
    DuplicateEventId(String),
    /// The request itself is malformed (an empty stream name or id, a name too long).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The write or the flush failed. After a failed flush the events may be in the log even
    /// though this is returned: re-read the log (its in-memory head always equals what sled
    /// holds).
    #[error("event log storage error: {0}")]
    Storage(String),
    /// The log's stored state needed for this request is damaged.
    #[error(
        "event log{at} is damaged: {0}; rebuild it from JetStream (see README)",
        at = at(&.0.path)
    )]
    Damaged(Damage),
}

impl From<LogError> for AppendError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Damaged(d) => AppendError::Damaged(d),
            LogError::Storage(s) => AppendError::Storage(s),
            other => AppendError::Storage(other.to_string()),
        }
    }
}
