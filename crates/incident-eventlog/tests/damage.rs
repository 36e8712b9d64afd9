//! Damage is found and named: records tampered with, removed or replaced by garbage directly in
//! sled; a truncated tail; a damaged snapshot; broken indexes; exported copies checked with
//! `verify_chain`. Nothing here may panic inside the crate.

mod common;

use std::path::Path;

use common::*;
use incident_eventlog::layout::{self, record_key};
use incident_eventlog::{Damage, EventLog, Head, LogError, Options, chain_hash, verify_chain};

/// A closed log of `n` events in `dir`.
fn closed_log(dir: &Path, n: u64) -> Head {
    let log = EventLog::open(dir).unwrap();
    fill(&log, n);
    let head = log.head();
    drop(log);
    head
}

fn damage(e: &LogError) -> &Damage {
    e.damage()
        .unwrap_or_else(|| panic!("expected damage, got {e:?}"))
}

/// Replaces the event bytes of record `seq`, keeping its stored hashes.
fn tamper_event(dir: &Path, seq: u64, event: &[u8]) {
    with_db(dir, |db| {
        let v = db.get(record_key(seq)).unwrap().unwrap();
        let mut rec = layout::decode_record(seq, &v).unwrap();
        rec.event = event.to_vec();
        db.insert(record_key(seq), layout::encode_record(&rec).unwrap())
            .unwrap();
    });
}

#[test]
fn an_intact_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let head = closed_log(dir.path(), 50);
    let log = EventLog::open_with(dir.path(), Options { verify_tail: 0 }).unwrap();
    assert_eq!(log.verify().unwrap(), head);
    assert_eq!(verify_chain(Head::GENESIS, all(&log)), Ok(head));
}

#[test]
fn a_tampered_record_is_named_on_open() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    tamper_event(dir.path(), 4, b"{\"id\":\"forged\"}");
    let e = EventLog::open(dir.path()).unwrap_err();
    let d = damage(&e);
    assert_eq!(d.seq, 4);
    assert_eq!(d.reason, "hash does not match its contents");
    assert_eq!(
        e.to_string(),
        format!(
            "event log at {} is damaged: record 4: hash does not match its contents; rebuild it from JetStream (see README)",
            dir.path().display()
        )
    );
}

#[test]
fn a_tampered_record_outside_the_tail_is_found_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    // flip one byte of the event, straight in the stored value
    with_db(dir.path(), |db| {
        let mut v = db.get(record_key(3)).unwrap().unwrap().to_vec();
        if let Some(b) = v.last_mut() {
            *b ^= 0x20;
        }
        db.insert(record_key(3), v).unwrap();
    });
    let log = EventLog::open_with(dir.path(), Options { verify_tail: 5 }).unwrap();
    let e = log.verify().unwrap_err();
    assert_eq!(damage(&e).seq, 3);
    assert!(
        e.to_string().contains("record 3: hash does not match"),
        "{e}"
    );
    // an exported copy names it too
    let copy = all(&log);
    assert_eq!(verify_chain(Head::GENESIS, copy).unwrap_err().seq, 3);
    drop(log);
    assert_eq!(damage(&EventLog::open(dir.path()).unwrap_err()).seq, 3);
}

#[test]
fn a_rehashed_forgery_breaks_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    with_db(dir.path(), |db| {
        let v = db.get(record_key(2)).unwrap().unwrap();
        let mut rec = layout::decode_record(2, &v).unwrap();
        rec.event = b"{\"forged\":true}".to_vec();
        rec.hash = chain_hash(&rec.prev_hash, &rec.event);
        db.insert(record_key(2), layout::encode_record(&rec).unwrap())
            .unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 3);
    assert!(damage(&e).reason.contains("prev_hash"), "{e}");
}

#[test]
fn a_truncated_tail_is_found() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    with_db(dir.path(), |db| {
        db.remove(record_key(10)).unwrap();
    });
    for opts in [Options::default(), Options { verify_tail: 0 }] {
        let e = EventLog::open_with(dir.path(), opts).unwrap_err();
        let d = damage(&e);
        assert_eq!(d.seq, 10, "{e}");
        assert!(d.reason.contains("missing"), "{e}");
    }
}

#[test]
fn a_record_past_the_head_is_found() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 3);
    with_db(dir.path(), |db| {
        let v = db.get(record_key(3)).unwrap().unwrap();
        let mut rec = layout::decode_record(3, &v).unwrap();
        rec.seq = 4;
        db.insert(record_key(4), layout::encode_record(&rec).unwrap())
            .unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 4);
}

#[test]
fn a_head_that_disagrees_with_the_last_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 3);
    with_db(dir.path(), |db| {
        let head = Head {
            seq: 3,
            hash: [1; 32],
        };
        db.insert(layout::HEAD_KEY, &layout::encode_head(&head)[..])
            .unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 3);
    assert!(damage(&e).reason.contains("head"), "{e}");
}

#[test]
fn a_missing_record_in_the_middle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    with_db(dir.path(), |db| {
        db.remove(record_key(5)).unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 5);
    assert!(damage(&e).reason.contains("missing"), "{e}");

    // outside the verified tail: open works, reading and verifying stop at it
    let log = EventLog::open_with(dir.path(), Options { verify_tail: 3 }).unwrap();
    let read: Vec<_> = log.read_from(1).collect();
    assert_eq!(read.len(), 5);
    assert!(read[..4].iter().all(Result::is_ok));
    assert_eq!(damage(read[4].as_ref().unwrap_err()).seq, 5);
    let mut visited = Vec::new();
    let e = log
        .visit_after(Head::GENESIS, |r| {
            visited.push(r.seq);
            Ok::<_, LogError>(())
        })
        .unwrap_err();
    assert_eq!(visited, [1, 2, 3, 4]);
    assert_eq!(damage(&e).seq, 5);
    assert_eq!(damage(&log.verify().unwrap_err()).seq, 5);
    assert_eq!(damage(&log.get(5).unwrap_err()).seq, 5);
    // the stream index points at it too
    let a: Vec<_> = log.read_stream("a").collect();
    assert_eq!(a.len(), 3);
    assert_eq!(damage(a[2].as_ref().unwrap_err()).seq, 5);
}

#[test]
fn garbage_values_are_damage_not_panics() {
    for (seq, garbage) in [
        (10u64, &b""[..]),
        (10, &b"xx"[..]),
        (10, &[1u8, 0, 0][..]),
        (6, &[1u8; 90][..]),
        (6, &[7u8; 200][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        closed_log(dir.path(), 10);
        with_db(dir.path(), |db| {
            db.insert(record_key(seq), garbage).unwrap();
        });
        let e = EventLog::open(dir.path()).unwrap_err();
        assert_eq!(damage(&e).seq, seq, "{e}");
        // and with no tail verification, reads find it
        let log = EventLog::open_with(dir.path(), Options { verify_tail: 0 });
        if let Ok(log) = log {
            let bad = log.read_from(1).find_map(Result::err).unwrap();
            assert_eq!(damage(&bad).seq, seq);
            assert_eq!(damage(&log.get(seq).unwrap_err()).seq, seq);
        }
    }
}

#[test]
fn garbage_in_other_values_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 4);
    with_db(dir.path(), |db| {
        db.insert(layout::HEAD_KEY, b"bad").unwrap();
    });
    assert!(matches!(
        EventLog::open(dir.path()),
        Err(LogError::Corrupt { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 4);
    with_db(dir.path(), |db| {
        db.insert(layout::prefixed(layout::CURSOR, b"c"), b"bad")
            .unwrap();
        db.insert(layout::prefixed(layout::EVENT_ID, b"e2"), b"bad")
            .unwrap();
        // a stream index key for stream a whose version is not 8 bytes, sorting last
        let mut key = layout::stream_index_prefix("a").unwrap();
        key.extend_from_slice(b"bad");
        db.insert(key, &1u64.to_be_bytes()).unwrap();
    });
    let log = EventLog::open(dir.path()).unwrap();
    assert!(matches!(log.cursor("c"), Err(LogError::Corrupt { .. })));
    assert!(matches!(
        log.seq_of_event("e2"),
        Err(LogError::Corrupt { .. })
    ));
    assert!(matches!(
        log.stream_version("a"),
        Err(LogError::Corrupt { .. })
    ));
    assert!(log.verify().is_err());
    // an append to the damaged stream is refused; others still work
    let r = log.append(req("a", incident_eventlog::ExpectedVersion::Any, &["x"]));
    assert!(r.is_err(), "{r:?}");
    log.append(req("c", incident_eventlog::ExpectedVersion::Any, &["y"]))
        .unwrap();
}

#[test]
fn broken_indexes_are_found_by_verify() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    with_db(dir.path(), |db| {
        db.remove(layout::prefixed(layout::EVENT_ID, b"e2"))
            .unwrap();
    });
    let log = EventLog::open(dir.path()).unwrap();
    let e = log.verify().unwrap_err();
    assert_eq!(damage(&e).seq, 2, "{e}");
    drop(log);

    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    with_db(dir.path(), |db| {
        // an index entry for a version of stream a the log does not hold
        db.insert(
            layout::stream_index_key("a", 9).unwrap(),
            &5u64.to_be_bytes(),
        )
        .unwrap();
    });
    let log = EventLog::open(dir.path()).unwrap();
    let e = log.verify().unwrap_err();
    assert!(e.to_string().contains("stream index"), "{e}");
}

#[test]
fn a_damaged_snapshot_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    fill(&log, 3);
    log.save_snapshot("state", 3, b"{\"incidents\":3}").unwrap();
    drop(log);
    with_db(dir.path(), |db| {
        let snapshots = db.open_tree(layout::SNAPSHOT_TREE).unwrap();
        let mut v = snapshots.get("state").unwrap().unwrap().to_vec();
        if let Some(b) = v.last_mut() {
            *b ^= 1;
        }
        snapshots.insert("state", v).unwrap();
        snapshots.insert("short", b"\x01ab").unwrap();
    });
    let log = EventLog::open(dir.path()).unwrap();
    let e = log.load_snapshot("state").unwrap_err();
    assert_eq!(damage(&e).seq, 3);
    assert!(e.to_string().contains("checksum"), "{e}");
    assert!(matches!(
        log.load_snapshot("short"),
        Err(LogError::Corrupt { .. })
    ));
    // the log itself is fine, and the snapshot can be replaced
    assert_eq!(log.verify().unwrap().seq, 3);
    log.save_snapshot("state", 3, b"{}").unwrap();
    assert_eq!(
        log.load_snapshot("state").unwrap(),
        Some((3, b"{}".to_vec()))
    );
}

#[test]
fn verify_chain_names_the_record_in_a_tampered_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    fill(&log, 12);
    let records = all(&log);
    assert_eq!(verify_chain(Head::GENESIS, records.clone()), Ok(log.head()));

    let mut copy = records.clone();
    copy[6].event = b"{\"id\":\"other\"}".to_vec();
    let d = verify_chain(Head::GENESIS, copy).unwrap_err();
    assert_eq!(d.seq, 7);
    assert_eq!(d.to_string(), "record 7: hash does not match its contents");

    let mut copy = records.clone();
    copy.remove(8);
    assert_eq!(verify_chain(Head::GENESIS, copy).unwrap_err().seq, 9);

    // a copy of the tail, checked from the head before it
    let from = Head::from(&records[4]);
    assert_eq!(verify_chain(from, records[5..].to_vec()), Ok(log.head()));
    assert_eq!(
        verify_chain(Head::GENESIS, records[5..].to_vec())
            .unwrap_err()
            .seq,
        1
    );
}

#[test]
fn snapshots_stay_out_of_the_tree_every_append_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EventLog::open(dir.path()).unwrap();
        fill(&log, 3);
        log.save_snapshot("state", 3, b"{}").unwrap();
    }
    with_db(dir.path(), |db| {
        // in its own tree, not among the records, indexes and head
        assert_eq!(db.scan_prefix([layout::SNAPSHOT]).count(), 0);
        let snapshots = db.open_tree(layout::SNAPSHOT_TREE).unwrap();
        assert!(snapshots.get("state").unwrap().is_some());
        // what an earlier build left in the default tree
        db.insert(
            layout::prefixed(layout::SNAPSHOT, b"state"),
            vec![0u8; 4096],
        )
        .unwrap();
    });
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(
        log.load_snapshot("state").unwrap(),
        Some((3, b"{}".to_vec()))
    );
    assert_eq!(log.verify().unwrap().seq, 3);
    drop(log);
    with_db(dir.path(), |db| {
        assert_eq!(
            db.scan_prefix([layout::SNAPSHOT]).count(),
            0,
            "the old snapshot was removed on open"
        );
    });
}

#[test]
fn stream_versions_stored_by_earlier_builds_are_removed_and_versions_still_hold() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    let versions = {
        let log = EventLog::open(dir.path()).unwrap();
        let streams = ["a", "b", "c"];
        streams.map(|s| (s, log.stream_version(s).unwrap()))
    };
    with_db(dir.path(), |db| {
        // what an earlier build kept beside the index, one of them stale
        for (stream, version) in versions {
            db.insert(
                layout::prefixed(layout::STREAM_VERSION, stream.as_bytes()),
                &(version + 7).to_be_bytes(),
            )
            .unwrap();
        }
    });
    let log = EventLog::open(dir.path()).unwrap();
    for (stream, version) in versions {
        assert_eq!(log.stream_version(stream).unwrap(), version, "{stream}");
    }
    assert_eq!(log.verify().unwrap().seq, 6);
    // appends go on from the versions the index holds
    let (stream, version) = versions[0];
    log.append(req(
        stream,
        incident_eventlog::ExpectedVersion::Exact(version),
        &["next"],
    ))
    .unwrap();
    assert_eq!(log.stream_version(stream).unwrap(), version + 1);
    drop(log);
    with_db(dir.path(), |db| {
        assert_eq!(db.scan_prefix([layout::STREAM_VERSION]).count(), 0);
    });
}
