//! A log written by an earlier build (format 1: every record in sled under `r` + seq) is moved
//! to the record file on open, with everything else it holds; a damaged one is refused and left
//! as it was; a move that was interrupted starts over.

mod common;

use std::path::Path;

use common::*;
use incident_eventlog::layout::{self, MAGIC};
use incident_eventlog::{
    EventLog, ExpectedVersion, Head, LogError, Record, chain_hash, verify_chain,
};

/// The records of a log of `n` events, written with this build.
fn records(n: u64) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    fill(&log, n);
    all(&log)
}

/// A chain of records holding `events`, one stream per record.
fn chain(events: Vec<Vec<u8>>) -> Vec<Record> {
    let mut prev = Head::GENESIS;
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            let seq = i as u64 + 1;
            let hash = chain_hash(&prev.hash, &event);
            let rec = Record {
                seq,
                stream: format!("s{seq}"),
                version: 1,
                event_id: format!("e{seq}"),
                prev_hash: prev.hash,
                hash,
                event,
            };
            prev = Head::from(&rec);
            rec
        })
        .collect()
}

/// A record's value as a format-1 build stored it in sled (with no limit on its length).
fn legacy_value(r: &Record) -> Vec<u8> {
    let mut v = vec![layout::RECORD_FORMAT];
    v.extend_from_slice(&r.seq.to_be_bytes());
    v.extend_from_slice(&r.version.to_be_bytes());
    v.extend_from_slice(&r.prev_hash);
    v.extend_from_slice(&r.hash);
    v.extend_from_slice(&(r.stream.len() as u16).to_be_bytes());
    v.extend_from_slice(&(r.event_id.len() as u16).to_be_bytes());
    v.extend_from_slice(r.stream.as_bytes());
    v.extend_from_slice(r.event_id.as_bytes());
    v.extend_from_slice(&r.event);
    v
}

/// The event id and stream index entries formats 1 and 2 kept in sled for `records`.
fn index_in_sled(db: &sled::Db, records: &[Record]) {
    for r in records {
        db.insert(
            layout::prefixed(layout::EVENT_ID, r.event_id.as_bytes()),
            &r.seq.to_be_bytes(),
        )
        .unwrap();
        db.insert(
            layout::stream_index_key(&r.stream, r.version).unwrap(),
            &r.seq.to_be_bytes(),
        )
        .unwrap();
    }
}

/// Writes `records` in `dir` the way a format-1 build did, with a processed id, a cursor and a
/// snapshot.
fn write_format_1(dir: &Path, records: &[Record]) {
    let db = sled::open(dir).unwrap();
    let mut meta = MAGIC.to_vec();
    meta.push(layout::LEGACY_LOG_FORMAT);
    db.insert(layout::META_KEY, meta).unwrap();
    for r in records {
        db.insert(layout::record_key(r.seq), legacy_value(r))
            .unwrap();
    }
    index_in_sled(&db, records);
    let head = records.last().map(Head::from).unwrap_or(Head::GENESIS);
    db.insert(layout::HEAD_KEY, &layout::encode_legacy_head(&head)[..])
        .unwrap();
    db.insert(
        layout::prefixed(layout::PROCESSED, b"msg-1"),
        &1u64.to_be_bytes(),
    )
    .unwrap();
    db.insert(
        layout::prefixed(layout::CURSOR, b"relay"),
        &7u64.to_be_bytes(),
    )
    .unwrap();
    db.open_tree(layout::SNAPSHOT_TREE)
        .unwrap()
        .insert("state", layout::encode_snapshot(9, b"{}"))
        .unwrap();
    db.flush().unwrap();
}

#[test]
fn a_format_1_log_is_moved_to_the_record_file_with_all_it_holds() {
    // more records than one batch entry covers in a moved log
    let written = records(600);
    let dir = tempfile::tempdir().unwrap();
    write_format_1(dir.path(), &written);

    let log = EventLog::open(dir.path()).unwrap();
    let head = Head::from(written.last().unwrap());
    assert_eq!(log.head(), head);
    assert_eq!(all(&log), written);
    assert_eq!(log.verify().unwrap(), head);
    assert_eq!(verify_chain(Head::GENESIS, all(&log)), Ok(head));
    assert_eq!(log.get(300).unwrap().as_ref(), Some(&written[299]));
    assert_eq!(log.read_stream("b").count(), 300);
    assert_eq!(log.seq_of_event("e257").unwrap(), Some(257));
    assert!(log.is_processed("msg-1").unwrap());
    assert_eq!(log.cursor("relay").unwrap(), 7);
    assert_eq!(
        log.load_snapshot("state").unwrap(),
        Some((9, b"{}".to_vec()))
    );
    // appends go on from where it was
    log.append(req("a", ExpectedVersion::Exact(300), &["next"]))
        .unwrap();
    assert_eq!(log.verify().unwrap().seq, 601);
    drop(log);

    with_db(dir.path(), |db| {
        for prefix in [layout::RECORD, layout::EVENT_ID, layout::STREAM_INDEX] {
            assert_eq!(
                db.scan_prefix([prefix]).count(),
                0,
                "{} entries left in sled",
                prefix as char
            );
        }
        let mut meta = MAGIC.to_vec();
        meta.push(layout::LOG_FORMAT);
        assert_eq!(db.get(layout::META_KEY).unwrap().unwrap(), meta);
    });
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.head().seq, 601);
}

/// Makes the closed log in `dir` look like one format 2 wrote: its event id and stream index
/// entries in sled, and the format-2 marker.
fn as_format_2(dir: &Path, records: &[Record]) {
    with_db(dir, |db| {
        index_in_sled(db, records);
        let mut meta = MAGIC.to_vec();
        meta.push(layout::INDEXED_LOG_FORMAT);
        db.insert(layout::META_KEY, meta).unwrap();
    });
}

#[test]
fn a_format_2_log_switches_to_the_index_in_memory_and_drops_its_sled_index() {
    let dir = tempfile::tempdir().unwrap();
    let written = {
        let log = EventLog::open(dir.path()).unwrap();
        fill(&log, 40);
        all(&log)
    };
    as_format_2(dir.path(), &written);

    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(all(&log), written);
    assert_eq!(log.stream_version("a").unwrap(), 20);
    assert_eq!(log.seq_of_event("e17").unwrap(), Some(17));
    assert_eq!(log.read_stream("b").count(), 20);
    log.append(req("a", ExpectedVersion::Exact(20), &["e41"]))
        .unwrap();
    assert_eq!(log.verify().unwrap().seq, 41);
    drop(log);
    with_db(dir.path(), |db| {
        for prefix in [layout::EVENT_ID, layout::STREAM_INDEX] {
            assert_eq!(db.scan_prefix([prefix]).count(), 0);
        }
        let mut meta = MAGIC.to_vec();
        meta.push(layout::LOG_FORMAT);
        assert_eq!(db.get(layout::META_KEY).unwrap().unwrap(), meta);
    });
    assert_eq!(all(&EventLog::open(dir.path()).unwrap()).len(), 41);
}

#[test]
fn an_empty_format_1_log_is_moved() {
    let dir = tempfile::tempdir().unwrap();
    write_format_1(dir.path(), &[]);
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.head(), Head::GENESIS);
    log.append(req("a", ExpectedVersion::NoStream, &["e1"]))
        .unwrap();
    assert_eq!(log.verify().unwrap().seq, 1);
}

#[test]
fn a_damaged_format_1_log_is_refused_and_left_as_it_was() {
    let mut written = records(20);
    written[11].event = b"{\"id\":\"X12\"}".to_vec();
    let dir = tempfile::tempdir().unwrap();
    write_format_1(dir.path(), &written);
    for _ in 0..2 {
        let e = EventLog::open(dir.path()).unwrap_err();
        let d = e.damage().unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(d.seq, 12, "{e}");
        assert!(matches!(e, LogError::Damaged(_)));
    }
    with_db(dir.path(), |db| {
        assert_eq!(db.scan_prefix([layout::RECORD]).count(), 20);
        let mut meta = MAGIC.to_vec();
        meta.push(layout::LEGACY_LOG_FORMAT);
        assert_eq!(db.get(layout::META_KEY).unwrap().unwrap(), meta);
    });
    assert_eq!(std::fs::metadata(record_file(dir.path())).unwrap().len(), 0);
}

#[test]
fn a_format_1_log_whose_head_disagrees_is_refused_with_nothing_copied() {
    let written = records(20);
    let dir = tempfile::tempdir().unwrap();
    write_format_1(dir.path(), &written);
    with_db(dir.path(), |db| {
        let forged = Head {
            seq: 20,
            hash: [7; 32],
        };
        db.insert(layout::HEAD_KEY, &layout::encode_legacy_head(&forged)[..])
            .unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(e.damage().map(|d| d.seq), Some(20), "{e}");
    // every record was readable, but none stays copied beside the refused log
    assert_eq!(std::fs::metadata(record_file(dir.path())).unwrap().len(), 0);
    with_db(dir.path(), |db| {
        assert_eq!(db.scan_prefix([layout::RECORD]).count(), 20);
    });
}

#[test]
fn an_interrupted_move_starts_over() {
    let written = records(30);
    let dir = tempfile::tempdir().unwrap();
    write_format_1(dir.path(), &written);
    // what a move that stopped half way left: part of a record file, the marker still at 1
    std::fs::write(record_file(dir.path()), vec![0x5a; 1000]).unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(all(&log), written);
    assert_eq!(log.verify().unwrap().seq, 30);
}

#[test]
fn records_a_finished_move_left_in_sled_are_removed_on_open() {
    let written = records(5);
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EventLog::open(dir.path()).unwrap();
        fill(&log, 5);
    }
    // the move switched the format and stopped before removing these
    with_db(dir.path(), |db| {
        for r in &written {
            db.insert(layout::record_key(r.seq), layout::encode_record(r).unwrap())
                .unwrap();
        }
    });
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(all(&log), written);
    drop(log);
    with_db(dir.path(), |db| {
        assert_eq!(db.scan_prefix([layout::RECORD]).count(), 0);
    });
}

#[test]
fn a_large_damaged_format_1_log_leaves_no_copied_records() {
    // more than the move writes at a time comes before the damage
    let mut written = chain(
        (0..60)
            .map(|i| vec![b'a' + (i % 26) as u8; 100_000])
            .collect(),
    );
    written[54].event[7] ^= 1;
    let dir = tempfile::tempdir().unwrap();
    write_format_1(dir.path(), &written);
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(e.damage().map(|d| d.seq), Some(55), "{e}");
    assert_eq!(std::fs::metadata(record_file(dir.path())).unwrap().len(), 0);
}

#[test]
fn a_format_1_record_too_long_for_the_record_file_is_refused_before_the_switch() {
    let written = chain(vec![
        b"{}".to_vec(),
        vec![b'x'; layout::MAX_RECORD_LEN + 1],
        b"{}".to_vec(),
    ]);
    let dir = tempfile::tempdir().unwrap();
    write_format_1(dir.path(), &written);
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(e.damage().map(|d| d.seq), Some(2), "{e}");
    assert!(e.to_string().contains("more than a record can be"), "{e}");
    with_db(dir.path(), |db| {
        let mut meta = MAGIC.to_vec();
        meta.push(layout::LEGACY_LOG_FORMAT);
        assert_eq!(db.get(layout::META_KEY).unwrap().unwrap(), meta);
        assert_eq!(db.scan_prefix([layout::RECORD]).count(), 3);
    });
    assert_eq!(std::fs::metadata(record_file(dir.path())).unwrap().len(), 0);
}
