//! Reading records back: [`Records`] walks a seq range in order, checking sequence numbers,
//! `prev_hash` links and (when asked) hashes as it decodes; [`StreamRecords`] walks one stream
//! through its version index. Both stop at the first damage, which they return as an error.

use std::path::Path;

use crate::error::LogError;
use crate::layout;
use crate::layout::RecordRef;
use crate::log::Inner;
use crate::record::{Damage, Head, Record, check_hash_parts, check_link_parts};

/// Records `start..=end` from sled, checked as they are decoded.
pub(crate) struct Records<'a> {
    iter: sled::Iter,
    path: &'a Path,
    next: u64,
    end: u64,
    /// The head the next record must follow, when known.
    prev: Option<Head>,
    check_hashes: bool,
    done: bool,
}

impl<'a> Records<'a> {
    pub(crate) fn new(
        db: &sled::Db,
        path: &'a Path,
        start: u64,
        end: u64,
        prev: Option<Head>,
        check_hashes: bool,
    ) -> Self {
        let start = start.max(1);
        Records {
            iter: db.range(layout::record_key(start)..=layout::record_key(end)),
            path,
            next: start,
            end,
            prev,
            check_hashes,
            done: start > end,
        }
    }

    fn step(&mut self) -> Result<Record, LogError> {
        self.step_with(|r| r.to_record())
    }

    /// Whether there is a record left to read.
    pub(crate) fn remaining(&self) -> bool {
        !self.done && self.next <= self.end
    }

    /// Reads, checks and hands the next record to `f` without copying it out of sled.
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

    fn step_inner<T>(&mut self, f: impl FnOnce(RecordRef<'_>) -> T) -> Result<T, LogError> {
        let expected = self.next;
        let damaged = |d| LogError::damaged(self.path, d);
        let (key, value) = match self.iter.next() {
            None => {
                return Err(damaged(Damage::new(
                    expected,
                    format!("missing (the log should hold records up to {})", self.end),
                )));
            }
            Some(Err(e)) => return Err(LogError::storage(self.path, "reading", e)),
            Some(Ok(kv)) => kv,
        };
        let seq = layout::record_key_seq(&key).ok_or_else(|| {
            damaged(Damage::new(
                expected,
                format!(
                    "in its place is a key that is not a record key ({})",
                    hex::encode(&key)
                ),
            ))
        })?;
        if seq != expected {
            return Err(damaged(Damage::new(
                expected,
                format!("missing (the next record stored is {seq})"),
            )));
        }
        let rec = layout::decode_record_ref(seq, &value).map_err(damaged)?;
        if let Some(prev) = &self.prev {
            check_link_parts(prev, rec.seq, &rec.prev_hash).map_err(damaged)?;
        }
        if self.check_hashes {
            check_hash_parts(rec.seq, &rec.prev_hash, rec.event, &rec.hash).map_err(damaged)?;
        }
        self.prev = Some(Head {
            seq,
            hash: rec.hash,
        });
        if seq >= self.end {
            self.done = true;
        }
        self.next = seq.saturating_add(1);
        Ok(f(rec))
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

/// One stream's records through its `v` index.
pub(crate) struct StreamRecords<'a> {
    inner: &'a Inner,
    iter: Option<sled::Iter>,
    prefix_len: usize,
    stream: String,
    next_version: u64,
    head: u64,
}

impl<'a> StreamRecords<'a> {
    /// The records of `stream` with seq <= `head`.
    pub(crate) fn new(inner: &'a Inner, stream: &str, head: u64) -> Self {
        let prefix = layout::stream_index_prefix(stream);
        StreamRecords {
            inner,
            prefix_len: prefix.as_ref().map_or(0, Vec::len),
            iter: prefix.map(|p| inner.db.scan_prefix(p)),
            stream: stream.to_owned(),
            next_version: 1,
            head,
        }
    }

    fn step(&mut self) -> Option<Result<Record, LogError>> {
        let path = &self.inner.path;
        let (key, value) = match self.iter.as_mut()?.next()? {
            Err(e) => return Some(Err(LogError::storage(path, "reading", e))),
            Ok(kv) => kv,
        };
        let what = || format!("the index of stream {}", self.stream);
        let Some(version) = key.get(self.prefix_len..).and_then(layout::be_u64) else {
            return Some(Err(LogError::corrupt(
                path,
                what(),
                format!("the key {} has no version", hex::encode(&key)),
            )));
        };
        if version != self.next_version {
            return Some(Err(LogError::corrupt(
                path,
                what(),
                format!(
                    "version {} is missing (the next entry is version {version})",
                    self.next_version
                ),
            )));
        }
        let Some(seq) = layout::be_u64(&value) else {
            return Some(Err(LogError::corrupt(
                path,
                what(),
                format!("the entry for version {version} is not a seq"),
            )));
        };
        if seq > self.head {
            // Written by an append that has not finished yet.
            return None;
        }
        let rec = match self.inner.get_record(seq) {
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
        let r = self.step();
        if !matches!(r, Some(Ok(_))) {
            self.iter = None;
        }
        r
    }
}
