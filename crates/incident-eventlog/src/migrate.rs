//! Moving a format-1 log (records in sled under `r` + seq) to the record file. The chain is
//! verified (links and hashes) while the records are copied; the file is synced; then the
//! batch index, the head with the file's end and the format marker are written in one batch;
//! only then are the `r` keys removed (what an interruption leaves of them is removed on the
//! next open). An interrupted move starts over: until the marker switches, the log is format 1
//! and the file is rewritten from its start.

use std::path::Path;

use crate::error::LogError;
use crate::file::RecordFile;
use crate::layout::{self, HEAD_KEY, META_KEY};
use crate::record::{Damage, Head, check_hash_parts, check_link_parts};

/// Records per batch index entry in a moved log.
const RECORDS_PER_ENTRY: u64 = 256;
/// Bytes of frames written to the file at a time.
const WRITE_CHUNK: usize = 4 << 20;

/// Moves the records. When the copy fails (damage, a write error), the record file is emptied
/// again, so a refused log is left as it was. Once sled has taken the switch the file is the
/// log's, even if the flush that follows fails (sled may still write the switch out).
pub(crate) fn records_to_file(
    db: &sled::Db,
    file: &RecordFile,
    path: &Path,
) -> Result<(), LogError> {
    let started = std::time::Instant::now();
    tracing::info!(log = %path.display(), "moving the records of a log an earlier build wrote to its record file");
    // Emptying the file again is tidiness, not safety: until the marker switches the log is
    // format 1 and the next move rewrites the file from its start, so the move's own error is
    // the one to report.
    let empty_again = || {
        if let Err(e) = file.truncate(0) {
            tracing::warn!(log = %path.display(), error = %e, "could not empty the record file after a failed move");
        }
    };
    let (switch, records) = copy(db, file, path).inspect_err(|_| empty_again())?;
    db.apply_batch(switch).map_err(|e| {
        empty_again();
        LogError::storage(path, "writing to", e)
    })?;
    db.flush()
        .map_err(|e| LogError::storage(path, "flushing", e))?;
    tracing::info!(
        log = %path.display(),
        records,
        millis = started.elapsed().as_millis() as u64,
        "moved the log's records to its record file"
    );
    // the `r` keys are removed with the other leftovers of earlier builds, right after this
    Ok(())
}

/// Copies the records to the file, verified, and syncs it; answers the batch that switches the
/// log over (batch index, head, format marker) and the number of records.
fn copy(db: &sled::Db, file: &RecordFile, path: &Path) -> Result<(sled::Batch, u64), LogError> {
    let st = |doing: &'static str| move |e: sled::Error| LogError::storage(path, doing, e);
    let io = |e: std::io::Error| LogError::storage(path, "writing the record file of", e);
    let damaged = |d: Damage| LogError::damaged(path, d);
    let stored_head = match db.get(HEAD_KEY).map_err(st("reading"))? {
        None => None,
        Some(v) => Some(
            layout::decode_legacy_head(&v).map_err(|r| LogError::corrupt(path, "the head", r))?,
        ),
    };
    file.truncate(0).map_err(io)?;
    let mut batch = sled::Batch::default();
    let mut frames = Vec::with_capacity(WRITE_CHUNK + 64 * 1024);
    let mut written = 0u64;
    let mut prev = Head::GENESIS;
    for kv in db.scan_prefix([layout::RECORD]) {
        let (k, v) = kv.map_err(st("reading"))?;
        let expected = prev.seq + 1;
        let seq = layout::record_key_seq(&k).ok_or_else(|| {
            LogError::corrupt(
                path,
                "the record keys",
                format!("the key {} is not a record key", hex::encode(&k)),
            )
        })?;
        if seq != expected {
            return Err(damaged(Damage::new(
                expected,
                format!("missing (the next record stored is {seq})"),
            )));
        }
        if v.len() > layout::MAX_RECORD_LEN {
            return Err(damaged(Damage::new(
                seq,
                format!(
                    "{} bytes long, more than a record can be ({})",
                    v.len(),
                    layout::MAX_RECORD_LEN
                ),
            )));
        }
        let rec = layout::decode_record_ref(seq, &v).map_err(damaged)?;
        check_link_parts(&prev, rec.seq, &rec.prev_hash).map_err(damaged)?;
        check_hash_parts(rec.seq, &rec.prev_hash, rec.event, &rec.hash).map_err(damaged)?;
        if (seq - 1) % RECORDS_PER_ENTRY == 0 {
            let offset = written + frames.len() as u64;
            batch.insert(&layout::batch_key(seq), &offset.to_be_bytes());
        }
        frames.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes());
        frames.extend_from_slice(&v);
        if frames.len() >= WRITE_CHUNK {
            file.write_at(&frames, written).map_err(io)?;
            written += frames.len() as u64;
            frames.clear();
        }
        prev = Head {
            seq,
            hash: rec.hash,
        };
    }
    file.write_at(&frames, written).map_err(io)?;
    written += frames.len() as u64;
    if stored_head.is_none() && prev.seq > 0 {
        return Err(damaged(Damage::new(
            prev.seq,
            "stored, but the log has no head (its head was lost)",
        )));
    }
    let head = stored_head.unwrap_or(Head::GENESIS);
    if head != prev {
        return Err(damaged(Damage::new(
            head.seq.max(prev.seq),
            if head.seq == prev.seq {
                "its hash does not match the log's head".to_string()
            } else {
                format!(
                    "the head says the log ends at record {}, but the last record stored is {}",
                    head.seq, prev.seq
                )
            },
        )));
    }
    batch.insert(HEAD_KEY, &layout::encode_head(&head, written)[..]);
    batch.insert(META_KEY, layout::meta_value());
    Ok((batch, head.seq))
}
