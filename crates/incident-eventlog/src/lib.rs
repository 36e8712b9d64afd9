//! `incident-eventlog`: each service's authoritative, append-only event log: records in an
//! append-only record file, the head and the batch index in sled, the event id and stream
//! indexes in memory (built from the records on open, saved with each snapshot).
//!
//! Owns the hash chain over the log's records, optimistic concurrency per stream (a stream is
//! one incident), group-commit appends, replay, verification, named cursors (such as the
//! relay's position), the index of processed input ids for idempotent consumers, and
//! checksummed snapshots. Synchronous: async services call it from `spawn_blocking`.
//!
//! Each record holds its global seq, its stream and version, the event's id, the exact event
//! bytes, the previous record's hash and `hash = sha256(prev_hash || event)` (genesis: 32 zero
//! bytes). The layout on disk is documented in [`layout`].
//!
//! ```
//! use incident_eventlog::*;
//! let dir = tempfile::tempdir().unwrap();
//! let log = EventLog::open(dir.path()).unwrap();
//! let done = log
//!     .append(AppendRequest::new(
//!         "INC-1",
//!         ExpectedVersion::NoStream,
//!         vec![NewEvent::new("ev-1", br#"{"type":"opened"}"#.to_vec())],
//!     ))
//!     .unwrap();
//! assert_eq!((done.first_seq, done.stream_version), (1, 1));
//! let records: Vec<Record> = log.read_from(1).collect::<Result<_, _>>().unwrap();
//! assert_eq!(verify_chain(Head::GENESIS, records).unwrap(), log.head());
//! ```

mod append;
mod checks;
mod error;
mod file;
mod index;
mod iter;
pub mod layout;
mod log;
mod migrate;
mod record;
mod store;

pub use append::{AppendRequest, Appended, ExpectedVersion, NewEvent};
pub use error::{AppendError, LogError};
pub use layout::RecordRef;
pub use log::{EventLog, Options, open_db};
pub use record::{Damage, GENESIS, Head, Record, chain_hash, verify_chain};
pub use store::EventStore;
