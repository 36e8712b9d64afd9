//! Damage is found and named: records tampered with, removed or replaced by garbage directly in
//! the record file; a truncated file; a head or batch index that disagrees with the records; a
//! damaged snapshot; broken indexes; exported copies checked with `verify_chain`. Nothing here
//! may panic inside the crate.

mod common;

use std::path::Path;

use common::*;
use incident_eventlog::layout;
use incident_eventlog::{Damage, EventLog, Head, LogError, Options, chain_hash, verify_chain};

/// Where a test's log lines go.
struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

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

/// Replaces the event bytes of record `seq` (with bytes of the same length), keeping its
/// stored hashes.
fn tamper_event(dir: &Path, seq: u64, event: &[u8]) {
    let frame = frame_of(dir, seq);
    edit_file(dir, |bytes| {
        let value = &mut bytes[frame.value_offset() as usize..][..frame.len as usize];
        let mut rec = layout::decode_record(seq, value).unwrap();
        assert_eq!(rec.event.len(), event.len(), "a same-length forgery");
        rec.event = event.to_vec();
        value.copy_from_slice(&layout::encode_record(&rec).unwrap());
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
    tamper_event(dir.path(), 4, b"{\"id\":\"X4\"}");
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
    // flip one byte of the event, straight in the file
    let frame = frame_of(dir.path(), 3);
    edit_file(dir.path(), |bytes| {
        bytes[(frame.value_offset() + u64::from(frame.len) - 1) as usize] ^= 0x20;
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
    let frame = frame_of(dir.path(), 2);
    let value = &std::fs::read(record_file(dir.path())).unwrap()[frame.value_offset() as usize..]
        [..frame.len as usize];
    let mut rec = layout::decode_record(2, value).unwrap();
    rec.event = b"{\"forged\":true}".to_vec();
    rec.hash = chain_hash(&rec.prev_hash, &rec.event);
    replace_frame(dir.path(), 2, Some(&layout::encode_record(&rec).unwrap()));
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 3);
    assert!(damage(&e).reason.contains("prev_hash"), "{e}");
}

#[test]
fn a_truncated_record_file_is_found() {
    // cut before the last record, and in the middle of it (a torn write)
    for cut_into in [0u64, 30] {
        let dir = tempfile::tempdir().unwrap();
        closed_log(dir.path(), 10);
        let frame = frame_of(dir.path(), 10);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(record_file(dir.path()))
            .unwrap();
        file.set_len(frame.offset + cut_into).unwrap();
        drop(file);
        for opts in [Options::default(), Options { verify_tail: 0 }] {
            let e = EventLog::open_with(dir.path(), opts).unwrap_err();
            let d = damage(&e);
            assert_eq!(d.seq, 10, "{e}");
            assert!(d.reason.contains("missing"), "{e}");
        }
    }
}

#[test]
fn bytes_past_the_head_are_an_unfinished_append_and_are_cut_off() {
    // an append that wrote its frames and stopped before sled took its batch: never answered,
    // so not part of the log
    let dir = tempfile::tempdir().unwrap();
    let head = closed_log(dir.path(), 5);
    let len = std::fs::metadata(record_file(dir.path())).unwrap().len();
    edit_file(dir.path(), |bytes| bytes.extend_from_slice(&[0xab; 300]));
    let logged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = logged.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || Sink(sink.clone()))
        .finish();
    let log = tracing::subscriber::with_default(subscriber, || EventLog::open(dir.path())).unwrap();
    let logged = String::from_utf8(logged.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("WARN")
            && logged.contains("never completed")
            && logged.contains("bytes=300"),
        "{logged}"
    );
    assert_eq!(log.head(), head);
    assert_eq!(
        std::fs::metadata(record_file(dir.path())).unwrap().len(),
        len
    );
    // kept beside the log, for whoever wants to look
    let aside = dir.path().join(format!("records.unfinished-{len}-300"));
    assert_eq!(std::fs::read(aside).unwrap(), vec![0xab; 300]);
    log.append(req("a", incident_eventlog::ExpectedVersion::Any, &["e6"]))
        .unwrap();
    assert_eq!(log.verify().unwrap().seq, 6);
    assert_eq!(all(&log).len(), 6);
    drop(log);

    // another one cut at the same place is kept too, not written over the first
    let len = std::fs::metadata(record_file(dir.path())).unwrap().len();
    edit_file(dir.path(), |bytes| bytes.extend_from_slice(&[0xcd; 10]));
    drop(EventLog::open(dir.path()).unwrap());
    edit_file(dir.path(), |bytes| bytes.extend_from_slice(&[0xef; 10]));
    drop(EventLog::open(dir.path()).unwrap());
    let first = dir.path().join(format!("records.unfinished-{len}-10"));
    let second = dir.path().join(format!("records.unfinished-{len}-10-1"));
    assert_eq!(std::fs::read(first).unwrap(), vec![0xcd; 10]);
    assert_eq!(std::fs::read(second).unwrap(), vec![0xef; 10]);
}

#[test]
fn a_damaged_log_is_refused_with_its_unfinished_append_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    tamper_event(dir.path(), 8, b"{\"id\":\"X8\"}");
    edit_file(dir.path(), |bytes| bytes.extend_from_slice(&[0xab; 300]));
    let len = std::fs::metadata(record_file(dir.path())).unwrap().len();
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 8);
    assert_eq!(
        std::fs::metadata(record_file(dir.path())).unwrap().len(),
        len
    );
}

#[test]
fn a_batch_entry_past_the_head_is_found() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 3);
    // the head moved back to record 2, but record 3's batch entry is still there
    let frame = frame_of(dir.path(), 3);
    let two = {
        let log = EventLog::open(dir.path()).unwrap();
        Head::from(&log.get(2).unwrap().unwrap())
    };
    with_db(dir.path(), |db| {
        db.insert(
            layout::HEAD_KEY,
            &layout::encode_head(&two, frame.offset)[..],
        )
        .unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 3, "{e}");
    assert!(damage(&e).reason.contains("past the head"), "{e}");

    // an entry far past it is named as itself
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 3);
    with_db(dir.path(), |db| {
        db.insert(layout::batch_key(50), &0u64.to_be_bytes())
            .unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 50, "{e}");
}

#[test]
fn a_lost_database_beside_a_record_file_is_refused_not_started_over() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    let len = std::fs::metadata(record_file(dir.path())).unwrap().len();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path != record_file(dir.path()) {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    for _ in 0..2 {
        let e = EventLog::open(dir.path()).unwrap_err();
        assert!(matches!(e, LogError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("database is empty"), "{e}");
        assert_eq!(
            std::fs::metadata(record_file(dir.path())).unwrap().len(),
            len,
            "the records are kept"
        );
    }
}

#[test]
fn a_lost_head_with_group_commits_left_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 4);
    with_db(dir.path(), |db| {
        db.remove(layout::HEAD_KEY).unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 4, "{e}");
    assert!(e.to_string().contains("has no head"), "{e}");
    assert_eq!(
        layout::record_frames(dir.path()).unwrap().len(),
        4,
        "the records are kept"
    );
}

#[test]
fn a_damaged_length_in_the_last_group_commit_names_its_record() {
    // records 5 and 6 written in one group commit; record 5's length made 3 bytes short: its
    // event reads 3 bytes short (its hash gives it away) and record 6 is read from 3 bytes early
    let dir = tempfile::tempdir().unwrap();
    {
        let log = EventLog::open(dir.path()).unwrap();
        fill(&log, 4);
        log.append(req(
            "c",
            incident_eventlog::ExpectedVersion::NoStream,
            &["e5", "e6"],
        ))
        .unwrap();
    }
    let frame = frame_of(dir.path(), 5);
    edit_file(dir.path(), |bytes| {
        let at = frame.offset as usize;
        bytes[at..at + 4].copy_from_slice(&(frame.len - 3).to_be_bytes());
    });
    let e = EventLog::open_with(dir.path(), Options { verify_tail: 0 }).unwrap_err();
    assert_eq!(damage(&e).seq, 5, "{e}");
    assert!(damage(&e).reason.contains("hash"), "{e}");
}

#[test]
fn a_damaged_length_of_the_last_record_names_that_record() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    let frame = frame_of(dir.path(), 6);
    edit_file(dir.path(), |bytes| {
        let at = frame.offset as usize;
        bytes[at..at + 4].copy_from_slice(&(frame.len - 3).to_be_bytes());
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 6, "{e}");
}

#[test]
fn a_head_that_disagrees_with_the_last_record_is_found() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 3);
    with_db(dir.path(), |db| {
        let (head, end) = stored_head(db);
        let forged = Head {
            seq: head.seq,
            hash: [1; 32],
        };
        db.insert(layout::HEAD_KEY, &layout::encode_head(&forged, end)[..])
            .unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 3);
    assert!(damage(&e).reason.contains("head"), "{e}");

    // a head whose end falls short of the last record's frame
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 3);
    with_db(dir.path(), |db| {
        let (head, end) = stored_head(db);
        db.insert(layout::HEAD_KEY, &layout::encode_head(&head, end - 1)[..])
            .unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 3, "{e}");
}

#[test]
fn a_record_removed_from_the_middle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    replace_frame(dir.path(), 5, None);
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 5, "{e}");
    assert!(damage(&e).reason.contains("record 6 is stored"), "{e}");
}

#[test]
fn a_record_wiped_in_the_middle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    // a zeroed stretch of disk: the frame of record 5, length and all
    let frame = frame_of(dir.path(), 5);
    edit_file(dir.path(), |bytes| {
        let at = frame.offset as usize;
        bytes[at..at + 4 + frame.len as usize].fill(0);
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 5, "{e}");
    // opening reads every frame to index it, so it is found outside the verified tail too
    let e = EventLog::open_with(dir.path(), Options { verify_tail: 3 }).unwrap_err();
    assert_eq!(damage(&e).seq, 5, "{e}");
}

#[test]
fn a_record_wiped_while_the_log_is_open_stops_reads_at_it() {
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    let log = EventLog::open(dir.path()).unwrap();
    let frame = frame_of(dir.path(), 5);
    edit_file(dir.path(), |bytes| {
        let at = frame.offset as usize;
        bytes[at..at + 4 + frame.len as usize].fill(0);
    });
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
    // the records after it are still reached through their own batch entries
    assert_eq!(log.get(6).unwrap().unwrap().event_id, "e6");
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
        replace_frame(dir.path(), seq, Some(garbage));
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
    // a frame length that runs past the end
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    let frame = frame_of(dir.path(), 7);
    edit_file(dir.path(), |bytes| {
        let at = frame.offset as usize;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 7, "{e}");
    assert!(
        damage(&e).reason.contains("more than any record can be"),
        "{e}"
    );
    // and one within the limit, but past the end
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 10);
    let frame = frame_of(dir.path(), 7);
    edit_file(dir.path(), |bytes| {
        let at = frame.offset as usize;
        bytes[at..at + 4].copy_from_slice(&100_000u32.to_be_bytes());
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 7, "{e}");
    assert!(damage(&e).reason.contains("runs past the end"), "{e}");
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
    });
    let log = EventLog::open(dir.path()).unwrap();
    assert!(matches!(log.cursor("c"), Err(LogError::Corrupt { .. })));
    // the rest of the log still works
    log.append(req("c", incident_eventlog::ExpectedVersion::Any, &["y"]))
        .unwrap();
    assert_eq!(log.verify().unwrap().seq, 5);
}

#[test]
fn an_event_id_stored_twice_is_refused_on_open() {
    // the event id is outside the hashed bytes, so only the index sees the second e1
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    duplicate_e1_at_record_3(dir.path());
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 3, "{e}");
    assert!(
        damage(&e)
            .reason
            .contains("event id e1 is already the event id of record 1"),
        "{e}"
    );
}

#[test]
fn a_version_out_of_order_is_refused_on_open() {
    // record 3 is version 2 of stream a; made to say version 5
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    let frame = frame_of(dir.path(), 3);
    edit_file(dir.path(), |bytes| {
        let at = frame.value_offset() as usize + 1 + 8;
        bytes[at..at + 8].copy_from_slice(&5u64.to_be_bytes());
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert_eq!(damage(&e).seq, 3, "{e}");
    assert!(
        damage(&e)
            .reason
            .contains("version 5 of stream a, but should be version 2"),
        "{e}"
    );
}

#[test]
fn a_broken_batch_index_is_found_by_verify() {
    // a batch entry that puts its record where another one is
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    let three = frame_of(dir.path(), 3);
    with_db(dir.path(), |db| {
        db.insert(layout::batch_key(4), &three.offset.to_be_bytes())
            .unwrap();
    });
    let log = EventLog::open_with(dir.path(), Options { verify_tail: 0 }).unwrap();
    let e = log.verify().unwrap_err();
    assert!(e.to_string().contains("batch index"), "{e}");
    assert_eq!(damage(&log.get(4).unwrap_err()).seq, 4);
    assert_eq!(log.get(5).unwrap().unwrap().event_id, "e5");
    drop(log);

    // a batch entry that cannot be read
    let dir = tempfile::tempdir().unwrap();
    closed_log(dir.path(), 6);
    with_db(dir.path(), |db| {
        db.insert(layout::batch_key(3), b"bad").unwrap();
    });
    let log = EventLog::open_with(dir.path(), Options { verify_tail: 0 }).unwrap();
    let e = log.get(3).unwrap_err();
    assert!(e.to_string().contains("cannot be read"), "{e}");
    assert!(
        log.verify()
            .unwrap_err()
            .to_string()
            .contains("cannot be read")
    );
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
