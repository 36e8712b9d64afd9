//! Intake's snapshot of its state: the projection (every incident, and the `by_dedup` and
//! `by_request` indexes) as it stood after a given record of the log, so a start folds only the
//! records after it. Stored in the log itself (`EventLog::save_snapshot`, sha256-checked) under
//! [`NAME`].
//!
//! The bytes: one header line, then JSON.
//!
//! ```text
//! incident-intake.projection <format> <seq> <hex sha256 hash of record seq>\n
//! {"incidents":[<Incident>, ...],"by_dedup":{"<key>":"<id>", ...},"by_request":{...}}
//! ```
//!
//! The format number comes first, so a snapshot from another build is refused before its body
//! is read. The seq and hash name the record the snapshot was taken at: a snapshot is used only
//! on the log it was taken from, up to that record (a log that lost its tail, or was rebuilt,
//! does not match). A snapshot is a cache: anything wrong with it (damaged, another format,
//! ahead of the log, another history, not matching its own seq) is logged, deleted, and the
//! whole log is folded instead.
//!
//! **Bump [`FORMAT`] whenever `incident_domain::Incident` (or a type it holds) changes shape, or
//! folding gives another result** (a change to `evolve` or to the indexes): an old snapshot would
//! otherwise load a state the fold no longer gives. The golden tests below fail on either.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use incident_domain::{Incident, IncidentId};
use incident_eventlog::{EventLog, GENESIS, Head};
use serde::{Deserialize, Serialize};

use crate::projection::{Parts, PartsRef, Projection};
use crate::{FoldError, fold_after};

/// The snapshot's name in intake's log.
pub const NAME: &str = "intake.projection";
/// The format this build writes and reads.
pub const FORMAT: u32 = 1;
/// The first word of the header line.
const MAGIC: &str = "incident-intake.projection";
/// The header line is short; a first line longer than this is not a header.
const MAX_HEADER: usize = 256;

/// Why snapshot bytes cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not an intake snapshot: {0}")]
    NotASnapshot(String),
    #[error("snapshot format {found}; this build reads format {supported}")]
    Format { found: u32, supported: u32 },
    #[error("snapshot body cannot be read: {0}")]
    Body(#[from] serde_json::Error),
    #[error("snapshot does not hold together: {0}")]
    Inconsistent(String),
}

/// A decoded snapshot: the state after record `at.seq`, whose hash is `at.hash`.
#[derive(Debug)]
pub struct Decoded {
    pub at: Head,
    pub state: Projection,
}

#[derive(Serialize)]
struct BodyRef<'a> {
    incidents: IncidentsRef<'a>,
    by_dedup: &'a HashMap<String, IncidentId>,
    by_request: &'a HashMap<String, IncidentId>,
}

/// The incidents in id order, as a list (each incident holds its id).
struct IncidentsRef<'a>(&'a BTreeMap<IncidentId, Box<Incident>>);

impl Serialize for IncidentsRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.values())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// Boxed as the projection keeps them: each incident is read into its own allocation and
    /// moved into the tree as it is, instead of a temporary list of whole incidents (hundreds
    /// of MB at a million) copied into boxes afterwards.
    #[allow(clippy::vec_box)]
    incidents: Vec<Box<Incident>>,
    by_dedup: HashMap<String, IncidentId>,
    by_request: HashMap<String, IncidentId>,
}

/// Encodes `state`, which must be the fold of the log up to and including record `at`.
pub fn encode(state: &Projection, at: Head) -> Vec<u8> {
    let PartsRef {
        incidents,
        by_dedup,
        by_request,
    } = state.parts();
    // about 600 bytes an incident; reserving avoids most of the regrowth copies
    let mut out = Vec::with_capacity(64 + incidents.len() * 640);
    out.extend_from_slice(
        format!("{MAGIC} {FORMAT} {} {}\n", at.seq, hex::encode(at.hash)).as_bytes(),
    );
    let body = BodyRef {
        incidents: IncidentsRef(incidents),
        by_dedup,
        by_request,
    };
    // writing plain data (strings, numbers, timestamps) into a Vec cannot fail
    serde_json::to_writer(&mut out, &body).expect("a projection serializes to JSON");
    out
}

/// Decodes snapshot bytes and checks that they hold together: no incident twice, every index
/// entry names an incident, and the incidents' versions add up to the seq it was taken at.
pub fn decode(bytes: &[u8]) -> Result<Decoded, SnapshotError> {
    let end = bytes
        .iter()
        .take(MAX_HEADER)
        .position(|b| *b == b'\n')
        .ok_or_else(|| SnapshotError::NotASnapshot("no header line".into()))?;
    let header = std::str::from_utf8(&bytes[..end])
        .map_err(|_| SnapshotError::NotASnapshot("the header is not text".into()))?;
    let mut words = header.split(' ');
    if words.next() != Some(MAGIC) {
        return Err(SnapshotError::NotASnapshot(format!(
            "the header does not start with {MAGIC:?}"
        )));
    }
    let found: u32 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| SnapshotError::NotASnapshot("no format number".into()))?;
    if found != FORMAT {
        return Err(SnapshotError::Format {
            found,
            supported: FORMAT,
        });
    }
    let seq: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| SnapshotError::NotASnapshot("no seq in the header".into()))?;
    let hash: [u8; 32] = words
        .next()
        .and_then(|w| hex::decode(w).ok())
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| SnapshotError::NotASnapshot("no record hash in the header".into()))?;
    if words.next().is_some() {
        return Err(SnapshotError::NotASnapshot(
            "extra words in the header".into(),
        ));
    }

    let body: Body = serde_json::from_slice(&bytes[end + 1..])?;
    let mut incidents = BTreeMap::new();
    let mut versions = 0u64;
    for inc in body.incidents {
        versions += inc.version;
        if let Some(twice) = incidents.insert(inc.id.clone(), inc) {
            return Err(SnapshotError::Inconsistent(format!(
                "incident {} is in it twice",
                twice.id
            )));
        }
    }
    for (index, entries) in [
        ("by_dedup", &body.by_dedup),
        ("by_request", &body.by_request),
    ] {
        if let Some((key, id)) = entries.iter().find(|(_, id)| !incidents.contains_key(*id)) {
            return Err(SnapshotError::Inconsistent(format!(
                "{index} maps {key:?} to {id}, which it does not hold"
            )));
        }
    }
    if versions != seq {
        return Err(SnapshotError::Inconsistent(format!(
            "taken at record {seq}, but its incidents hold {versions} events"
        )));
    }
    Ok(Decoded {
        at: Head { seq, hash },
        state: Projection::from_parts(Parts {
            incidents,
            by_dedup: body.by_dedup,
            by_request: body.by_request,
        }),
    })
}

/// Where a loaded state came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The record the snapshot it started from was taken at; `None` when it folded the whole log.
    pub snapshot_seq: Option<u64>,
    /// Records folded (on top of the snapshot, or all of them).
    pub folded: u64,
    /// Why a snapshot found in the log was not used (and deleted).
    pub discarded: Option<String>,
    /// Time spent reading and decoding the snapshot and folding.
    pub millis: u64,
}

/// Loads intake's state: from the snapshot [`NAME`] plus the records after it when the snapshot
/// is usable, else by folding the whole log (a snapshot that is damaged, of another format,
/// ahead of the log or from another history is logged with a warning and deleted first).
/// A record that cannot be read stops the start, as it does without a snapshot.
pub fn load(log: &EventLog) -> anyhow::Result<(Projection, Loaded)> {
    let started = Instant::now();
    let millis = || started.elapsed().as_millis() as u64;
    let discarded = match usable(log) {
        Ok(None) => None,
        Ok(Some(Decoded { at, mut state })) => match fold_after(&mut state, log, at) {
            Ok(folded) => {
                return Ok((
                    state,
                    Loaded {
                        snapshot_seq: Some(at.seq),
                        folded,
                        discarded: None,
                        millis: millis(),
                    },
                ));
            }
            // a record the log cannot give stops the start whatever the snapshot
            Err(FoldError::Read(e)) => return Err(e),
            // an event that does not fit the snapshot's state: the snapshot is the suspect
            Err(FoldError::History(e)) => {
                Some(format!("the records after it do not fit its state ({e:#})"))
            }
        },
        Err(reason) => Some(reason),
    };
    if let Some(reason) = &discarded {
        tracing::warn!(
            snapshot = NAME,
            reason = %reason,
            "snapshot not used; deleting it and folding the whole log"
        );
        if let Err(e) = log.delete_snapshot(NAME) {
            tracing::warn!(snapshot = NAME, error = %e, "could not delete the snapshot");
        }
    }
    let mut state = Projection::default();
    let folded = fold_after(&mut state, log, Head::GENESIS).map_err(FoldError::into_anyhow)?;
    Ok((
        state,
        Loaded {
            snapshot_seq: None,
            folded,
            discarded,
            millis: millis(),
        },
    ))
}

/// The snapshot when there is one that fits this log; the reason when there is one that does not.
fn usable(log: &EventLog) -> Result<Option<Decoded>, String> {
    let (seq, bytes) = match log.load_snapshot(NAME) {
        Ok(None) => return Ok(None),
        Ok(Some(s)) => s,
        Err(e) => return Err(format!("it cannot be read: {e}")),
    };
    let head = log.head();
    if seq > head.seq {
        return Err(format!(
            "it was taken at record {seq}, ahead of the log's head {}",
            head.seq
        ));
    }
    let decoded = decode(&bytes).map_err(|e| e.to_string())?;
    drop(bytes);
    if decoded.at.seq != seq {
        return Err(format!(
            "it says record {}, the log stored it as record {seq}",
            decoded.at.seq
        ));
    }
    let hash = match seq {
        0 => GENESIS,
        _ => match log.get(seq) {
            Ok(Some(r)) => r.hash,
            Ok(None) => return Err(format!("record {seq} is not in the log")),
            Err(e) => return Err(format!("record {seq} cannot be read: {e}")),
        },
    };
    if hash != decoded.at.hash {
        return Err(format!(
            "it was taken from another history (record {seq}'s hash differs)"
        ));
    }
    Ok(Some(decoded))
}

/// Deletes the snapshot, if there is one: the next start folds the whole log.
pub fn discard(log: &EventLog) -> anyhow::Result<()> {
    log.delete_snapshot(NAME)
        .map_err(|e| anyhow::anyhow!("deleting the snapshot: {e}"))
}

/// Encodes the state and stores it as the snapshot at `at`; returns the bytes written.
pub fn save(log: &EventLog, state: &Projection, at: Head) -> anyhow::Result<usize> {
    let bytes = encode(state, at);
    write(log, at, &bytes)?;
    Ok(bytes.len())
}

/// Stores already encoded snapshot bytes taken at `at`.
pub fn write(log: &EventLog, at: Head, bytes: &[u8]) -> anyhow::Result<()> {
    log.save_snapshot(NAME, at.seq, bytes)
        .map_err(|e| anyhow::anyhow!("writing the snapshot: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use incident_domain::{
        Action, Command, EventKind, Impact, IncidentEvent, OpenIncident, PriorityMatrix, Source,
        Urgency, decide, stored,
    };
    use incident_eventlog::{AppendRequest, ExpectedVersion, NewEvent};

    fn at(s: u64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_780_000_000 + s as i64).unwrap()
    }

    fn open(id: &str, dedup: Option<&str>, request: Option<&str>, t: u64) -> Command {
        Command::new(
            IncidentId::parse(id).unwrap(),
            at(t),
            "alice",
            Action::Open(OpenIncident {
                title: format!("Checkout down ({id})"),
                description: "pages time out".into(),
                service: "payments".into(),
                group: "payments-oncall".into(),
                impact: Impact::High,
                urgency: Urgency::Medium,
                dedup_key: dedup.map(Into::into),
                request_id: request.map(Into::into),
                source: Source {
                    kind: "pagerduty".into(),
                    key: dedup.unwrap_or_default().into(),
                },
            }),
        )
    }

    /// Decides `cmd` against `log`'s current fold and appends its events.
    fn run(log: &EventLog, cmd: Command) {
        let state = crate::rebuild(log).unwrap();
        let events = decide(
            state.get(&cmd.incident_id),
            &cmd,
            &PriorityMatrix::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        append(log, &events);
    }

    fn append(log: &EventLog, events: &[IncidentEvent]) {
        for e in events {
            let id = uuid::Uuid::now_v7().to_string();
            log.append(AppendRequest::new(
                e.incident_id.as_str(),
                ExpectedVersion::Any,
                vec![NewEvent::new(
                    id.clone(),
                    stored::encode(e, &id).to_canonical_bytes(),
                )],
            ))
            .unwrap();
        }
    }

    /// Three incidents: one with a dedup key and a request id, repeated once with another
    /// request id (only `by_request` remembers it); one resolved (its key no longer active);
    /// one with a comment.
    fn history(log: &EventLog) {
        run(log, open("INC-1", Some("db-down"), Some("req-1"), 0));
        run(log, repeat("INC-1", "req-2", 1));
        run(log, open("INC-2", Some("disk-full"), None, 2));
        let id2 = IncidentId::parse("INC-2").unwrap();
        run(
            log,
            Command::new(
                id2.clone(),
                at(3),
                "bob",
                Action::Resolve {
                    note: Some("cleaned".into()),
                },
            ),
        );
        run(log, open("INC-3", None, Some("req-3"), 4));
        run(
            log,
            Command::new(
                IncidentId::parse("INC-3").unwrap(),
                at(5),
                "carol",
                Action::Comment {
                    text: "looking".into(),
                },
            ),
        );
    }

    fn repeat(id: &str, request: &str, t: u64) -> Command {
        Command::new(
            IncidentId::parse(id).unwrap(),
            at(t),
            "pagerduty",
            Action::RecordDuplicate {
                source: Source {
                    kind: "pagerduty".into(),
                    key: "db-down".into(),
                },
                request_id: Some(request.into()),
            },
        )
    }

    fn logged() -> (tempfile::TempDir, EventLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(&dir.path().join("log")).unwrap();
        history(&log);
        (dir, log)
    }

    #[test]
    fn a_round_trip_keeps_incidents_and_both_indexes() {
        let (_dir, log) = logged();
        let state = crate::rebuild(&log).unwrap();
        assert_eq!(state.by_request("req-2").map(|i| i.as_str()), Some("INC-1"));
        assert_eq!(
            state.active_by_dedup("db-down").map(|i| i.as_str()),
            Some("INC-1")
        );
        assert_eq!(state.active_by_dedup("disk-full"), None);

        let decoded = decode(&encode(&state, log.head())).unwrap();
        assert_eq!(decoded.at, log.head());
        assert_eq!(decoded.state, state);
        assert_eq!(
            decoded.state.by_request("req-2").map(|i| i.as_str()),
            Some("INC-1")
        );
        assert_eq!(
            decoded.state.get(&IncidentId::parse("INC-3").unwrap()),
            state.get(&IncidentId::parse("INC-3").unwrap())
        );
    }

    #[test]
    fn foreign_damaged_and_other_format_bytes_are_refused() {
        let (_dir, log) = logged();
        let state = crate::rebuild(&log).unwrap();
        let good = encode(&state, log.head());

        assert!(matches!(
            decode(b"garbage"),
            Err(SnapshotError::NotASnapshot(_))
        ));
        assert!(matches!(
            decode(br#"{"incidents":[]}"#),
            Err(SnapshotError::NotASnapshot(_))
        ));
        let older = String::from_utf8(good.clone()).unwrap().replacen(
            &format!("{MAGIC} {FORMAT} "),
            &format!("{MAGIC} 0 "),
            1,
        );
        assert!(matches!(
            decode(older.as_bytes()),
            Err(SnapshotError::Format {
                found: 0,
                supported: FORMAT
            })
        ));
        let mut cut = good.clone();
        cut.truncate(good.len() - 10);
        assert!(matches!(decode(&cut), Err(SnapshotError::Body(_))));
        // a snapshot that claims another record than its incidents add up to
        let text = String::from_utf8(good).unwrap();
        let wrong_seq = text.replacen(
            &format!("{MAGIC} {FORMAT} {} ", log.head().seq),
            &format!("{MAGIC} {FORMAT} {} ", log.head().seq + 1),
            1,
        );
        assert!(matches!(
            decode(wrong_seq.as_bytes()),
            Err(SnapshotError::Inconsistent(_))
        ));
        // an index naming an incident it does not hold
        let dangling = text.replacen(r#""req-3":"INC-3""#, r#""req-3":"INC-9""#, 1);
        assert_ne!(dangling, text);
        assert!(matches!(
            decode(dangling.as_bytes()),
            Err(SnapshotError::Inconsistent(_))
        ));
    }

    /// The shape of format 1, pinned: if this fails, the snapshot's format changed; bump
    /// [`FORMAT`] (old snapshots are then refused and rebuilt from the log) and update the file.
    #[test]
    fn format_1_golden_still_decodes() {
        let golden = concat!(
            "incident-intake.projection 1 2 ",
            "0000000000000000000000000000000000000000000000000000000000000000\n",
            r#"{"incidents":[{"id":"INC-1","title":"Checkout down","description":"d","#,
            r#""service":"payments","group":"g","assignee":"ann","impact":"high","#,
            r#""urgency":"medium","priority":"P2","status":"acknowledged","#,
            r#""dedup_key":"db-down","request_id":"req-1","opened_at":"2026-05-28T20:26:40Z","#,
            r#""acknowledged_at":"2026-05-28T20:26:41Z","resolved_at":null,"closed_at":null,"#,
            r#""updated_at":"2026-05-28T20:26:41Z","version":2,"hold_reason":null,"#,
            r#""resolution_note":null,"reopen_count":0,"duplicate_count":0,"#,
            r#""sources":[[{"kind":"person","key":""},"2026-05-28T20:26:40Z"]],"#,
            r#""comments":[{"author":"bob","text":"hi","at":"2026-05-28T20:26:41Z"}]}],"#,
            r#""by_dedup":{"db-down":"INC-1"},"by_request":{"req-1":"INC-1"}}"#
        );
        let d = decode(golden.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            d.at,
            Head {
                seq: 2,
                hash: GENESIS
            }
        );
        let id = IncidentId::parse("INC-1").unwrap();
        let inc = d.state.get(&id).unwrap();
        let expected = Incident {
            id: id.clone(),
            title: "Checkout down".into(),
            description: "d".into(),
            service: "payments".into(),
            group: "g".into(),
            assignee: Some("ann".into()),
            impact: Impact::High,
            urgency: Urgency::Medium,
            priority: incident_domain::Priority::P2,
            status: incident_domain::Status::Acknowledged,
            dedup_key: Some("db-down".into()),
            request_id: Some("req-1".into()),
            opened_at: at(0),
            acknowledged_at: Some(at(1)),
            resolved_at: None,
            closed_at: None,
            updated_at: at(1),
            version: 2,
            hold_reason: None,
            resolution_note: None,
            reopen_count: 0,
            duplicate_count: 0,
            sources: vec![(Source::person(), at(0))],
            comments: vec![incident_domain::Comment {
                author: "bob".into(),
                text: "hi".into(),
                at: at(1),
            }],
        };
        assert_eq!(inc, &expected);
        assert_eq!(d.state.active_by_dedup("db-down"), Some(&id));
        assert_eq!(d.state.by_request("req-1"), Some(&id));
        // and this build writes the same shape (the JSON, key for key)
        let written = encode(&d.state, d.at);
        let body = |b: &[u8]| -> serde_json::Value {
            let nl = b.iter().position(|c| *c == b'\n').unwrap();
            serde_json::from_slice(&b[nl + 1..]).unwrap()
        };
        assert_eq!(body(&written), body(golden.as_bytes()));
    }

    /// The fold's result for a fixed history, pinned. A change to how events fold or how the
    /// indexes are kept changes what a fold gives while an old snapshot keeps the old result:
    /// when this fails, bump [`FORMAT`] (old snapshots are then set aside and the log folded),
    /// then update the expected body.
    #[test]
    fn the_fold_of_a_fixed_history_is_pinned() {
        let (_dir, log) = logged();
        let written = encode(&crate::rebuild(&log).unwrap(), log.head());
        let nl = written.iter().position(|c| *c == b'\n').unwrap();
        let got: serde_json::Value = serde_json::from_slice(&written[nl + 1..]).unwrap();
        let expected: serde_json::Value = serde_json::from_str(FOLD_GOLDEN).unwrap();
        assert_eq!(
            got, expected,
            "the fold of the same history changed: bump FORMAT, then update FOLD_GOLDEN to\n{got}"
        );
    }

    const FOLD_GOLDEN: &str = r#"{"by_dedup":{"db-down":"INC-1"},"by_request":{"req-1":"INC-1","req-2":"INC-1","req-3":"INC-3"},"incidents":[{"acknowledged_at":null,"assignee":null,"closed_at":null,"comments":[],"dedup_key":"db-down","description":"pages time out","duplicate_count":1,"group":"payments-oncall","hold_reason":null,"id":"INC-1","impact":"high","opened_at":"2026-05-28T20:26:40Z","priority":"P2","reopen_count":0,"request_id":"req-1","resolution_note":null,"resolved_at":null,"service":"payments","sources":[[{"key":"db-down","kind":"pagerduty"},"2026-05-28T20:26:40Z"],[{"key":"db-down","kind":"pagerduty"},"2026-05-28T20:26:41Z"]],"status":"open","title":"Checkout down (INC-1)","updated_at":"2026-05-28T20:26:41Z","urgency":"medium","version":2},{"acknowledged_at":null,"assignee":null,"closed_at":null,"comments":[],"dedup_key":"disk-full","description":"pages time out","duplicate_count":0,"group":"payments-oncall","hold_reason":null,"id":"INC-2","impact":"high","opened_at":"2026-05-28T20:26:42Z","priority":"P2","reopen_count":0,"request_id":null,"resolution_note":"cleaned","resolved_at":"2026-05-28T20:26:43Z","service":"payments","sources":[[{"key":"disk-full","kind":"pagerduty"},"2026-05-28T20:26:42Z"]],"status":"resolved","title":"Checkout down (INC-2)","updated_at":"2026-05-28T20:26:43Z","urgency":"medium","version":2},{"acknowledged_at":null,"assignee":null,"closed_at":null,"comments":[{"at":"2026-05-28T20:26:45Z","author":"carol","text":"looking"}],"dedup_key":null,"description":"pages time out","duplicate_count":0,"group":"payments-oncall","hold_reason":null,"id":"INC-3","impact":"high","opened_at":"2026-05-28T20:26:44Z","priority":"P2","reopen_count":0,"request_id":"req-3","resolution_note":null,"resolved_at":null,"service":"payments","sources":[[{"key":"","kind":"pagerduty"},"2026-05-28T20:26:44Z"]],"status":"open","title":"Checkout down (INC-3)","updated_at":"2026-05-28T20:26:45Z","urgency":"medium","version":2}]}"#;

    #[test]
    fn load_folds_only_the_records_after_the_snapshot() {
        let (_dir, log) = logged();
        let full = crate::rebuild(&log).unwrap();
        let at_snapshot = log.head();
        save(&log, &full, at_snapshot).unwrap();
        run(&log, open("INC-4", Some("cpu"), Some("req-4"), 6));
        run(&log, repeat("INC-1", "req-5", 7));

        let (state, loaded) = load(&log).unwrap();
        assert_eq!(loaded.snapshot_seq, Some(at_snapshot.seq));
        assert_eq!(loaded.folded, 2);
        assert_eq!(loaded.discarded, None);
        assert_eq!(state, crate::rebuild(&log).unwrap());
        assert_eq!(state.by_request("req-5").map(|i| i.as_str()), Some("INC-1"));
    }

    #[test]
    fn an_unusable_snapshot_is_deleted_and_the_whole_log_folded() {
        let (_dir, log) = logged();
        let full = crate::rebuild(&log).unwrap();
        let head = log.head();
        let cases: Vec<(&str, u64, Vec<u8>)> = vec![
            ("garbage", head.seq, b"not a snapshot".to_vec()),
            ("older format", head.seq, {
                let t = String::from_utf8(encode(&full, head)).unwrap();
                t.replacen(&format!("{MAGIC} {FORMAT} "), &format!("{MAGIC} 0 "), 1)
                    .into_bytes()
            }),
            (
                "ahead",
                head.seq + 5,
                encode(
                    &full,
                    Head {
                        seq: head.seq + 5,
                        ..head
                    },
                ),
            ),
            (
                "another history",
                head.seq,
                encode(
                    &full,
                    Head {
                        seq: head.seq,
                        hash: [7; 32],
                    },
                ),
            ),
        ];
        for (what, seq, bytes) in cases {
            log.save_snapshot(NAME, seq, &bytes).unwrap();
            let (state, loaded) = load(&log).unwrap();
            assert_eq!(state, full, "{what}");
            assert_eq!(loaded.snapshot_seq, None, "{what}");
            assert_eq!(loaded.folded, head.seq, "{what}");
            assert!(loaded.discarded.is_some(), "{what}");
            assert_eq!(log.load_snapshot(NAME).unwrap(), None, "{what}: deleted");
        }
    }

    #[test]
    fn a_snapshot_failing_its_checksum_is_deleted_and_the_whole_log_folded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let full = {
            let log = EventLog::open(&path).unwrap();
            history(&log);
            let full = crate::rebuild(&log).unwrap();
            save(&log, &full, log.head()).unwrap();
            full
        };
        {
            // flip one byte of the stored body, behind the log's back
            let db = incident_eventlog::open_db(&path).unwrap();
            let key = NAME.as_bytes();
            let snapshots = db
                .open_tree(incident_eventlog::layout::SNAPSHOT_TREE)
                .unwrap();
            let mut v = snapshots.get(key).unwrap().unwrap().to_vec();
            let last = v.len() - 3;
            v[last] ^= 0x20;
            snapshots.insert(key, v).unwrap();
            snapshots.flush().unwrap();
        }
        let log = EventLog::open(&path).unwrap();
        assert!(log.load_snapshot(NAME).is_err());
        let (state, loaded) = load(&log).unwrap();
        assert_eq!(state, full);
        assert_eq!(loaded.snapshot_seq, None);
        assert!(
            loaded.discarded.as_deref().unwrap().contains("checksum"),
            "{loaded:?}"
        );
        assert_eq!(log.load_snapshot(NAME).unwrap(), None);
    }

    #[test]
    fn a_record_that_cannot_be_read_after_the_snapshot_still_stops_the_start() {
        let (_dir, log) = logged();
        save(&log, &crate::rebuild(&log).unwrap(), log.head()).unwrap();
        // a well-formed envelope of a type intake does not know
        let id = uuid::Uuid::now_v7().to_string();
        let mut env = stored::encode(
            &IncidentEvent {
                incident_id: IncidentId::parse("INC-1").unwrap(),
                at: at(9),
                actor: "x".into(),
                kind: EventKind::Acknowledged,
            },
            &id,
        );
        env.ty = "incident.unheard_of.v9".into();
        log.append(AppendRequest::new(
            "INC-1",
            ExpectedVersion::Any,
            vec![NewEvent::new(id, env.to_canonical_bytes())],
        ))
        .unwrap();
        let err = load(&log).unwrap_err();
        assert!(format!("{err:#}").contains("cannot be read"), "{err:#}");
        // the snapshot was not to blame: it stays
        assert!(log.load_snapshot(NAME).unwrap().is_some());
    }
}
