//! What an append asks for and what it answers: [`ExpectedVersion`], [`NewEvent`],
//! [`AppendRequest`], [`Appended`], and the checks a request must pass on its own.

use crate::error::AppendError;
use crate::layout::MAX_NAME_LEN;

/// What an append expects the stream's current version to be (the number of events already in
/// it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    #[default]
    Any,
    /// The stream must have no events yet; the same as `Exact(0)`.
    NoStream,
    /// The stream must have exactly this many events.
    Exact(u64),
}

impl ExpectedVersion {
    /// `Err(expected)` when a stream at `actual` does not meet this expectation.
    pub(crate) fn check(self, actual: u64) -> Result<(), u64> {
        match self {
            ExpectedVersion::Any => Ok(()),
            ExpectedVersion::NoStream if actual == 0 => Ok(()),
            ExpectedVersion::NoStream => Err(0),
            ExpectedVersion::Exact(n) if n == actual => Ok(()),
            ExpectedVersion::Exact(n) => Err(n),
        }
    }
}

/// One event to append: its unique id (e.g. a UUIDv7 string) and its exact canonical bytes
/// (opaque to this crate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub id: String,
    pub bytes: Vec<u8>,
}

impl NewEvent {
    pub fn new(id: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        NewEvent {
            id: id.into(),
            bytes: bytes.into(),
        }
    }
}

/// Events to append to one stream, with the version the stream is expected to be at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// Ids of input messages this append consumed; recorded atomically with the events, so
    /// `is_processed(id)` is true afterwards. A request may carry processed ids and no events.
    pub processed: Vec<String>,
}

impl AppendRequest {
    /// A request with no processed ids.
    pub fn new(
        stream: impl Into<String>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        AppendRequest {
            stream: stream.into(),
            expected,
            events,
            processed: Vec::new(),
        }
    }

    /// The same request, also recording `ids` as processed.
    pub fn with_processed(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.processed.extend(ids.into_iter().map(Into::into));
        self
    }

    /// Refuses what can never be stored: empty or over-long names and ids.
    pub(crate) fn validate(&self) -> Result<(), AppendError> {
        if self.stream.is_empty() {
            return Err(AppendError::Invalid("the stream name is empty".into()));
        }
        if self.stream.len() > MAX_NAME_LEN {
            return Err(AppendError::Invalid(format!(
                "the stream name is longer than {MAX_NAME_LEN} bytes"
            )));
        }
        for e in &self.events {
            if e.id.is_empty() {
                return Err(AppendError::Invalid(format!(
                    "an event for stream {} has an empty id",
                    self.stream
                )));
            }
            if e.id.len() > MAX_NAME_LEN {
                return Err(AppendError::Invalid(format!(
                    "an event id is longer than {MAX_NAME_LEN} bytes"
                )));
            }
        }
        if self.processed.iter().any(String::is_empty) {
            return Err(AppendError::Invalid("a processed input id is empty".into()));
        }
        Ok(())
    }
}

/// Where an accepted request landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Seq of the first event written. When the request had no events: the head's seq.
    pub first_seq: u64,
    /// Seq of the last event written. When the request had no events: the head's seq.
    pub last_seq: u64,
    /// The stream's version after the request.
    pub stream_version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        assert_eq!(ExpectedVersion::Any.check(5), Ok(()));
        assert_eq!(ExpectedVersion::NoStream.check(0), Ok(()));
        assert_eq!(ExpectedVersion::NoStream.check(1), Err(0));
        assert_eq!(ExpectedVersion::Exact(2).check(2), Ok(()));
        assert_eq!(ExpectedVersion::Exact(2).check(3), Err(2));
    }

    #[test]
    fn validation() {
        let ok = AppendRequest::new("s", ExpectedVersion::Any, vec![NewEvent::new("a", "x")]);
        assert!(ok.validate().is_ok());
        let mut r = ok.clone();
        r.stream.clear();
        assert!(matches!(r.validate(), Err(AppendError::Invalid(_))));
        let mut r = ok.clone();
        r.events[0].id.clear();
        assert!(matches!(r.validate(), Err(AppendError::Invalid(_))));
        let r = ok.clone().with_processed([""]);
        assert!(matches!(r.validate(), Err(AppendError::Invalid(_))));
        let mut r = ok;
        r.stream = "x".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(r.validate(), Err(AppendError::Invalid(_))));
    }
}
