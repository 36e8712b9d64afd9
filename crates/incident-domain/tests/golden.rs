//! Golden files for every stored incident event type: files written once stay readable to the
//! same domain event forever, and today's encoder writes the same canonical bytes.
//! `UPDATE_GOLDEN=1 cargo test -p incident-domain --test golden` writes missing files.

use std::path::PathBuf;

use incident_domain::stored::{self, TYPES};
use incident_domain::testing::{ev, opened};
use incident_domain::*;

fn cases() -> Vec<IncidentEvent> {
    let mut open = opened(Impact::High, Urgency::High);
    if let EventKind::Opened {
        dedup_key,
        request_id,
        source,
        ..
    } = &mut open.kind
    {
        *dedup_key = Some("db-disk-full".into());
        *request_id = Some("req-1".into());
        *source = Source {
            kind: "pagerduty".into(),
            key: "db-disk-full".into(),
        };
    }
    vec![
        open,
        ev(1, EventKind::Acknowledged),
        ev(
            2,
            EventKind::Assigned {
                group: "dba".into(),
                assignee: Some("bob".into()),
            },
        ),
        ev(3, EventKind::WorkStarted),
        ev(
            4,
            EventKind::PutOnHold {
                reason: "waiting on vendor".into(),
            },
        ),
        ev(5, EventKind::Resumed),
        ev(
            6,
            EventKind::Resolved {
                note: Some("disk extended".into()),
            },
        ),
        ev(7, EventKind::Closed),
        ev(
            8,
            EventKind::Reopened {
                reason: "full again".into(),
                status: Status::InProgress,
            },
        ),
        ev(
            9,
            EventKind::Commented {
                text: "see ticket CHG-12\n\"urgent\"".into(),
            },
        ),
        ev(
            10,
            EventKind::PriorityChanged {
                from: Priority::P1,
                to: Priority::P2,
                impact: Impact::High,
                urgency: Urgency::Medium,
                reason: "workaround in place".into(),
            },
        ),
        ev(
            11,
            EventKind::DuplicateReceived {
                source: Source {
                    kind: "alertmanager".into(),
                    key: "{}:{alertname=\"DiskFull\"}".into(),
                },
                // written before the field existed: still reads, as None
                request_id: None,
            },
        ),
    ]
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn every_stored_type_has_a_golden_file_that_still_reads() {
    let cases = cases();
    let covered: Vec<&str> = cases.iter().map(|e| stored::type_name(&e.kind)).collect();
    assert_eq!(
        covered,
        TYPES.to_vec(),
        "one golden case per stored type, in order"
    );
    for (i, event) in cases.iter().enumerate() {
        let ty = stored::type_name(&event.kind);
        let path = dir().join(format!("{ty}.json"));
        let id = format!("0193a1b2-c3d4-7e5f-8a9b-{:012x}", i + 1);
        let encoded = stored::encode(event, &id);
        if !path.exists() && std::env::var_os("UPDATE_GOLDEN").is_some() {
            let pretty = serde_json::to_string_pretty(&encoded).unwrap();
            std::fs::write(&path, pretty + "\n").unwrap();
        }
        let text = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        let env = Envelope::from_slice(&text).unwrap();
        assert_eq!(
            &stored::decode(&env).unwrap(),
            event,
            "{ty}: decodes to the event"
        );
        assert_eq!(
            &stored::decode_slice(&text).unwrap(),
            event,
            "{ty}: decodes to the event straight from the bytes"
        );
        assert_eq!(
            env.to_canonical_bytes(),
            encoded.to_canonical_bytes(),
            "{ty}: today's encoder writes the same bytes"
        );
        assert_eq!(
            env.to_canonical_bytes(),
            stored::encode_canonical(event, &id),
            "{ty}: the bytes written straight from the event are the same"
        );
    }
}

#[test]
fn unknown_types_and_bad_data_are_decode_errors() {
    let good = stored::encode(&ev(1, EventKind::Acknowledged), "id-1");
    let mut unknown = good.clone();
    unknown.ty = "incident.exploded.v1".into();
    assert!(matches!(
        stored::decode(&unknown),
        Err(stored::DecodeError::UnknownType(_))
    ));
    let mut future = good.clone();
    future.ty = "incident.acknowledged.v9".into();
    assert!(stored::decode(&future).is_err());
    let mut bad = stored::encode(&opened(Impact::Low, Urgency::Low), "id-2");
    bad.data["impact"] = serde_json::json!("enormous");
    let err = stored::decode(&bad).unwrap_err().to_string();
    assert!(err.contains("incident.opened.v1"), "{err}");
    let mut bad_subject = good;
    bad_subject.subject = "a.b".into();
    assert!(matches!(
        stored::decode(&bad_subject),
        Err(stored::DecodeError::Subject { .. })
    ));
}
