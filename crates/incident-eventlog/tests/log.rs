//! The log's behaviour on intact data: appends, reads, concurrency control, batches,
//! duplicates, processed ids, cursors, snapshots, reopening.

mod common;

use std::sync::Arc;

use common::*;
use incident_eventlog::{
    AppendError, AppendRequest, Appended, EventLog, EventStore, ExpectedVersion, GENESIS, Head,
    LogError, chain_hash, verify_chain,
};

#[test]
fn a_new_log_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.head(), Head::GENESIS);
    assert_eq!(log.read_from(1).count(), 0);
    assert_eq!(log.get(1).unwrap(), None);
    assert_eq!(log.stream_version("x").unwrap(), 0);
    assert_eq!(log.verify().unwrap(), Head::GENESIS);
    assert_eq!(log.path(), dir.path());
    drop(log);
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.head(), Head::GENESIS);
}

#[test]
fn append_read_and_replay_from_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let a = log
        .append(req("INC-1", ExpectedVersion::NoStream, &["e1", "e2"]))
        .unwrap();
    assert_eq!(
        a,
        Appended {
            first_seq: 1,
            last_seq: 2,
            stream_version: 2
        }
    );
    let b = log
        .append(req("INC-2", ExpectedVersion::Exact(0), &["e3"]))
        .unwrap();
    assert_eq!(
        b,
        Appended {
            first_seq: 3,
            last_seq: 3,
            stream_version: 1
        }
    );
    let c = log
        .append(req("INC-1", ExpectedVersion::Exact(2), &["e4"]))
        .unwrap();
    assert_eq!((c.first_seq, c.stream_version), (4, 3));

    let recs = all(&log);
    assert_eq!(recs.len(), 4);
    let ids: Vec<_> = recs.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2", "e3", "e4"]);
    let shape: Vec<_> = recs
        .iter()
        .map(|r| (r.seq, r.stream.as_str(), r.version))
        .collect();
    assert_eq!(
        shape,
        [
            (1, "INC-1", 1),
            (2, "INC-1", 2),
            (3, "INC-2", 1),
            (4, "INC-1", 3)
        ]
    );
    // the chain
    assert_eq!(recs[0].prev_hash, GENESIS);
    let mut prev = GENESIS;
    for r in &recs {
        assert_eq!(r.prev_hash, prev);
        assert_eq!(r.hash, chain_hash(&prev, &body(&r.event_id)));
        assert_eq!(r.event, body(&r.event_id));
        assert_eq!(r.hash_hex().len(), 64);
        assert_eq!(r.prev_hash_hex(), hex::encode(prev));
        prev = r.hash;
    }
    assert_eq!(log.head(), Head { seq: 4, hash: prev });

    // replay from a seq
    let tail: Vec<_> = log.read_from(3).map(|r| r.unwrap().seq).collect();
    assert_eq!(tail, [3, 4]);
    assert_eq!(log.read_from(0).count(), 4);
    assert_eq!(log.read_from(5).count(), 0);
    assert_eq!(log.read_from(u64::MAX).count(), 0);

    // visiting stops at the visitor's first error and returns it
    #[derive(Debug)]
    enum Stop {
        At(u64),
        Log,
    }
    impl From<incident_eventlog::LogError> for Stop {
        fn from(_: incident_eventlog::LogError) -> Self {
            Stop::Log
        }
    }
    let mut seen = Vec::new();
    let first = Head::from(&recs[0]);
    let stopped = log.visit_after(first, |r| {
        seen.push(r.event_id.to_owned());
        if r.seq == 3 {
            Err(Stop::At(r.seq))
        } else {
            Ok(())
        }
    });
    assert!(matches!(stopped, Err(Stop::At(3))), "{stopped:?}");
    assert_eq!(seen, ["e2", "e3"]);
    assert_eq!(
        log.visit_after(log.head(), |_| Ok::<_, Stop>(())).unwrap(),
        0
    );

    // continuing after a known record checks the link to it
    let after = Head {
        seq: 2,
        hash: recs[1].hash,
    };
    let mut seqs = Vec::new();
    let n = log
        .visit_after(after, |r| {
            seqs.push(r.seq);
            Ok::<_, incident_eventlog::LogError>(())
        })
        .unwrap();
    assert_eq!((n, seqs), (2, vec![3, 4]));
    let forged = Head {
        seq: 2,
        hash: [7; 32],
    };
    let e = log
        .visit_after(forged, |_| Ok::<_, incident_eventlog::LogError>(()))
        .unwrap_err();
    assert!(e.to_string().contains("prev_hash"), "{e}");

    assert_eq!(log.get(2).unwrap().unwrap(), recs[1]);
    assert_eq!(log.get(0).unwrap(), None);
    assert_eq!(log.get(5).unwrap(), None);
    assert_eq!(log.seq_of_event("e3").unwrap(), Some(3));
    assert_eq!(log.seq_of_event("nope").unwrap(), None);
    assert_eq!(log.stream_version("INC-1").unwrap(), 3);
    assert_eq!(log.stream_version("INC-2").unwrap(), 1);
    assert_eq!(verify_chain(Head::GENESIS, recs.clone()), Ok(log.head()));
    assert_eq!(log.verify().unwrap(), log.head());

    // survives drop + reopen
    let head = log.head();
    drop(log);
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.head(), head);
    assert_eq!(all(&log), recs);
    // the indexes are built again from the records
    assert_eq!(log.stream_version("INC-1").unwrap(), 3);
    assert_eq!(log.seq_of_event("e3").unwrap(), Some(3));
    assert_eq!(log.seq_of_event("nope").unwrap(), None);
    let stream: Vec<u64> = log.read_stream("INC-1").map(|r| r.unwrap().seq).collect();
    assert_eq!(stream, vec![1, 2, 4]);
    assert!(matches!(
        log.append(req("INC-3", ExpectedVersion::NoStream, &["e1"])),
        Err(AppendError::DuplicateEventId(id)) if id == "e1"
    ));
    assert!(matches!(
        log.append(req("INC-1", ExpectedVersion::Exact(2), &["e9"])),
        Err(AppendError::Conflict { actual: 3, .. })
    ));
    let d = log
        .append(req("INC-2", ExpectedVersion::Exact(1), &["e5"]))
        .unwrap();
    assert_eq!((d.first_seq, d.stream_version), (5, 2));
    assert_eq!(log.verify().unwrap().seq, 5);
}

#[test]
fn read_stream_in_version_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    fill(&log, 7);
    // a stream whose name is a prefix of another must not see the other's events
    log.append(req("ab", ExpectedVersion::Any, &["x1"]))
        .unwrap();
    let a: Vec<_> = log
        .read_stream("a")
        .map(|r| {
            let r = r.unwrap();
            (r.version, r.seq, r.event_id)
        })
        .collect();
    assert_eq!(
        a,
        [
            (1, 1, "e1".to_string()),
            (2, 3, "e3".into()),
            (3, 5, "e5".into()),
            (4, 7, "e7".into())
        ]
    );
    assert_eq!(log.read_stream("b").count(), 3);
    assert_eq!(log.read_stream("ab").count(), 1);
    assert_eq!(log.read_stream("nope").count(), 0);
    assert_eq!(log.read_stream("").count(), 0);
}

#[test]
fn optimistic_concurrency_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    log.append(req("s", ExpectedVersion::NoStream, &["e1"]))
        .unwrap();
    assert_eq!(
        log.append(req("s", ExpectedVersion::NoStream, &["e2"])),
        Err(AppendError::Conflict {
            stream: "s".into(),
            expected: 0,
            actual: 1
        })
    );
    assert_eq!(
        log.append(req("s", ExpectedVersion::Exact(3), &["e2"])),
        Err(AppendError::Conflict {
            stream: "s".into(),
            expected: 3,
            actual: 1
        })
    );
    let e = log
        .append(req("s", ExpectedVersion::Exact(0), &["e2"]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "stream s: expected version 0, but it is at version 1"
    );
    // nothing was written by the refused appends
    assert_eq!(log.head().seq, 1);
    assert_eq!(log.seq_of_event("e2").unwrap(), None);
    log.append(req("s", ExpectedVersion::Exact(1), &["e2"]))
        .unwrap();
    log.append(req("s", ExpectedVersion::Any, &["e3"])).unwrap();
    assert_eq!(log.stream_version("s").unwrap(), 3);
}

#[test]
fn a_conflict_in_a_batch_fails_only_that_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    log.append(req("x", ExpectedVersion::Any, &["e0"])).unwrap();
    let results = log.append_batch(vec![
        req("a", ExpectedVersion::NoStream, &["e1"]),
        req("x", ExpectedVersion::NoStream, &["e2"]),
        req("b", ExpectedVersion::NoStream, &["e3", "e4"]),
    ]);
    assert_eq!(
        results,
        vec![
            Ok(Appended {
                first_seq: 2,
                last_seq: 2,
                stream_version: 1
            }),
            Err(AppendError::Conflict {
                stream: "x".into(),
                expected: 0,
                actual: 1
            }),
            Ok(Appended {
                first_seq: 3,
                last_seq: 4,
                stream_version: 2
            }),
        ]
    );
    let ids: Vec<_> = all(&log).into_iter().map(|r| r.event_id).collect();
    assert_eq!(ids, ["e0", "e1", "e3", "e4"]);
    assert_eq!(log.verify().unwrap().seq, 4);
}

#[test]
fn requests_for_one_stream_in_a_batch_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let results = log.append_batch(vec![
        req("s", ExpectedVersion::NoStream, &["e1", "e2"]),
        // checked against the version after the first request
        req("s", ExpectedVersion::Exact(2), &["e3"]),
        // stale: it expects what the stream was before the batch
        req("s", ExpectedVersion::NoStream, &["e4"]),
        req("s", ExpectedVersion::Exact(3), &["e5"]),
    ]);
    assert_eq!(
        results,
        vec![
            Ok(Appended {
                first_seq: 1,
                last_seq: 2,
                stream_version: 2
            }),
            Ok(Appended {
                first_seq: 3,
                last_seq: 3,
                stream_version: 3
            }),
            Err(AppendError::Conflict {
                stream: "s".into(),
                expected: 0,
                actual: 3
            }),
            Ok(Appended {
                first_seq: 4,
                last_seq: 4,
                stream_version: 4
            }),
        ]
    );
    let versions: Vec<_> = log
        .read_stream("s")
        .map(|r| r.map(|r| (r.version, r.event_id)))
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        versions,
        [
            (1, "e1".to_string()),
            (2, "e2".into()),
            (3, "e3".into()),
            (4, "e5".into())
        ]
    );
    assert_eq!(log.stream_version("s").unwrap(), 4);
    // a later batch starts from the committed version
    let r = log.append(req("s", ExpectedVersion::Exact(4), &["e6"]));
    assert_eq!(r.unwrap().stream_version, 5);
}

#[test]
fn duplicate_event_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    log.append(req("s", ExpectedVersion::Any, &["e1"])).unwrap();
    // already in the log, even on another stream
    assert_eq!(
        log.append(req("t", ExpectedVersion::Any, &["e2", "e1"])),
        Err(AppendError::DuplicateEventId("e1".into()))
    );
    // twice in one request
    assert_eq!(
        log.append(req("t", ExpectedVersion::Any, &["e3", "e3"])),
        Err(AppendError::DuplicateEventId("e3".into()))
    );
    // earlier in the same batch
    let results = log.append_batch(vec![
        req("t", ExpectedVersion::Any, &["e4"]),
        req("u", ExpectedVersion::Any, &["e4"]),
    ]);
    assert!(results[0].is_ok());
    assert_eq!(results[1], Err(AppendError::DuplicateEventId("e4".into())));
    assert_eq!(log.head().seq, 2);
    assert_eq!(log.stream_version("t").unwrap(), 1);
    assert_eq!(log.stream_version("u").unwrap(), 0);
    drop(log);
    // and after a reopen
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(
        log.append(req("v", ExpectedVersion::Any, &["e4"])),
        Err(AppendError::DuplicateEventId("e4".into()))
    );
}

#[test]
fn invalid_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    assert!(matches!(
        log.append(req("", ExpectedVersion::Any, &["e1"])),
        Err(AppendError::Invalid(_))
    ));
    assert!(matches!(
        log.append(req("s", ExpectedVersion::Any, &[""])),
        Err(AppendError::Invalid(_))
    ));
    assert_eq!(log.head().seq, 0);
    // an empty request is fine and changes nothing
    assert_eq!(
        log.append(req("s", ExpectedVersion::Any, &[])),
        Ok(Appended {
            first_seq: 0,
            last_seq: 0,
            stream_version: 0
        })
    );
    assert_eq!(log.append_batch(Vec::new()), Vec::new());
}

#[test]
fn processed_ids_are_recorded_with_the_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    assert!(!log.is_processed("in-1").unwrap());
    let a = log
        .append(req("s", ExpectedVersion::NoStream, &["e1"]).with_processed(["in-1"]))
        .unwrap();
    assert_eq!(a.last_seq, 1);
    assert!(log.is_processed("in-1").unwrap());

    // processed ids and no events: first_seq = last_seq = head, version unchanged
    let b = log
        .append(
            AppendRequest::new("s", ExpectedVersion::Exact(1), Vec::new())
                .with_processed(["in-2", "in-3"]),
        )
        .unwrap();
    assert_eq!(
        b,
        Appended {
            first_seq: 1,
            last_seq: 1,
            stream_version: 1
        }
    );
    assert!(log.is_processed("in-2").unwrap());
    assert!(log.is_processed("in-3").unwrap());
    assert_eq!(log.head().seq, 1);

    // a refused request records nothing
    let results = log.append_batch(vec![
        req("s", ExpectedVersion::NoStream, &["e2"]).with_processed(["in-4"]),
        AppendRequest::new("s", ExpectedVersion::Exact(5), Vec::new()).with_processed(["in-5"]),
        req("t", ExpectedVersion::NoStream, &["e3"]).with_processed(["in-6"]),
    ]);
    assert!(results[0].is_err() && results[1].is_err() && results[2].is_ok());
    assert!(!log.is_processed("in-4").unwrap());
    assert!(!log.is_processed("in-5").unwrap());
    assert!(log.is_processed("in-6").unwrap());

    drop(log);
    let log = EventLog::open(dir.path()).unwrap();
    for id in ["in-1", "in-2", "in-3", "in-6"] {
        assert!(log.is_processed(id).unwrap(), "{id}");
    }
    assert!(!log.is_processed("in-4").unwrap());
    assert_eq!(log.verify().unwrap().seq, 2);
}

#[test]
fn cursors_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    fill(&log, 3);
    assert_eq!(log.cursor("relay.INCIDENT_EVENTS").unwrap(), 0);
    log.set_cursor("relay.INCIDENT_EVENTS", 2).unwrap();
    log.set_cursor("other", 3).unwrap();
    log.set_cursor("other", 1).unwrap();
    assert_eq!(log.cursor("relay.INCIDENT_EVENTS").unwrap(), 2);
    drop(log);
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.cursor("relay.INCIDENT_EVENTS").unwrap(), 2);
    assert_eq!(log.cursor("other").unwrap(), 1);
    assert_eq!(log.cursor("never").unwrap(), 0);
    // cursors are not part of the chain
    assert_eq!(log.verify().unwrap().seq, 3);
}

#[test]
fn snapshots_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    fill(&log, 4);
    assert_eq!(log.load_snapshot("state").unwrap(), None);
    log.save_snapshot("state", 3, b"{\"n\":3}").unwrap();
    assert_eq!(
        log.load_snapshot("state").unwrap(),
        Some((3, b"{\"n\":3}".to_vec()))
    );
    log.save_snapshot("state", 4, b"").unwrap();
    log.save_snapshot("other", 1, b"x").unwrap();
    drop(log);
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.load_snapshot("state").unwrap(), Some((4, Vec::new())));
    assert_eq!(
        log.load_snapshot("other").unwrap(),
        Some((1, b"x".to_vec()))
    );
    log.delete_snapshot("other").unwrap();
    assert_eq!(log.load_snapshot("other").unwrap(), None);
}

#[test]
fn the_log_is_usable_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(EventLog::open(dir.path()).unwrap());
    let results = store.append_batch(vec![req("s", ExpectedVersion::NoStream, &["e1", "e2"])]);
    assert!(results[0].is_ok());
    store
        .append(req("t", ExpectedVersion::NoStream, &["e3"]).with_processed(["in"]))
        .unwrap();
    assert_eq!(store.head().seq, 3);
    assert_eq!(store.read_from(2).count(), 2);
    assert_eq!(store.read_stream("s").count(), 2);
    assert_eq!(store.stream_version("s").unwrap(), 2);
    assert_eq!(store.get(3).unwrap().unwrap().event_id, "e3");
    assert_eq!(store.seq_of_event("e2").unwrap(), Some(2));
    assert!(store.is_processed("in").unwrap());
    store.set_cursor("c", 3).unwrap();
    assert_eq!(store.cursor("c").unwrap(), 3);
    store.save_snapshot("snap", 3, b"s").unwrap();
    assert_eq!(
        store.load_snapshot("snap").unwrap(),
        Some((3, b"s".to_vec()))
    );
    assert_eq!(store.verify().unwrap(), store.head());
    store.flush().unwrap();
}

#[test]
fn a_folder_holding_another_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    with_db(dir.path(), |db| {
        db.insert(b"foo", b"bar").unwrap();
    });
    match EventLog::open(dir.path()) {
        Err(LogError::NotALog { path, .. }) => assert_eq!(path, dir.path()),
        other => panic!("expected NotALog, got {other:?}"),
    }
    // and nothing of a log was left in it
    assert!(!record_file(dir.path()).exists());
}

#[test]
fn a_log_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(EventLog::open(dir.path()).unwrap());
    with_db(dir.path(), |db| {
        let mut v = incident_eventlog::layout::MAGIC.to_vec();
        v.push(9);
        db.insert(incident_eventlog::layout::META_KEY, v).unwrap();
    });
    let e = EventLog::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            e,
            LogError::UnsupportedFormat {
                found: 9,
                supported: 3,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn clones_share_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let other = log.clone();
    other
        .append(req("s", ExpectedVersion::Any, &["e1"]))
        .unwrap();
    assert_eq!(log.head().seq, 1);
    assert_eq!(log.get(1).unwrap().unwrap().event_id, "e1");
    log.flush().unwrap();
}

#[test]
fn a_log_reopened_right_after_it_was_dropped_opens() {
    // sled's flusher may hold the file lock a moment after the last handle is dropped
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20u64 {
        let log = EventLog::open(dir.path()).unwrap();
        assert_eq!(log.head().seq, round);
        log.append(AppendRequest {
            stream: "s".into(),
            expected: ExpectedVersion::Any,
            events: vec![incident_eventlog::NewEvent {
                id: format!("e{round}"),
                bytes: b"{}".to_vec(),
            }],
            processed: vec![],
        })
        .unwrap();
        drop(log);
    }
}
