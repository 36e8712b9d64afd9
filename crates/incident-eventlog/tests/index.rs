//! The in-memory index saved with each snapshot: the next open reads only the records after it;
//! a saved index that does not fit the log (damaged, another log's, past the head) is not used.

mod common;

use std::path::Path;

use common::*;
use incident_eventlog::layout;
use incident_eventlog::{AppendError, AppendRequest, EventLog, ExpectedVersion, NewEvent, Options};

/// A closed log of `total` events (ids `e1..`, streams `a` and `b` in turn up to `saved`, then
/// `a`), with its index saved at `saved`.
fn saved_then_more(dir: &Path, saved: u64, total: u64) {
    let log = EventLog::open(dir).unwrap();
    fill(&log, saved);
    log.save_snapshot("state", saved, b"{}").unwrap();
    for i in saved + 1..=total {
        log.append(req("a", ExpectedVersion::Any, &[&format!("e{i}")]))
            .unwrap();
    }
}

#[test]
fn a_saved_index_spares_open_reading_the_records_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    saved_then_more(dir.path(), 10, 12);
    assert!(dir.path().join(layout::INDEX_FILE).exists());
    duplicate_e1_at_record_3(dir.path());

    // the damage is in what the saved index covers: open does not read it again
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.stream_version("a").unwrap(), 7);
    assert_eq!(log.seq_of_event("e12").unwrap(), Some(12));
    assert_eq!(log.seq_of_event("e7").unwrap(), Some(7));
    assert_eq!(log.read_stream("b").count(), 5);
    // a full verification reads every record and finds it
    let e = log.verify().unwrap_err();
    assert_eq!(e.damage().unwrap().seq, 3, "{e}");
    drop(log);

    // without the saved index, open reads every record and refuses the log
    std::fs::remove_file(dir.path().join(layout::INDEX_FILE)).unwrap();
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(e.damage().unwrap().seq, 3, "{e}");
}

/// A closed log of `n` events; with its index saved when `save`.
fn log_with(dir: &Path, stream: Option<&str>, n: u64, save: bool) {
    let log = EventLog::open(dir).unwrap();
    match stream {
        None => fill(&log, n),
        Some(s) => {
            for i in 1..=n {
                log.append(req(s, ExpectedVersion::Any, &[&format!("x{i}")]))
                    .unwrap();
            }
        }
    }
    if save {
        log.save_snapshot("state", n, b"{}").unwrap();
    }
}

/// Opens the log in `dir` and checks what its index says against what it holds: `n` events
/// of stream `c`, ids `x1..=xn`.
fn assert_indexed_as_c(dir: &Path, n: u64) {
    let log = EventLog::open(dir).unwrap();
    assert_eq!(log.stream_version("c").unwrap(), n);
    assert_eq!(log.stream_version("a").unwrap(), 0);
    assert_eq!(log.seq_of_event(&format!("x{n}")).unwrap(), Some(n));
    assert_eq!(log.seq_of_event("e1").unwrap(), None);
    assert_eq!(log.read_stream("c").count() as u64, n);
    assert_eq!(log.verify().unwrap().seq, n);
    // and appends see the right version
    log.append(req("c", ExpectedVersion::Exact(n), &["next"]))
        .unwrap();
}

/// A log of `n` events of stream `c` holding the index saved by a log of 10 events of streams
/// `a` and `b`.
fn with_another_logs_index(n: u64) -> tempfile::TempDir {
    let other = tempfile::tempdir().unwrap();
    log_with(other.path(), None, 10, true);
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), Some("c"), n, false);
    std::fs::copy(
        other.path().join(layout::INDEX_FILE),
        dir.path().join(layout::INDEX_FILE),
    )
    .unwrap();
    dir
}

#[test]
fn another_logs_saved_index_is_not_used() {
    let dir = with_another_logs_index(10);
    assert_indexed_as_c(dir.path(), 10);
    // and it is removed, never to be read again once the log has grown past it
    assert!(!dir.path().join(layout::INDEX_FILE).exists());
}

#[test]
fn the_first_record_after_a_saved_index_must_link_to_its_last() {
    let dir = tempfile::tempdir().unwrap();
    saved_then_more(dir.path(), 10, 12);
    // record 11's prev_hash no longer names record 10
    let frame = frame_of(dir.path(), 11);
    edit_file(dir.path(), |bytes| {
        let at = frame.value_offset() as usize + 1 + 8 + 8;
        bytes[at] ^= 0xff;
    });
    // found even with no tail verified on open
    let e = EventLog::open_with(dir.path(), Options { verify_tail: 0 }).unwrap_err();
    assert_eq!(e.damage().unwrap().seq, 11, "{e}");
}

/// Copies the closed log in `from` to `to`, file by file.
fn copy_log(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_log(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_saved_index_past_the_head_is_not_used() {
    // the same log, restored from a copy taken at 4 records, with the index it saved at 10
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), Some("c"), 4, false);
    let earlier = tempfile::tempdir().unwrap();
    copy_log(dir.path(), earlier.path());
    {
        let log = EventLog::open(dir.path()).unwrap();
        for i in 5..=10 {
            log.append(req("c", ExpectedVersion::Any, &[&format!("x{i}")]))
                .unwrap();
        }
        log.save_snapshot("state", 10, b"{}").unwrap();
    }
    std::fs::copy(
        dir.path().join(layout::INDEX_FILE),
        earlier.path().join(layout::INDEX_FILE),
    )
    .unwrap();
    assert_indexed_as_c(earlier.path(), 4);
    assert!(!earlier.path().join(layout::INDEX_FILE).exists());
}

/// A closed log of 10 events with the bytes `payload1..=10`: ids `<prefix>1..` in `streams`
/// (taken in turn); its index saved when `save`.
fn same_events(dir: &Path, prefix: &str, streams: &[&str], save: bool) {
    let log = EventLog::open(dir).unwrap();
    for i in 1..=10usize {
        log.append(AppendRequest::new(
            streams[i % streams.len()],
            ExpectedVersion::Any,
            vec![NewEvent::new(format!("{prefix}{i}"), format!("payload{i}"))],
        ))
        .unwrap();
    }
    if save {
        log.save_snapshot("state", 10, b"{}").unwrap();
    }
}

#[test]
fn a_saved_index_of_a_log_with_the_same_event_bytes_but_other_ids_is_not_used() {
    // the hash chain covers the event bytes only: the record the index ends at must also have
    // the event id, stream and version the index gives it
    let other = tempfile::tempdir().unwrap();
    same_events(other.path(), "e", &["a", "b"], true);
    let dir = tempfile::tempdir().unwrap();
    same_events(dir.path(), "x", &["c"], false);
    std::fs::copy(
        other.path().join(layout::INDEX_FILE),
        dir.path().join(layout::INDEX_FILE),
    )
    .unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.stream_version("c").unwrap(), 10);
    assert_eq!(log.stream_version("a").unwrap(), 0);
    assert_eq!(log.seq_of_event("x3").unwrap(), Some(3));
    assert!(matches!(
        log.append(req("c", ExpectedVersion::Any, &["x3"])),
        Err(AppendError::DuplicateEventId(_))
    ));
    assert_eq!(log.verify().unwrap().seq, 10);
    assert!(!dir.path().join(layout::INDEX_FILE).exists());
}

#[test]
fn damage_after_a_saved_index_is_reported_and_the_index_dropped() {
    let dir = tempfile::tempdir().unwrap();
    saved_then_more(dir.path(), 2, 6);
    // record 3 repeats e1: past the saved index, so open reads it and refuses the log
    duplicate_e1_at_record_3(dir.path());
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(e.damage().unwrap().seq, 3, "{e}");
    // reading every record said the same: the saved index was not what stopped it
    assert!(!dir.path().join(layout::INDEX_FILE).exists());
}

#[test]
fn a_forged_head_far_past_the_records_is_an_error_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), Some("c"), 1, false);
    let far = 1u64 << 40;
    let frame = frame_of(dir.path(), 1);
    edit_file(dir.path(), |bytes| {
        let at = frame.value_offset() as usize + 1;
        bytes[at..at + 8].copy_from_slice(&far.to_be_bytes());
    });
    with_db(dir.path(), |db| {
        let (head, end) = stored_head(db);
        let forged = incident_eventlog::Head { seq: far, ..head };
        db.insert(layout::HEAD_KEY, &layout::encode_head(&forged, end)[..])
            .unwrap();
        db.remove(layout::batch_key(1)).unwrap();
        db.insert(layout::batch_key(far), &0u64.to_be_bytes())
            .unwrap();
    });
    assert!(EventLog::open_with(dir.path(), Options { verify_tail: 0 }).is_err());
}

#[test]
fn a_damaged_saved_index_is_not_used() {
    for damage in [
        // a flipped bit in an entry
        (|b: &mut Vec<u8>| {
            let at = b.len() / 2;
            b[at] ^= 1
        }) as fn(&mut Vec<u8>),
        // cut short
        |b: &mut Vec<u8>| b.truncate(b.len() - 7),
        // empty
        |b: &mut Vec<u8>| b.clear(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        log_with(dir.path(), Some("c"), 6, true);
        let path = dir.path().join(layout::INDEX_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        damage(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
        assert_indexed_as_c(dir.path(), 6);
    }
}

#[test]
fn the_index_is_saved_again_with_each_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    log_with(dir.path(), Some("c"), 3, true);
    let first = std::fs::read(dir.path().join(layout::INDEX_FILE)).unwrap();
    {
        let log = EventLog::open(dir.path()).unwrap();
        log.append(req("c", ExpectedVersion::Exact(3), &["x4"]))
            .unwrap();
        log.save_snapshot("state", 4, b"{}").unwrap();
    }
    let second = std::fs::read(dir.path().join(layout::INDEX_FILE)).unwrap();
    assert_ne!(first, second);
    assert!(!dir.path().join("index.tmp").exists());
    assert_indexed_as_c(dir.path(), 4);
}
