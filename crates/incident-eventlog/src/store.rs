//! [`EventStore`]: the log's operations behind a trait, so the storage engine can be swapped
//! (or a service can hold a `dyn EventStore`). [`EventLog`] implements it.

use crate::append::{AppendRequest, Appended};
use crate::error::{AppendError, LogError};
use crate::log::EventLog;
use crate::record::{Head, Record};

/// An append-only, hash-chained event log. See [`EventLog`] for the meaning of each operation.
pub trait EventStore: Send + Sync {
    /// Group commit: each request checked on its own, all accepted ones written atomically and
    /// flushed once.
    fn append_batch(&self, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, AppendError>>;

    /// One request.
    fn append(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        self.append_batch(vec![req])
            .pop()
            .unwrap_or_else(|| Err(AppendError::Storage("the append returned no result".into())))
    }

    /// Records with seq >= `seq`, in order, up to the head.
    fn read_from(&self, seq: u64) -> Box<dyn Iterator<Item = Result<Record, LogError>> + '_>;

    /// One stream's records in version order.
    fn read_stream(&self, stream: &str) -> Box<dyn Iterator<Item = Result<Record, LogError>> + '_>;

    /// The last durable record's seq and hash.
    fn head(&self) -> Head;

    /// The number of events in `stream`.
    fn stream_version(&self, stream: &str) -> Result<u64, LogError>;

    /// The record at `seq`, `None` past the head.
    fn get(&self, seq: u64) -> Result<Option<Record>, LogError>;

    /// The seq of the record holding the event `event_id`.
    fn seq_of_event(&self, event_id: &str) -> Result<Option<u64>, LogError>;

    /// Whether an append recorded `input_id` as processed.
    fn is_processed(&self, input_id: &str) -> Result<bool, LogError>;

    /// The cursor `name`; 0 when never set.
    fn cursor(&self, name: &str) -> Result<u64, LogError>;

    /// Sets the cursor `name` (written, not flushed).
    fn set_cursor(&self, name: &str, seq: u64) -> Result<(), LogError>;

    /// Stores a checksummed snapshot taken at `seq`, flushed.
    fn save_snapshot(&self, name: &str, seq: u64, bytes: &[u8]) -> Result<(), LogError>;

    /// The snapshot `name` and its seq; damage is an error.
    fn load_snapshot(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>, LogError>;

    /// Verifies the whole log; returns the head.
    fn verify(&self) -> Result<Head, LogError>;

    /// Flushes everything written.
    fn flush(&self) -> Result<(), LogError>;
}

impl EventStore for EventLog {
    fn append_batch(&self, reqs: Vec<AppendRequest>) -> Vec<Result<Appended, AppendError>> {
        EventLog::append_batch(self, reqs)
    }

    fn append(&self, req: AppendRequest) -> Result<Appended, AppendError> {
        EventLog::append(self, req)
    }

    fn read_from(&self, seq: u64) -> Box<dyn Iterator<Item = Result<Record, LogError>> + '_> {
        self.boxed_read_from(seq)
    }

    fn read_stream(&self, stream: &str) -> Box<dyn Iterator<Item = Result<Record, LogError>> + '_> {
        self.boxed_read_stream(stream)
    }

    fn head(&self) -> Head {
        EventLog::head(self)
    }

    fn stream_version(&self, stream: &str) -> Result<u64, LogError> {
        EventLog::stream_version(self, stream)
    }

    fn get(&self, seq: u64) -> Result<Option<Record>, LogError> {
        EventLog::get(self, seq)
    }

    fn seq_of_event(&self, event_id: &str) -> Result<Option<u64>, LogError> {
        EventLog::seq_of_event(self, event_id)
    }

    fn is_processed(&self, input_id: &str) -> Result<bool, LogError> {
        EventLog::is_processed(self, input_id)
    }

    fn cursor(&self, name: &str) -> Result<u64, LogError> {
        EventLog::cursor(self, name)
    }

    fn set_cursor(&self, name: &str, seq: u64) -> Result<(), LogError> {
        EventLog::set_cursor(self, name, seq)
    }

    fn save_snapshot(&self, name: &str, seq: u64, bytes: &[u8]) -> Result<(), LogError> {
        EventLog::save_snapshot(self, name, seq, bytes)
    }

    fn load_snapshot(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>, LogError> {
        EventLog::load_snapshot(self, name)
    }

    fn verify(&self) -> Result<Head, LogError> {
        EventLog::verify(self)
    }

    fn flush(&self) -> Result<(), LogError> {
        EventLog::flush(self)
    }
}
