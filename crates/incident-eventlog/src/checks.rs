//! The checks a log must pass before it is used: the format marker, the stored head against
//! the last stored record, and the re-verification of the chain's tail.

use std::path::Path;

use crate::error::LogError;
use crate::iter::Records;
use crate::layout::{self, HEAD_KEY, META_KEY};
use crate::record::{Damage, GENESIS, Head};

/// Checks the format marker; on a brand-new (empty) database writes it when `create`.
pub(crate) fn check_meta(db: &sled::Db, path: &Path, create: bool) -> Result<(), LogError> {
    let st = |e| LogError::storage(path, "reading", e);
    match db.get(META_KEY).map_err(st)? {
        Some(v) => match v.strip_prefix(layout::MAGIC) {
            Some([f]) if *f == layout::LOG_FORMAT => Ok(()),
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
            db.insert(META_KEY, layout::meta_value())
                .map_err(|e| LogError::storage(path, "initializing", e))?;
            db.flush()
                .map_err(|e| LogError::storage(path, "flushing", e))?;
            Ok(())
        }
        None => Err(LogError::NotALog {
            path: path.to_path_buf(),
            reason: "it holds data but no event log format marker".into(),
        }),
    }
}

/// The last key with the record prefix, decoded to its seq.
fn last_record(db: &sled::Db, path: &Path) -> Result<Option<(u64, sled::IVec)>, LogError> {
    match db.scan_prefix([layout::RECORD]).next_back() {
        None => Ok(None),
        Some(Err(e)) => Err(LogError::storage(path, "reading", e)),
        Some(Ok((k, v))) => match layout::record_key_seq(&k) {
            Some(seq) => Ok(Some((seq, v))),
            None => Err(LogError::corrupt(
                path,
                "the record keys",
                format!("the key {} is not a record key", hex::encode(&k)),
            )),
        },
    }
}

/// Reads the stored head and checks it against the last stored record.
pub(crate) fn load_head(db: &sled::Db, path: &Path) -> Result<Head, LogError> {
    let damaged = |seq, reason: String| LogError::damaged(path, Damage::new(seq, reason));
    let stored = db
        .get(HEAD_KEY)
        .map_err(|e| LogError::storage(path, "reading", e))?;
    let last = last_record(db, path)?;
    let Some(stored) = stored else {
        return match last {
            None => Ok(Head::GENESIS),
            Some((seq, _)) => Err(damaged(
                seq,
                "stored, but the log has no head (its head was lost)".into(),
            )),
        };
    };
    let head = layout::decode_head(&stored).map_err(|r| LogError::corrupt(path, "the head", r))?;
    let last_seq = last.as_ref().map_or(0, |(s, _)| *s);
    if last_seq < head.seq {
        return Err(damaged(
            last_seq + 1,
            format!(
                "missing: the head says the log ends at record {}, but the last record stored is {}",
                head.seq, last_seq
            ),
        ));
    }
    if last_seq > head.seq {
        return Err(damaged(
            head.seq + 1,
            format!(
                "stored past the head, which says the log ends at record {}",
                head.seq
            ),
        ));
    }
    match last {
        None if head.hash == GENESIS => Ok(head),
        None => Err(LogError::corrupt(
            path,
            "the head",
            "the head of an empty log has a non-zero hash",
        )),
        Some((seq, value)) => {
            let rec =
                layout::decode_record_ref(seq, &value).map_err(|d| LogError::damaged(path, d))?;
            if rec.hash != head.hash {
                return Err(damaged(
                    seq,
                    "its hash does not match the log's head".into(),
                ));
            }
            Ok(head)
        }
    }
}

/// Re-verifies the chain of the last `n` records up to `head`.
pub(crate) fn verify_tail(
    db: &sled::Db,
    path: &Path,
    head: Head,
    n: usize,
) -> Result<(), LogError> {
    if n == 0 || head.seq == 0 {
        return Ok(());
    }
    let n = u64::try_from(n).unwrap_or(u64::MAX);
    let start = head.seq.saturating_sub(n) + 1;
    let prev = if start == 1 {
        Head::GENESIS
    } else {
        let seq = start - 1;
        let value = db
            .get(layout::record_key(seq))
            .map_err(|e| LogError::storage(path, "reading", e))?
            .ok_or_else(|| LogError::damaged(path, Damage::new(seq, "missing")))?;
        let rec = layout::decode_record_ref(seq, &value).map_err(|d| LogError::damaged(path, d))?;
        Head {
            seq,
            hash: rec.hash,
        }
    };
    for rec in Records::new(db, path, start, head.seq, Some(prev), true) {
        rec?;
    }
    Ok(())
}
