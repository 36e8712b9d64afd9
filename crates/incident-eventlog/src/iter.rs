//! Reading records back: [`Records`] walks a seq range of the record file in order, checking
//! sequence numbers, `prev_hash` links and (when asked) hashes as it decodes; [`StreamRecords`]
//! walks one stream through its version index. Both stop at the first damage, which they
//! return as an error.

use std::path::Path;

use crate::error::LogError;
use crate::file::{FrameError, FrameReader, RecordFile};
use crate::layout;
use crate::layout::RecordRef;
use crate::log::{Inner, Tip};
use crate::record::{Damage, Head, Record, check_hash_parts, check_link_parts};

/// Where a log's records are: sled (for the batch index), the record file, and the end of the
/// file the head names.
#[derive(Clone, Copy)]
pub(crate) struct Source<'a> {
    pub(crate) db: &'a sled::Db,
    pub(crate) file: &'a RecordFile,
    pub(crate) path: &'a Path,
    /// Where the records up to the head end in the file.
    pub(crate) end: u64,
}

/// Records `start..=end` from the record file, checked as they are decoded.
pub(crate) struct Records<'a> {
    src: Source<'a>,
    /// Positioned at the first record on the first step.
    reader: Option<FrameReader<'a>>,
    next: u64,
    end: u64,
    /// The head the next record must follow, when known.
    prev: Option<Head>,
    check_hashes: bool,
    done: bool,
    /// Offset of the frame of the record read last.
    last_offset: u64,
}

impl<'a> Records<'a> {
    pub(crate) fn new(
        src: Source<'a>,
        start: u64,
        end: u64,
        prev: Option<Head>,
        check_hashes: bool,
    ) -> Self {
        let start = start.max(1);
        Records {
            src,
            reader: None,
            next: start,
            end,
            prev,
            check_hashes,
            done: start > end,
            last_offset: 0,
        }
    }

    pub(crate) fn step(&mut self) -> Result<Record, LogError> {
        self.step_with(|r| r.to_record())
    }

    /// Whether there is a record left to read.
    pub(crate) fn remaining(&self) -> bool {
        !self.done && self.next <= self.end
    }

    /// Offset of the frame of the record read last.
    pub(crate) fn last_offset(&self) -> u64 {
        self.last_offset
    }

    /// Offset just past the frame of the record read last (where the next frame starts).
    pub(crate) fn position(&self) -> Option<u64> {
        self.reader.as_ref().map(FrameReader::position)
    }

    /// Reads, checks and hands the next record to `f` without copying it.
    pub(crate) fn step_with<T>(
        &mut self,
        f: impl FnOnce(RecordRef<'_>) -> T,
    ) -> Result<T, LogError> {
        let r = self.step_inner(f);
        if r.is_err() {
            self.done = true;
        }
        r
    }

    fn damaged(&self, seq: u64, reason: impl Into<String>) -> LogError {
        LogError::damaged(self.src.path, Damage::new(seq, reason))
    }

    fn frame_error(&self, seq: u64, e: FrameError) -> LogError {
        frame_error(self.src, seq, e)
    }

    /// A reader at the frame of record `self.next`: from the last batch entry at or before it,
    /// skipping the records before it.
    fn position_reader(&mut self) -> Result<(), LogError> {
        let start = self.next;
        let path = self.src.path;
        let entry = self
            .src
            .db
            .range(layout::batch_key(1)..=layout::batch_key(start))
            .next_back()
            .transpose()
            .map_err(|e| LogError::storage(path, "reading", e))?;
        let Some((key, value)) = entry else {
            return Err(LogError::corrupt(
                path,
                "the batch index",
                format!("it has no entry at or before record {start}"),
            ));
        };
        let (first, offset) = layout::batch_key_seq(&key)
            .zip(layout::be_u64(&value))
            .ok_or_else(|| {
                LogError::corrupt(
                    path,
                    "the batch index",
                    format!("the entry under {} cannot be read", hex::encode(&key)),
                )
            })?;
        let mut reader = FrameReader::new(self.src.file, offset, self.src.end);
        for seq in first..start {
            let found = match reader.next_frame() {
                Ok(Some((_, value))) => value.get(1..9).and_then(layout::be_u64),
                Ok(None) => return Err(self.damaged(seq, "missing (the log ends before it)")),
                Err(e) => return Err(self.frame_error(seq, e)),
            };
            if found != Some(seq) {
                return Err(self.damaged(
                    seq,
                    match found {
                        Some(other) => format!("where it should be, record {other} is stored"),
                        None => "too short to decode".to_string(),
                    },
                ));
            }
        }
        self.reader = Some(reader);
        Ok(())
    }

    fn step_inner<T>(&mut self, f: impl FnOnce(RecordRef<'_>) -> T) -> Result<T, LogError> {
        let expected = self.next;
        if self.reader.is_none() {
            self.position_reader()?;
        }
        let path = self.src.path;
        let end_offset = self.src.end;
        let Some(reader) = self.reader.as_mut() else {
            return Err(self.damaged(expected, "missing"));
        };
        let src = self.src;
        let frame = match reader.next_frame() {
            Ok(f) => f,
            Err(e) => return Err(frame_error(src, expected, e)),
        };
        let Some((offset, value)) = frame else {
            return Err(LogError::damaged(
                path,
                Damage::new(
                    expected,
                    format!(
                        "missing (the log should hold records up to {}, but its records end at byte {end_offset})",
                        self.end
                    ),
                ),
            ));
        };
        let damaged = |d| LogError::damaged(path, d);
        let rec = layout::decode_record_ref(expected, value).map_err(damaged)?;
        if let Some(prev) = &self.prev {
            check_link_parts(prev, rec.seq, &rec.prev_hash).map_err(damaged)?;
        }
        if self.check_hashes {
            check_hash_parts(rec.seq, &rec.prev_hash, rec.event, &rec.hash).map_err(damaged)?;
        }
        let seq = rec.seq;
        self.prev = Some(Head {
            seq,
            hash: rec.hash,
        });
        self.last_offset = offset;
        if seq >= self.end {
            self.done = true;
        }
        self.next = seq.saturating_add(1);
        Ok(f(rec))
    }
}

/// The damage (or I/O error) a frame read stopped at, for record `seq`.
fn frame_error(src: Source<'_>, seq: u64, e: FrameError) -> LogError {
    let damaged = |reason: String| LogError::damaged(src.path, Damage::new(seq, reason));
    match e {
        FrameError::Truncated { at } => damaged(format!(
            "missing: the record file ends before byte {}, where the log ends",
            src.end.max(at)
        )),
        FrameError::Overrun { at, len: Some(len) } => damaged(format!(
            "its frame at byte {at} ({len} bytes) runs past the end of the log at byte {}",
            src.end
        )),
        FrameError::Overrun { at, len: None } => damaged(format!(
            "its frame at byte {at} is cut short by the end of the log at byte {}",
            src.end
        )),
        FrameError::TooLong { at, len } => damaged(format!(
            "its frame at byte {at} says it is {len} bytes long, more than any record can be"
        )),
        FrameError::Io(e) => LogError::storage(src.path, "reading the record file of", e),
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next > self.end {
            return None;
        }
        Some(self.step())
    }
}

/// One stream's records, at the seqs the index holds for it.
pub(crate) struct StreamRecords<'a> {
    inner: &'a Inner,
    /// Seqs of the versions not read yet, in order (version `next_version` first).
    seqs: std::vec::IntoIter<u64>,
    stream: String,
    next_version: u64,
    tip: Tip,
    done: bool,
}

impl<'a> StreamRecords<'a> {
    /// The records of `stream` up to `tip`.
    pub(crate) fn new(inner: &'a Inner, stream: &str, tip: Tip) -> Self {
        let seqs = inner.index().seqs(crate::index::key(stream), tip.head.seq);
        StreamRecords {
            inner,
            seqs: seqs.into_iter(),
            stream: stream.to_owned(),
            next_version: 1,
            tip,
            done: false,
        }
    }

    fn step(&mut self) -> Option<Result<Record, LogError>> {
        let path = &self.inner.path;
        let seq = self.seqs.next()?;
        let version = self.next_version;
        let rec = match self.inner.get_record(self.tip, seq) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Some(Err(LogError::damaged(
                    path,
                    Damage::new(
                        seq,
                        format!(
                            "missing (indexed as version {version} of stream {})",
                            self.stream
                        ),
                    ),
                )));
            }
            Err(e) => return Some(Err(e)),
        };
        if rec.stream != self.stream || rec.version != version {
            return Some(Err(LogError::damaged(
                path,
                Damage::new(
                    seq,
                    format!(
                        "indexed as version {version} of stream {}, but holds version {} of stream {}",
                        self.stream, rec.version, rec.stream
                    ),
                ),
            )));
        }
        self.next_version += 1;
        Some(Ok(rec))
    }
}

impl Iterator for StreamRecords<'_> {
    type Item = Result<Record, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.step();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}
