//! The checks a log must pass before it is used: the format marker, the stored head against
//! the record file and the last record, and the re-verification of the chain's tail.

use std::path::Path;

use crate::error::LogError;
use crate::file::RecordFile;
use crate::iter::{Records, Source};
use crate::layout::{self, HEAD_KEY, META_KEY};
use crate::log::Tip;
use crate::record::{Damage, GENESIS, Head};

/// The format a log's marker names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// [`layout::LOG_FORMAT`].
    Current,
    /// [`layout::INDEXED_LOG_FORMAT`]: the indexes in sled; switched on open.
    IndexedInSled,
    /// [`layout::LEGACY_LOG_FORMAT`]: records in sled; moved to the record file on open.
    Legacy,
}

/// Checks the format marker; on a brand-new (empty) database writes it when `create`.
pub(crate) fn check_meta(db: &sled::Db, path: &Path, create: bool) -> Result<Format, LogError> {
    let st = |e| LogError::storage(path, "reading", e);
    match db.get(META_KEY).map_err(st)? {
        Some(v) => match v.strip_prefix(layout::MAGIC) {
            Some([f]) if *f == layout::LOG_FORMAT => Ok(Format::Current),
            Some([f]) if *f == layout::INDEXED_LOG_FORMAT && create => Ok(Format::IndexedInSled),
            Some([f]) if *f == layout::LEGACY_LOG_FORMAT && create => Ok(Format::Legacy),
            Some([f]) => Err(LogError::UnsupportedFormat {
                path: path.to_path_buf(),
                found: *f,
                supported: layout::LOG_FORMAT,
            }),
            _ => Err(LogError::NotALog {
                path: path.to_path_buf(),
                reason: "its format marker is not an event log's".into(),
            }),
        },
        None if create && db.first().map_err(st)?.is_none() => {
            // a record file with records but an empty database: the database was lost, and a
            // new log started here would cut the records off
            let records = path.join(layout::RECORD_FILE);
            let held = match std::fs::metadata(&records) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
                Err(e) => return Err(LogError::storage(path, "reading the record file of", e)),
            };
            if held > 0 {
                return Err(LogError::corrupt(
                    path,
                    "the log",
                    format!(
                        "its record file holds {held} bytes, but its sled database is empty (lost?); \
                         refusing to start a new log over them"
                    ),
                ));
            }
            db.insert(META_KEY, layout::meta_value())
                .map_err(|e| LogError::storage(path, "initializing", e))?;
            db.flush()
                .map_err(|e| LogError::storage(path, "flushing", e))?;
            Ok(Format::Current)
        }
        None => Err(LogError::NotALog {
            path: path.to_path_buf(),
            reason: "it holds data but no event log format marker".into(),
        }),
    }
}

/// Switches a log of [`layout::INDEXED_LOG_FORMAT`] to the current format: its records and
/// head are read as they are, its index entries in sled are no longer written or read. The
/// marker switches first, so a build that reads the index from sled never opens the log once
/// this build has appended to it; the stale entries are removed after it.
pub(crate) fn switch_to_current(db: &sled::Db, path: &Path) -> Result<(), LogError> {
    db.insert(META_KEY, layout::meta_value())
        .map_err(|e| LogError::storage(path, "writing to", e))?;
    db.flush()
        .map_err(|e| LogError::storage(path, "flushing", e))?;
    Ok(())
}

/// The last batch entry: the seq of the first record of the last group commit and its offset.
fn last_batch(db: &sled::Db, path: &Path) -> Result<Option<(u64, u64)>, LogError> {
    match db.scan_prefix([layout::BATCH]).next_back() {
        None => Ok(None),
        Some(Err(e)) => Err(LogError::storage(path, "reading", e)),
        Some(Ok((k, v))) => match layout::batch_key_seq(&k).zip(layout::be_u64(&v)) {
            Some(entry) => Ok(Some(entry)),
            None => Err(LogError::corrupt(
                path,
                "the batch index",
                format!("the entry under {} cannot be read", hex::encode(&k)),
            )),
        },
    }
}

/// Reads the stored head and checks it against the record file: the file reaches the head's
/// end, and the last group commit's records (hashes checked) end exactly there with the head's
/// record. Bytes past the head's end are an append that never completed; opening cuts them off.
pub(crate) fn load_head(db: &sled::Db, file: &RecordFile, path: &Path) -> Result<Tip, LogError> {
    let damaged = |seq, reason: String| LogError::damaged(path, Damage::new(seq, reason));
    let stored = db
        .get(HEAD_KEY)
        .map_err(|e| LogError::storage(path, "reading", e))?;
    let last = last_batch(db, path)?;
    let file_len = file
        .len()
        .map_err(|e| LogError::storage(path, "reading the record file of", e))?;
    let Some(stored) = stored else {
        // no head: a new log, or one whose first append stopped before sled took its batch;
        // with indexed records it is a log whose head was lost
        if let Some((seq, _)) = last {
            return Err(damaged(
                seq,
                "stored, but the log has no head (its head was lost)".into(),
            ));
        }
        for (prefix, what) in [
            (layout::EVENT_ID, "event id index"),
            (layout::STREAM_INDEX, "stream index"),
            (layout::PROCESSED, "processed input ids"),
        ] {
            if let Some(kv) = db.scan_prefix([prefix]).next() {
                let (k, _) = kv.map_err(|e| LogError::storage(path, "reading", e))?;
                return Err(LogError::corrupt(
                    path,
                    "the head",
                    format!(
                        "the log has no head, but its {what} has entries (the first under {})",
                        hex::encode(&k)
                    ),
                ));
            }
        }
        return Ok(Tip::EMPTY);
    };
    let (head, end) =
        layout::decode_head(&stored).map_err(|r| LogError::corrupt(path, "the head", r))?;
    let tip = Tip { head, end };
    let Some((first, _)) = last else {
        if head.seq != 0 || end != 0 {
            return Err(damaged(
                1,
                format!(
                    "missing: the head says the log ends at record {}, but no record is indexed",
                    head.seq
                ),
            ));
        }
        if head.hash != GENESIS {
            return Err(LogError::corrupt(
                path,
                "the head",
                "the head of an empty log has a non-zero hash",
            ));
        }
        return Ok(tip);
    };
    if first > head.seq {
        return Err(damaged(
            first,
            format!(
                "indexed as the first of a group commit, but past the head, which says the log ends at record {}",
                head.seq
            ),
        ));
    }
    if file_len < end {
        return Err(damaged(
            head.seq,
            format!(
                "missing: the head says the records end at byte {end}, but the record file has {file_len} bytes"
            ),
        ));
    }
    let src = Source {
        db,
        file,
        path,
        end,
    };
    let mut records = Records::new(src, first, head.seq, None, true);
    let mut last_hash = None;
    while records.remaining() {
        last_hash = Some(records.step_with(|r| r.hash)?);
    }
    if last_hash != Some(head.hash) {
        return Err(damaged(
            head.seq,
            "its hash does not match the log's head".into(),
        ));
    }
    if let Some(pos) = records.position()
        && pos != end
    {
        return Err(damaged(
            head.seq,
            format!("it ends at byte {pos}, but the log's head says the records end at byte {end}"),
        ));
    }
    Ok(tip)
}

/// Re-verifies the chain of the last `n` records up to `head`.
pub(crate) fn verify_tail(src: Source<'_>, head: Head, n: usize) -> Result<(), LogError> {
    if n == 0 || head.seq == 0 {
        return Ok(());
    }
    let n = u64::try_from(n).unwrap_or(u64::MAX);
    let start = head.seq.saturating_sub(n) + 1;
    let (first, prev) = if start == 1 {
        (1, Head::GENESIS)
    } else {
        let mut before = Records::new(src, start - 1, start - 1, None, false);
        let prev = before.step_with(|r| Head {
            seq: r.seq,
            hash: r.hash,
        })?;
        (start, prev)
    };
    for rec in Records::new(src, first, head.seq, Some(prev), true) {
        rec?;
    }
    Ok(())
}
