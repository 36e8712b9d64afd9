//! Helpers shared by the integration tests: building requests, filling a log, and tampering
//! with a (closed) log's record file and sled database.

#![allow(dead_code)]

use std::path::Path;

use incident_eventlog::layout::{self, FrameSpan};
use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, Head, NewEvent, Record};

/// The canonical bytes the tests use for event `id`.
pub fn body(id: &str) -> Vec<u8> {
    format!("{{\"id\":\"{id}\"}}").into_bytes()
}

pub fn ev(id: &str) -> NewEvent {
    NewEvent::new(id, body(id))
}

pub fn req(stream: &str, expected: ExpectedVersion, ids: &[&str]) -> AppendRequest {
    AppendRequest::new(stream, expected, ids.iter().map(|id| ev(id)).collect())
}

/// Appends `n` events, alternating between streams `a` and `b`, ids `e1..=en`.
pub fn fill(log: &EventLog, n: u64) {
    for i in 1..=n {
        let stream = if i % 2 == 1 { "a" } else { "b" };
        log.append(req(stream, ExpectedVersion::Any, &[&format!("e{i}")]))
            .expect("append");
    }
}

pub fn all(log: &EventLog) -> Vec<Record> {
    log.read_from(1)
        .collect::<Result<_, _>>()
        .expect("read the log")
}

/// Opens the sled database of a closed log, runs `f` on it, flushes and closes it.
pub fn with_db(path: &Path, f: impl FnOnce(&sled::Db)) {
    let db = incident_eventlog::open_db(path).expect("open sled");
    f(&db);
    db.flush().expect("flush sled");
}

/// The record file of the log in `dir`.
pub fn record_file(dir: &Path) -> std::path::PathBuf {
    dir.join(layout::RECORD_FILE)
}

/// Where record `seq` sits in the record file of the closed log in `dir`.
pub fn frame_of(dir: &Path, seq: u64) -> FrameSpan {
    layout::record_frames(dir)
        .expect("read the record file")
        .into_iter()
        .find(|f| f.seq == Some(seq))
        .unwrap_or_else(|| panic!("no frame of record {seq}"))
}

/// Rewrites bytes of the record file of a closed log in place.
pub fn edit_file(dir: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let path = record_file(dir);
    let mut bytes = std::fs::read(&path).expect("read the record file");
    f(&mut bytes);
    std::fs::write(&path, bytes).expect("write the record file");
}

/// Replaces the value of record `seq`'s frame with `value` (`None`: removes the frame), and
/// moves the batch index and the head's end to match, as a careful forger would: only what the
/// record itself says can give it away.
pub fn replace_frame(dir: &Path, seq: u64, value: Option<&[u8]>) {
    let frame = frame_of(dir, seq);
    let old_len = layout::FRAME_HEADER_LEN as u64 + u64::from(frame.len);
    let mut new_frame = Vec::new();
    if let Some(v) = value {
        new_frame.extend_from_slice(&(v.len() as u32).to_be_bytes());
        new_frame.extend_from_slice(v);
    }
    edit_file(dir, |bytes| {
        let at = frame.offset as usize;
        bytes.splice(at..at + old_len as usize, new_frame.iter().copied());
    });
    let shift = |x: u64| x - old_len + new_frame.len() as u64;
    with_db(dir, |db| {
        for kv in db.scan_prefix([layout::BATCH]) {
            let (k, v) = kv.unwrap();
            let offset = layout::be_u64(&v).unwrap();
            if offset > frame.offset {
                db.insert(k, &shift(offset).to_be_bytes()).unwrap();
            }
        }
        let (head, end) = stored_head(db);
        db.insert(
            layout::HEAD_KEY,
            &layout::encode_head(&head, shift(end))[..],
        )
        .unwrap();
    });
}

/// The head and the end of the record file that sled holds.
pub fn stored_head(db: &sled::Db) -> (Head, u64) {
    layout::decode_head(&db.get(layout::HEAD_KEY).unwrap().expect("a head")).expect("a head")
}

/// Makes record 3 (event e3) carry event id e1, which record 1 holds: outside the hashed
/// bytes, so only reading the record for the index finds it.
pub fn duplicate_e1_at_record_3(dir: &Path) {
    let frame = frame_of(dir, 3);
    edit_file(dir, |bytes| {
        let value = &mut bytes[frame.value_offset() as usize..][..frame.len as usize];
        let at = value.windows(2).position(|w| w == b"e3").unwrap();
        value[at..at + 2].copy_from_slice(b"e1");
    });
}
