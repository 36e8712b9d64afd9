//! The event decoder never panics, whatever bytes arrive: arbitrary bytes, arbitrary JSON, and
//! valid envelopes with mangled fields are errors or events, nothing else. Valid events survive
//! a round trip through their canonical bytes.

use incident_domain::stored::{self, TYPES};
use incident_domain::testing::{ev, opened};
use incident_domain::*;
use proptest::prelude::*;
use serde_json::{Value, json};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(env) = Envelope::from_slice(&bytes) {
            let _ = stored::decode(&env);
        }
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
        if let Ok(env) = Envelope::from_slice(env.to_string().as_bytes()) {
            let _ = stored::decode(&env);
        }
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
            let back = stored::decode(&Envelope::from_slice(&bytes).unwrap()).unwrap();
            prop_assert_eq!(back, event);
        }
    }
}
