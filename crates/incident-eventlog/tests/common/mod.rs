//! Helpers shared by the integration tests: building requests, filling a log, and opening the
//! sled database under a (closed) log to tamper with it.

#![allow(dead_code)]

use std::path::Path;

use incident_eventlog::{AppendRequest, EventLog, ExpectedVersion, NewEvent, Record};

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
