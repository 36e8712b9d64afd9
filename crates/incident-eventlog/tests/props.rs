//! Properties: random batches of appends always verify and replay to exactly what a simple
//! model says was accepted; concurrent appenders to different streams all land, gap-free, in
//! one chain, while readers only ever see a valid prefix.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use incident_eventlog::{
    AppendError, AppendRequest, Appended, EventLog, ExpectedVersion, Head, NewEvent, Options,
    verify_chain,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct EventSpec {
    /// Reuse an id already given out (a duplicate) instead of a fresh one.
    reuse: Option<usize>,
    bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
struct ReqSpec {
    stream: u8,
    /// 0 Any, 1 the right version, 2 a wrong version, 3 NoStream.
    expect: u8,
    events: Vec<EventSpec>,
    processed: u8,
}

fn event_spec() -> impl Strategy<Value = EventSpec> {
    (
        prop::option::weighted(0.1, any::<usize>()),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(reuse, bytes)| EventSpec { reuse, bytes })
}

fn req_spec() -> impl Strategy<Value = ReqSpec> {
    (
        0u8..4,
        0u8..4,
        prop::collection::vec(event_spec(), 0..4),
        0u8..3,
    )
        .prop_map(|(stream, expect, events, processed)| ReqSpec {
            stream,
            expect,
            events,
            processed,
        })
}

/// What the log should hold: (stream, version, id, bytes) per record.
#[derive(Default)]
struct Model {
    records: Vec<(String, u64, String, Vec<u8>)>,
    versions: HashMap<String, u64>,
    ids: HashSet<String>,
    given: Vec<String>,
    processed: HashSet<String>,
    refused_processed: HashSet<String>,
    next_input: u64,
}

impl Model {
    /// Builds the request for `spec` and what the log must answer, applying it to the model.
    fn step(&mut self, spec: &ReqSpec) -> (AppendRequest, Result<Appended, AppendError>) {
        let stream = format!("INC-{}", spec.stream);
        let current = self.versions.get(&stream).copied().unwrap_or(0);
        let expected = match spec.expect {
            0 => ExpectedVersion::Any,
            1 => ExpectedVersion::Exact(current),
            2 => ExpectedVersion::Exact(current + 1),
            _ => ExpectedVersion::NoStream,
        };
        let mut events = Vec::new();
        for e in &spec.events {
            let id = match e.reuse {
                Some(i) if !self.given.is_empty() => self.given[i % self.given.len()].clone(),
                _ => {
                    let id = format!("ev-{}", self.given.len());
                    self.given.push(id.clone());
                    id
                }
            };
            events.push(NewEvent::new(id, e.bytes.clone()));
        }
        let processed: Vec<String> = (0..spec.processed)
            .map(|_| {
                self.next_input += 1;
                format!("in-{}", self.next_input)
            })
            .collect();
        let req = AppendRequest {
            stream: stream.clone(),
            expected,
            events: events.clone(),
            processed: processed.clone(),
        };

        let conflict = match expected {
            ExpectedVersion::Any => None,
            ExpectedVersion::NoStream => (current != 0).then_some(0),
            ExpectedVersion::Exact(n) => (n != current).then_some(n),
        };
        let outcome = if let Some(expected) = conflict {
            Err(AppendError::Conflict {
                stream: stream.clone(),
                expected,
                actual: current,
            })
        } else {
            let mut seen = HashSet::new();
            match events
                .iter()
                .find(|e| self.ids.contains(&e.id) || !seen.insert(e.id.clone()))
            {
                Some(dup) => Err(AppendError::DuplicateEventId(dup.id.clone())),
                None => {
                    let head = self.records.len() as u64;
                    let mut version = current;
                    for e in &events {
                        version += 1;
                        self.records
                            .push((stream.clone(), version, e.id.clone(), e.bytes.clone()));
                        self.ids.insert(e.id.clone());
                    }
                    self.versions.insert(stream.clone(), version);
                    self.processed.extend(processed.iter().cloned());
                    let n = events.len() as u64;
                    Ok(if n == 0 {
                        Appended {
                            first_seq: head,
                            last_seq: head,
                            stream_version: current,
                        }
                    } else {
                        Appended {
                            first_seq: head + 1,
                            last_seq: head + n,
                            stream_version: version,
                        }
                    })
                }
            }
        };
        if outcome.is_err() {
            self.refused_processed.extend(processed);
        }
        (req, outcome)
    }

    fn check(&self, log: &EventLog) {
        let head = log.verify().expect("verify");
        assert_eq!(head.seq, self.records.len() as u64);
        let records = all(log);
        assert_eq!(verify_chain(Head::GENESIS, records.clone()), Ok(head));
        let got: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r.stream.clone(),
                    r.version,
                    r.event_id.clone(),
                    r.event.clone(),
                )
            })
            .collect();
        assert_eq!(got, self.records);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.seq, i as u64 + 1);
        }
        for (stream, version) in &self.versions {
            assert_eq!(log.stream_version(stream).unwrap(), *version);
            let versions: Vec<u64> = log
                .read_stream(stream)
                .map(|r| r.unwrap().version)
                .collect();
            assert_eq!(versions, (1..=*version).collect::<Vec<_>>());
        }
        for id in &self.processed {
            assert!(log.is_processed(id).unwrap(), "{id}");
        }
        for id in &self.refused_processed {
            assert!(!log.is_processed(id).unwrap(), "{id}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_verify_and_replay_exactly(
        batches in prop::collection::vec(prop::collection::vec(req_spec(), 1..6), 1..6),
        from in 0u64..30,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path()).unwrap();
        let mut model = Model::default();
        for batch in &batches {
            let (reqs, outcomes): (Vec<_>, Vec<_>) = batch.iter().map(|s| model.step(s)).unzip();
            let results = log.append_batch(reqs);
            prop_assert_eq!(results, outcomes);
            prop_assert_eq!(log.head().seq, model.records.len() as u64);
        }
        model.check(&log);
        let tail: Vec<u64> = log.read_from(from).map(|r| r.unwrap().seq).collect();
        let want: Vec<u64> = (from.max(1)..=model.records.len() as u64).collect();
        prop_assert_eq!(tail, want);
        // visiting borrowed records sees exactly what reading copies out
        let after = match from {
            0 | 1 => Head::GENESIS,
            seq => log
                .read_from(seq - 1)
                .next()
                .map_or(log.head(), |r| Head::from(&r.unwrap())),
        };
        let mut visited = Vec::new();
        let n = log
            .visit_after(after, |r| {
                visited.push(r.to_record());
                Ok::<_, incident_eventlog::LogError>(())
            })
            .unwrap();
        let read: Vec<_> = log.read_from(from).map(Result::unwrap).collect();
        prop_assert_eq!(n, read.len() as u64);
        prop_assert_eq!(visited, read);

        let head = log.head();
        drop(log);
        let log = EventLog::open_with(dir.path(), Options { verify_tail: usize::MAX }).unwrap();
        prop_assert_eq!(log.head(), head);
        model.check(&log);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// The index saved with snapshots taken at random points, and reopening at random points,
    /// answer appends (versions, duplicates) and reads exactly as the model says.
    #[test]
    fn snapshots_and_reopens_keep_the_index_exact(
        batches in prop::collection::vec((prop::collection::vec(req_spec(), 1..5), 0u8..4), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path()).unwrap();
        let mut model = Model::default();
        for (batch, then) in &batches {
            let (reqs, outcomes): (Vec<_>, Vec<_>) = batch.iter().map(|s| model.step(s)).unzip();
            prop_assert_eq!(log.append_batch(reqs), outcomes);
            // 1: a snapshot; 2: a reopen; 3: both
            if then % 2 == 1 {
                log.save_snapshot("state", log.head().seq, b"{}").unwrap();
            }
            if *then >= 2 {
                drop(log);
                log = EventLog::open(dir.path()).unwrap();
            }
        }
        model.check(&log);
        drop(log);
        let log = EventLog::open(dir.path()).unwrap();
        model.check(&log);
    }
}

#[test]
fn concurrent_appends_to_different_streams_all_land() {
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let done = Arc::new(AtomicBool::new(false));

    // a reader that only ever sees a valid prefix of the chain
    let reader = {
        let log = log.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut rounds = 0u64;
            while !done.load(Ordering::SeqCst) || rounds == 0 {
                let records: Vec<_> = log
                    .read_from(1)
                    .collect::<Result<_, _>>()
                    .expect("a reader saw damage");
                let n = records.len() as u64;
                let head =
                    verify_chain(Head::GENESIS, records).expect("a reader saw a broken chain");
                assert_eq!(head.seq, n);
                rounds += 1;
            }
            rounds
        })
    };

    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let stream = format!("INC-{t}");
                let mut version = 0;
                for i in 0..PER_THREAD {
                    let n = 1 + (i % 2);
                    let ids: Vec<String> = (0..n).map(|k| format!("t{t}-{i}-{k}")).collect();
                    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                    let a = log
                        .append(req(&stream, ExpectedVersion::Exact(version), &ids))
                        .expect("append");
                    assert_eq!(a.stream_version, version + n);
                    assert_eq!(a.last_seq - a.first_seq + 1, n);
                    version = a.stream_version;
                }
                version
            })
        })
        .collect();
    let mut total = 0;
    for w in writers {
        total += w.join().expect("writer panicked");
    }
    done.store(true, Ordering::SeqCst);
    assert!(reader.join().expect("reader panicked") > 0);

    assert_eq!(total, THREADS as u64 * (PER_THREAD + PER_THREAD / 2));
    assert_eq!(log.head().seq, total);
    let records = all(&log);
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    assert_eq!(log.verify().unwrap().seq, total);
    for t in 0..THREADS {
        let stream = format!("INC-{t}");
        let versions: Vec<u64> = log
            .read_stream(&stream)
            .map(|r| r.unwrap().version)
            .collect();
        let n = log.stream_version(&stream).unwrap();
        assert_eq!(versions, (1..=n).collect::<Vec<_>>());
    }
    drop(log);
    let log = EventLog::open(dir.path()).unwrap();
    assert_eq!(log.verify().unwrap().seq, total);
}

#[test]
fn concurrent_batches_to_one_stream_never_double_book_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path()).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut won = 0u64;
                for i in 0..30 {
                    let version = log.stream_version("hot").unwrap();
                    let id = format!("t{t}-{i}");
                    match log.append(req("hot", ExpectedVersion::Exact(version), &[&id])) {
                        Ok(_) => won += 1,
                        Err(AppendError::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                won
            })
        })
        .collect();
    let won: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(log.stream_version("hot").unwrap(), won);
    assert_eq!(log.head().seq, won);
    assert_eq!(log.verify().unwrap().seq, won);
}
