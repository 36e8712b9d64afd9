//! The stored form of incident events: hand-written type names with a version
//! (`incident.opened.v1`), payload structs separate from the domain enum, and the upcast of
//! older versions on read. Golden files in `tests/golden/` pin every stored type.

use jiff::Timestamp;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

use std::borrow::Cow;

use crate::envelope::{EnvelopeFields, EnvelopeRef};
use crate::{
    Envelope, EnvelopeError, EventKind, Impact, IncidentEvent, IncidentId, Priority, Source,
    Status, Urgency,
};

/// The CloudEvents `source` of intake's events.
pub const SOURCE: &str = "incident-intake";

/// Every stored incident event type, current version.
pub const TYPES: [&str; 12] = [
    "incident.opened.v1",
    "incident.acknowledged.v1",
    "incident.assigned.v1",
    "incident.work_started.v1",
    "incident.put_on_hold.v1",
    "incident.resumed.v1",
    "incident.resolved.v1",
    "incident.closed.v1",
    "incident.reopened.v1",
    "incident.commented.v1",
    "incident.priority_changed.v1",
    "incident.duplicate_received.v1",
];

#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("event {ty}: bad data: {reason}")]
    Data { ty: String, reason: String },
    #[error("event {ty}: bad subject: {reason}")]
    Subject { ty: String, reason: String },
}

/// The versioned type name of an event.
pub fn type_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Opened { .. } => TYPES[0],
        EventKind::Acknowledged => TYPES[1],
        EventKind::Assigned { .. } => TYPES[2],
        EventKind::WorkStarted => TYPES[3],
        EventKind::PutOnHold { .. } => TYPES[4],
        EventKind::Resumed => TYPES[5],
        EventKind::Resolved { .. } => TYPES[6],
        EventKind::Closed => TYPES[7],
        EventKind::Reopened { .. } => TYPES[8],
        EventKind::Commented { .. } => TYPES[9],
        EventKind::PriorityChanged { .. } => TYPES[10],
        EventKind::DuplicateReceived { .. } => TYPES[11],
    }
}

// Every payload struct declares its fields in the byte order of their names: serialized as
// declared, that is the canonical form, so `encode_canonical` writes it straight out (a test
// checks it against sorting a JSON value for every type). Strings are borrowed when written
// and owned when read.

#[derive(Serialize, Deserialize)]
struct SourceV1<'a> {
    #[serde(default)]
    key: Cow<'a, str>,
    kind: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct OpenedV1<'a> {
    actor: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dedup_key: Option<Cow<'a, str>>,
    #[serde(default)]
    description: Cow<'a, str>,
    #[serde(default)]
    group: Cow<'a, str>,
    impact: Impact,
    priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<Cow<'a, str>>,
    service: Cow<'a, str>,
    source: SourceV1<'a>,
    title: Cow<'a, str>,
    urgency: Urgency,
}

#[derive(Serialize, Deserialize)]
struct ActorV1<'a> {
    actor: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct AssignedV1<'a> {
    actor: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    assignee: Option<Cow<'a, str>>,
    group: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct ReasonV1<'a> {
    actor: Cow<'a, str>,
    reason: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct ResolvedV1<'a> {
    actor: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<Cow<'a, str>>,
}

#[derive(Serialize, Deserialize)]
struct ReopenedV1<'a> {
    actor: Cow<'a, str>,
    reason: Cow<'a, str>,
    status: Status,
}

#[derive(Serialize, Deserialize)]
struct CommentedV1<'a> {
    actor: Cow<'a, str>,
    text: Cow<'a, str>,
}

#[derive(Serialize, Deserialize)]
struct PriorityChangedV1<'a> {
    actor: Cow<'a, str>,
    from: Priority,
    impact: Impact,
    reason: Cow<'a, str>,
    to: Priority,
    urgency: Urgency,
}

#[derive(Serialize, Deserialize)]
struct DuplicateReceivedV1<'a> {
    actor: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<Cow<'a, str>>,
    source: SourceV1<'a>,
}

/// An event's payload, borrowing from the event: serializes as the payload struct itself.
#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Opened(OpenedV1<'a>),
    Actor(ActorV1<'a>),
    Assigned(AssignedV1<'a>),
    Reason(ReasonV1<'a>),
    Resolved(ResolvedV1<'a>),
    Reopened(ReopenedV1<'a>),
    Commented(CommentedV1<'a>),
    PriorityChanged(PriorityChangedV1<'a>),
    DuplicateReceived(DuplicateReceivedV1<'a>),
}

fn b(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

fn opt(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

fn source_v1(s: &Source) -> SourceV1<'_> {
    SourceV1 {
        key: b(&s.key),
        kind: b(&s.kind),
    }
}

fn source_of(s: SourceV1<'_>) -> Source {
    Source {
        kind: s.kind.into_owned(),
        key: s.key.into_owned(),
    }
}

fn payload(event: &IncidentEvent) -> Payload<'_> {
    let actor = b(&event.actor);
    match &event.kind {
        EventKind::Opened {
            title,
            description,
            service,
            group,
            impact,
            urgency,
            priority,
            dedup_key,
            request_id,
            source,
        } => Payload::Opened(OpenedV1 {
            actor,
            dedup_key: opt(dedup_key),
            description: b(description),
            group: b(group),
            impact: *impact,
            priority: *priority,
            request_id: opt(request_id),
            service: b(service),
            source: source_v1(source),
            title: b(title),
            urgency: *urgency,
        }),
        EventKind::Acknowledged
        | EventKind::WorkStarted
        | EventKind::Resumed
        | EventKind::Closed => Payload::Actor(ActorV1 { actor }),
        EventKind::Assigned { group, assignee } => Payload::Assigned(AssignedV1 {
            actor,
            assignee: opt(assignee),
            group: b(group),
        }),
        EventKind::PutOnHold { reason } => Payload::Reason(ReasonV1 {
            actor,
            reason: b(reason),
        }),
        EventKind::Resolved { note } => Payload::Resolved(ResolvedV1 {
            actor,
            note: opt(note),
        }),
        EventKind::Reopened { reason, status } => Payload::Reopened(ReopenedV1 {
            actor,
            reason: b(reason),
            status: *status,
        }),
        EventKind::Commented { text } => Payload::Commented(CommentedV1 {
            actor,
            text: b(text),
        }),
        EventKind::PriorityChanged {
            from,
            to,
            impact,
            urgency,
            reason,
        } => Payload::PriorityChanged(PriorityChangedV1 {
            actor,
            from: *from,
            impact: *impact,
            reason: b(reason),
            to: *to,
            urgency: *urgency,
        }),
        EventKind::DuplicateReceived { source, request_id } => {
            Payload::DuplicateReceived(DuplicateReceivedV1 {
                actor,
                request_id: opt(request_id),
                source: source_v1(source),
            })
        }
    }
}

/// The stored payload of an event.
pub fn data_of(event: &IncidentEvent) -> Value {
    serde_json::to_value(payload(event)).unwrap_or(Value::Null)
}

/// Wraps an event in its envelope under the given event id (a UUIDv7 the caller generated).
pub fn encode(event: &IncidentEvent, event_id: &str) -> Envelope {
    Envelope::new(
        event_id,
        SOURCE,
        type_name(&event.kind),
        event.incident_id.as_str(),
        event.at,
        data_of(event),
    )
}

/// The canonical bytes of `encode(event, event_id)`, written straight from the event (no JSON
/// value built on the way): what the log stores and the hash chain covers.
pub fn encode_canonical(event: &IncidentEvent, event_id: &str) -> Vec<u8> {
    crate::envelope::canonical_bytes(
        EnvelopeFields {
            specversion: crate::envelope::SPEC_VERSION,
            id: event_id,
            source: SOURCE,
            ty: type_name(&event.kind),
            subject: event.incident_id.as_str(),
            time: event.at,
            datacontenttype: crate::envelope::CONTENT_TYPE,
        },
        // a payload struct serializes into a Vec without fail
        |out| {
            let _ = serde_json::to_writer(out, &payload(event));
        },
    )
}

/// An event's payload as read: a parsed JSON value, or raw JSON straight from the bytes.
trait Data {
    fn parse<T: DeserializeOwned>(self, ty: &str) -> Result<T, DecodeError>;
}

impl Data for &Value {
    fn parse<T: DeserializeOwned>(self, ty: &str) -> Result<T, DecodeError> {
        T::deserialize(self).map_err(|e| bad_data(ty, e))
    }
}

impl Data for &RawValue {
    fn parse<T: DeserializeOwned>(self, ty: &str) -> Result<T, DecodeError> {
        serde_json::from_str(self.get()).map_err(|e| bad_data(ty, e))
    }
}

fn bad_data(ty: &str, e: serde_json::Error) -> DecodeError {
    DecodeError::Data {
        ty: ty.to_owned(),
        reason: e.to_string(),
    }
}

/// Brings an older stored version up to the current one. Every type is at v1 today; when a v2
/// appears, its v1 payload is converted here and v1 files stay readable forever.
fn upcast<D: Data>(ty: &str, data: D) -> Result<(&'static str, D), DecodeError> {
    match TYPES.iter().find(|t| **t == ty) {
        Some(t) => Ok((t, data)),
        None => Err(DecodeError::UnknownType(ty.to_owned())),
    }
}

/// Why stored bytes are not an incident event.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Reads an envelope back into the domain event (upcasting older versions).
pub fn decode(env: &Envelope) -> Result<IncidentEvent, DecodeError> {
    decode_parts(&env.ty, &env.subject, env.time, &env.data)
}

/// Reads an event straight from its stored bytes, without building the envelope's data as a
/// JSON value: the same checks and result as [`Envelope::from_slice`] then [`decode`], faster.
/// For folds of long logs.
pub fn decode_slice(bytes: &[u8]) -> Result<IncidentEvent, ReadError> {
    let env = EnvelopeRef::from_slice(bytes)?;
    Ok(decode_parts(&env.ty, &env.subject, env.time, env.data)?)
}

fn decode_parts<D: Data>(
    ty: &str,
    subject: &str,
    at: Timestamp,
    data: D,
) -> Result<IncidentEvent, DecodeError> {
    let (ty, data) = upcast(ty, data)?;
    let incident_id = IncidentId::parse(subject).map_err(|e| DecodeError::Subject {
        ty: ty.to_owned(),
        reason: e.to_string(),
    })?;
    let (actor, kind) = match ty {
        "incident.opened.v1" => {
            let d: OpenedV1 = data.parse(ty)?;
            (
                d.actor.into_owned(),
                EventKind::Opened {
                    title: d.title.into_owned(),
                    description: d.description.into_owned(),
                    service: d.service.into_owned(),
                    group: d.group.into_owned(),
                    impact: d.impact,
                    urgency: d.urgency,
                    priority: d.priority,
                    dedup_key: d.dedup_key.map(Cow::into_owned),
                    request_id: d.request_id.map(Cow::into_owned),
                    source: source_of(d.source),
                },
            )
        }
        "incident.acknowledged.v1" => (
            data.parse::<ActorV1>(ty)?.actor.into_owned(),
            EventKind::Acknowledged,
        ),
        "incident.work_started.v1" => (
            data.parse::<ActorV1>(ty)?.actor.into_owned(),
            EventKind::WorkStarted,
        ),
        "incident.resumed.v1" => (
            data.parse::<ActorV1>(ty)?.actor.into_owned(),
            EventKind::Resumed,
        ),
        "incident.closed.v1" => (
            data.parse::<ActorV1>(ty)?.actor.into_owned(),
            EventKind::Closed,
        ),
        "incident.assigned.v1" => {
            let d: AssignedV1 = data.parse(ty)?;
            (
                d.actor.into_owned(),
                EventKind::Assigned {
                    group: d.group.into_owned(),
                    assignee: d.assignee.map(Cow::into_owned),
                },
            )
        }
        "incident.put_on_hold.v1" => {
            let d: ReasonV1 = data.parse(ty)?;
            (
                d.actor.into_owned(),
                EventKind::PutOnHold {
                    reason: d.reason.into_owned(),
                },
            )
        }
        "incident.resolved.v1" => {
            let d: ResolvedV1 = data.parse(ty)?;
            (
                d.actor.into_owned(),
                EventKind::Resolved {
                    note: d.note.map(Cow::into_owned),
                },
            )
        }
        "incident.reopened.v1" => {
            let d: ReopenedV1 = data.parse(ty)?;
            (
                d.actor.into_owned(),
                EventKind::Reopened {
                    reason: d.reason.into_owned(),
                    status: d.status,
                },
            )
        }
        "incident.commented.v1" => {
            let d: CommentedV1 = data.parse(ty)?;
            (
                d.actor.into_owned(),
                EventKind::Commented {
                    text: d.text.into_owned(),
                },
            )
        }
        "incident.priority_changed.v1" => {
            let d: PriorityChangedV1 = data.parse(ty)?;
            (
                d.actor.into_owned(),
                EventKind::PriorityChanged {
                    from: d.from,
                    to: d.to,
                    impact: d.impact,
                    urgency: d.urgency,
                    reason: d.reason.into_owned(),
                },
            )
        }
        "incident.duplicate_received.v1" => {
            let d: DuplicateReceivedV1 = data.parse(ty)?;
            (
                d.actor.into_owned(),
                EventKind::DuplicateReceived {
                    source: source_of(d.source),
                    request_id: d.request_id.map(Cow::into_owned),
                },
            )
        }
        other => return Err(DecodeError::UnknownType(other.to_owned())),
    };
    Ok(IncidentEvent {
        incident_id,
        at,
        actor,
        kind,
    })
}
