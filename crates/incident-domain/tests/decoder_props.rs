//! The event decoder never panics, whatever bytes arrive: arbitrary bytes, arbitrary JSON, and
//! valid envelopes with mangled fields are errors or events, nothing else. Valid events survive
//! a round trip through their canonical bytes. The fast path that reads straight from the bytes
//! (`stored::decode_slice`) accepts, refuses and decodes exactly like the envelope path. The
//! canonical bytes the hash chain is computed over are those of the sorted JSON value, and the
//! encoder that writes them straight from an event (`stored::encode_canonical`) writes exactly
//! those bytes for every type.

use incident_domain::stored::{self, DecodeError, TYPES};
use incident_domain::testing::{ev, opened};
use incident_domain::*;
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Decodes `bytes` both ways and checks they agree: the same event, or both refusing (for the
/// same kind of reason once the envelope itself was accepted; serde words some reasons
/// differently when it reads from bytes).
fn decode_both(bytes: &[u8]) -> Result<IncidentEvent, String> {
    let slow = Envelope::from_slice(bytes).map(|env| stored::decode(&env));
    let fast = stored::decode_slice(bytes);
    match (slow, fast) {
        (Ok(Ok(a)), Ok(b)) => {
            assert_eq!(a, b);
            Ok(a)
        }
        (Ok(Err(a)), Err(stored::ReadError::Decode(b))) => {
            let same = match (&a, &b) {
                (DecodeError::UnknownType(x), DecodeError::UnknownType(y)) => x == y,
                (DecodeError::Data { ty: x, .. }, DecodeError::Data { ty: y, .. }) => x == y,
                (DecodeError::Subject { ty: x, .. }, DecodeError::Subject { ty: y, .. }) => x == y,
                _ => false,
            };
            assert!(same, "{a:?} against {b:?}");
            Err(a.to_string())
        }
        (Err(a), Err(stored::ReadError::Envelope(_))) => Err(a.to_string()),
        (slow, fast) => panic!("the two decoders disagree: {slow:?} against {fast:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_both(&bytes);
    }

    #[test]
    fn arbitrary_data_under_every_type_never_panics(
        ty in prop::sample::select(TYPES.to_vec()),
        data in json_value(),
        subject in "[A-Za-z0-9_.*> -]{0,70}",
    ) {
        let env = json!({
            "specversion": "1.0", "id": "x", "source": "incident-intake", "type": ty,
            "subject": subject, "time": "2026-12-01T09:00:00Z",
            "datacontenttype": "application/json", "data": data,
        });
        let _ = decode_both(env.to_string().as_bytes());
    }

    #[test]
    fn valid_events_round_trip_through_canonical_bytes(
        title in "[^\u{0}-\u{1f}]{1,80}",
        reason in "[^\u{0}-\u{1f}]{1,80}",
        minutes in 0i64..100_000,
    ) {
        let mut open = opened(Impact::Medium, Urgency::Low);
        if let EventKind::Opened { title: t, .. } = &mut open.kind {
            *t = title;
        }
        for event in [open, ev(minutes, EventKind::PutOnHold { reason })] {
            let bytes = stored::encode(&event, "0193a1b2-c3d4-7e5f-8a9b-000000000001").to_canonical_bytes();
            let back = decode_both(&bytes).unwrap();
            prop_assert_eq!(back, event);
        }
    }
}

#[test]
fn both_decoders_refuse_the_same_envelopes() {
    let good = json!({
        "specversion": "1.0", "id": "x", "source": "incident-intake",
        "type": "incident.acknowledged.v1", "subject": "INC-1",
        "time": "2026-12-01T09:00:00Z", "datacontenttype": "application/json",
        "data": {"actor": "ann"},
    });
    assert!(decode_both(good.to_string().as_bytes()).is_ok());
    let mangled: [(&str, Value); 8] = [
        ("specversion", json!("0.3")),
        ("id", json!("")),
        ("subject", json!("")),
        ("type", json!("incident.unknown.v1")),
        ("time", json!("yesterday")),
        ("data", json!({"actor": 7})),
        ("data", json!(null)),
        ("source", json!(3)),
    ];
    for (field, value) in mangled {
        let mut env = good.clone();
        env[field] = value;
        let e = decode_both(env.to_string().as_bytes());
        assert!(e.is_err(), "{field} mangled was accepted");
    }
    let mut no_data = good.clone();
    no_data.as_object_mut().unwrap().remove("data");
    assert!(decode_both(no_data.to_string().as_bytes()).is_err());
    // escaped strings are read, not borrowed
    let mut escaped = good.clone();
    escaped["data"] = json!({"actor": "a\"b\u{e9}"});
    let event = decode_both(escaped.to_string().as_bytes()).unwrap();
    assert_eq!(event.actor, "a\"b\u{e9}");
}

/// The canonical bytes as first defined: the envelope serialized to a JSON value, then written
/// with every object's keys sorted.
fn through_a_value(env: &Envelope) -> Vec<u8> {
    let value = serde_json::to_value(env).unwrap();
    let mut out = Vec::new();
    incident_domain::envelope::write_canonical(&value, &mut out);
    out
}

proptest! {
    /// The hash chain is computed over these bytes: they must not change.
    #[test]
    fn canonical_bytes_are_those_of_the_sorted_json_value(
        id in ".{0,40}",
        source in ".{0,20}",
        ty in ".{0,30}",
        subject in ".{0,30}",
        content in ".{0,20}",
        spec in ".{0,5}",
        secs in -62_000_000_000i64..250_000_000_000,
        nanos in 0u32..1_000_000_000,
        data in json_value(),
    ) {
        let time = jiff::Timestamp::new(secs, nanos as i32).unwrap();
        let mut env = Envelope::new(id, &source, &ty, &subject, time, data);
        env.datacontenttype = content;
        env.specversion = spec;
        prop_assert_eq!(env.to_canonical_bytes(), through_a_value(&env));
    }
}

/// One event of each stored type built from the given strings, with every optional field set
/// or every one left out.
fn every_type(s: [String; 4], set: bool) -> Vec<IncidentEvent> {
    let [a, b, c, d] = s;
    let some = |v: &String| set.then(|| v.clone());
    let source = Source {
        kind: c.clone(),
        key: d.clone(),
    };
    let mut open = opened(Impact::Low, Urgency::High);
    if let EventKind::Opened {
        title,
        description,
        service,
        group,
        dedup_key,
        request_id,
        source: src,
        ..
    } = &mut open.kind
    {
        (*title, *description, *service, *group) = (a.clone(), b.clone(), c.clone(), d.clone());
        (*dedup_key, *request_id, *src) = (some(&a), some(&b), source.clone());
    }
    open.actor = d.clone();
    let mut events = vec![
        open,
        ev(1, EventKind::Acknowledged),
        ev(
            2,
            EventKind::Assigned {
                group: a.clone(),
                assignee: some(&b),
            },
        ),
        ev(3, EventKind::WorkStarted),
        ev(4, EventKind::PutOnHold { reason: a.clone() }),
        ev(5, EventKind::Resumed),
        ev(6, EventKind::Resolved { note: some(&c) }),
        ev(7, EventKind::Closed),
        ev(
            8,
            EventKind::Reopened {
                reason: b.clone(),
                status: Status::OnHold,
            },
        ),
        ev(9, EventKind::Commented { text: c.clone() }),
        ev(
            10,
            EventKind::PriorityChanged {
                from: Priority::P4,
                to: Priority::P1,
                impact: Impact::High,
                urgency: Urgency::Medium,
                reason: d.clone(),
            },
        ),
        ev(
            11,
            EventKind::DuplicateReceived {
                source,
                request_id: some(&a),
            },
        ),
    ];
    for e in &mut events[1..] {
        e.actor = a.clone();
    }
    events
}

proptest! {
    /// The log and the hash chain take the bytes written straight from the event: they are the
    /// canonical bytes of the envelope, for every type, whatever its strings hold.
    #[test]
    fn events_written_straight_out_are_their_canonical_bytes(
        s in prop::array::uniform4(".{0,24}"),
        set in any::<bool>(),
    ) {
        let events = every_type(s, set);
        let types: Vec<&str> = events.iter().map(|e| stored::type_name(&e.kind)).collect();
        prop_assert_eq!(types, TYPES.to_vec());
        for event in events {
            let id = "0193a1b2-c3d4-7e5f-8a9b-000000000001";
            let straight = stored::encode_canonical(&event, id);
            prop_assert_eq!(&straight, &stored::encode(&event, id).to_canonical_bytes());
            prop_assert_eq!(decode_both(&straight).unwrap(), event);
        }
    }
}
