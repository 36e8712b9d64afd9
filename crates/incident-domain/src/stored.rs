//! The stored form of incident events: hand-written type names with a version
//! (`incident.opened.v1`), payload structs separate from the domain enum, and the upcast of
//! older versions on read. Golden files in `tests/golden/` pin every stored type.

use jiff::Timestamp;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::envelope::EnvelopeRef;
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

#[derive(Serialize, Deserialize)]
struct SourceV1 {
    kind: String,
    #[serde(default)]
    key: String,
}

#[derive(Serialize, Deserialize)]
struct OpenedV1 {
    actor: String,
    title: String,
    #[serde(default)]
    description: String,
    service: String,
    #[serde(default)]
    group: String,
    impact: Impact,
    urgency: Urgency,
    priority: Priority,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dedup_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    source: SourceV1,
}

#[derive(Serialize, Deserialize)]
struct ActorV1 {
    actor: String,
}

#[derive(Serialize, Deserialize)]
struct AssignedV1 {
    actor: String,
    group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    assignee: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ReasonV1 {
    actor: String,
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct ResolvedV1 {
    actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ReopenedV1 {
    actor: String,
    reason: String,
    status: Status,
}

#[derive(Serialize, Deserialize)]
struct CommentedV1 {
    actor: String,
    text: String,
}

#[derive(Serialize, Deserialize)]
struct PriorityChangedV1 {
    actor: String,
    from: Priority,
    to: Priority,
    impact: Impact,
    urgency: Urgency,
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct DuplicateReceivedV1 {
    actor: String,
    source: SourceV1,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
}

fn source_v1(s: &Source) -> SourceV1 {
    SourceV1 {
        kind: s.kind.clone(),
        key: s.key.clone(),
    }
}

fn source_of(s: SourceV1) -> Source {
    Source {
        kind: s.kind,
        key: s.key,
    }
}

fn to_value<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The stored payload of an event.
pub fn data_of(event: &IncidentEvent) -> Value {
    let actor = event.actor.clone();
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
        } => to_value(OpenedV1 {
            actor,
            title: title.clone(),
            description: description.clone(),
            service: service.clone(),
            group: group.clone(),
            impact: *impact,
            urgency: *urgency,
            priority: *priority,
            dedup_key: dedup_key.clone(),
            request_id: request_id.clone(),
            source: source_v1(source),
        }),
        EventKind::Acknowledged
        | EventKind::WorkStarted
        | EventKind::Resumed
        | EventKind::Closed => to_value(ActorV1 { actor }),
        EventKind::Assigned { group, assignee } => to_value(AssignedV1 {
            actor,
            group: group.clone(),
            assignee: assignee.clone(),
        }),
        EventKind::PutOnHold { reason } => to_value(ReasonV1 {
            actor,
            reason: reason.clone(),
        }),
        EventKind::Resolved { note } => to_value(ResolvedV1 {
            actor,
            note: note.clone(),
        }),
        EventKind::Reopened { reason, status } => to_value(ReopenedV1 {
            actor,
            reason: reason.clone(),
            status: *status,
        }),
        EventKind::Commented { text } => to_value(CommentedV1 {
            actor,
            text: text.clone(),
        }),
        EventKind::PriorityChanged {
            from,
            to,
            impact,
            urgency,
            reason,
        } => to_value(PriorityChangedV1 {
            actor,
            from: *from,
            to: *to,
            impact: *impact,
            urgency: *urgency,
            reason: reason.clone(),
        }),
        EventKind::DuplicateReceived { source, request_id } => to_value(DuplicateReceivedV1 {
            actor,
            source: source_v1(source),
            request_id: request_id.clone(),
        }),
    }
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
                d.actor,
                EventKind::Opened {
                    title: d.title,
                    description: d.description,
                    service: d.service,
                    group: d.group,
                    impact: d.impact,
                    urgency: d.urgency,
                    priority: d.priority,
                    dedup_key: d.dedup_key,
                    request_id: d.request_id,
                    source: source_of(d.source),
                },
            )
        }
        "incident.acknowledged.v1" => (data.parse::<ActorV1>(ty)?.actor, EventKind::Acknowledged),
        "incident.work_started.v1" => (data.parse::<ActorV1>(ty)?.actor, EventKind::WorkStarted),
        "incident.resumed.v1" => (data.parse::<ActorV1>(ty)?.actor, EventKind::Resumed),
        "incident.closed.v1" => (data.parse::<ActorV1>(ty)?.actor, EventKind::Closed),
        "incident.assigned.v1" => {
            let d: AssignedV1 = data.parse(ty)?;
            (
                d.actor,
                EventKind::Assigned {
                    group: d.group,
                    assignee: d.assignee,
                },
            )
        }
        "incident.put_on_hold.v1" => {
            let d: ReasonV1 = data.parse(ty)?;
            (d.actor, EventKind::PutOnHold { reason: d.reason })
        }
        "incident.resolved.v1" => {
            let d: ResolvedV1 = data.parse(ty)?;
            (d.actor, EventKind::Resolved { note: d.note })
        }
        "incident.reopened.v1" => {
            let d: ReopenedV1 = data.parse(ty)?;
            (
                d.actor,
                EventKind::Reopened {
                    reason: d.reason,
                    status: d.status,
                },
            )
        }
        "incident.commented.v1" => {
            let d: CommentedV1 = data.parse(ty)?;
            (d.actor, EventKind::Commented { text: d.text })
        }
        "incident.priority_changed.v1" => {
            let d: PriorityChangedV1 = data.parse(ty)?;
            (
                d.actor,
                EventKind::PriorityChanged {
                    from: d.from,
                    to: d.to,
                    impact: d.impact,
                    urgency: d.urgency,
                    reason: d.reason,
                },
            )
        }
        "incident.duplicate_received.v1" => {
            let d: DuplicateReceivedV1 = data.parse(ty)?;
            (
                d.actor,
                EventKind::DuplicateReceived {
                    source: source_of(d.source),
                    request_id: d.request_id,
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
