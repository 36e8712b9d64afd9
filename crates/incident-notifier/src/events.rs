//! The notifier's events: what it writes to its own log and relays to `NOTIFY_EVENTS`
//! (`source: incident-notifier`, subject = the incident id). Type names and versions are written
//! by hand here; the payload structs are the stored form (documented in docs/events.md).

use incident_domain::{Envelope, Priority, Status};
use jiff::Timestamp;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

pub const SOURCE: &str = "incident-notifier";

pub const OBSERVED: &str = "notification.incident_observed.v1";
pub const QUEUED: &str = "notification.queued.v1";
pub const DELIVERED: &str = "notification.delivered.v1";
pub const FAILED: &str = "notification.failed.v1";
pub const SUPPRESSED: &str = "notification.suppressed.v1";
pub const PAGE_STARTED: &str = "page.started.v1";
pub const PAGE_ESCALATED: &str = "page.escalated.v1";
pub const PAGE_STOPPED: &str = "page.stopped.v1";

/// The input event that caused something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    pub event_id: String,
    /// The full type with its version, e.g. `incident.opened.v1`.
    #[serde(rename = "type")]
    pub ty: String,
}

/// What the notifier knows of an incident: enough to route and to write a message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub group: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// Which page (and which step of it) a notification belongs to. Tiers and rounds count from 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRef {
    pub page_id: String,
    pub oncall: String,
    pub tier: u32,
    pub round: u32,
}

/// `notification.incident_observed.v1`: the incident summary changed (recorded so a restart
/// can route later events without asking intake).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub trigger: Trigger,
    pub incident: Summary,
}

/// `notification.queued.v1`: a message to send, with everything needed to send it again after
/// a restart (the body is built from these fields only, so every attempt sends the same bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    pub notification_id: String,
    pub trigger: Trigger,
    pub route: String,
    pub channel: String,
    /// `webhook`, `slack`, `email` or `log`.
    pub kind: String,
    pub reason: String,
    pub incident: Summary,
    /// The triggering event's envelope.
    pub event: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<PageRef>,
}

/// `notification.delivered.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub notification_id: String,
    pub channel: String,
    pub attempts: u32,
    /// HTTP status code, SMTP reply, or `logged`.
    pub response: String,
}

/// `notification.failed.v1`: one failed attempt; `permanent` ends the notification, otherwise
/// it is tried again at `next_attempt_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failed {
    pub notification_id: String,
    pub channel: String,
    pub attempts: u32,
    pub error: String,
    pub permanent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
}

/// `notification.suppressed.v1`: a notification a silence kept from being sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressed {
    pub notification_id: String,
    pub trigger: Trigger,
    pub route: String,
    pub channel: String,
    pub silence: String,
    pub until: Timestamp,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<PageRef>,
}

/// `page.started.v1`: an on-call chain is paging, tier 1 of round 1, until `ack_deadline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageStarted {
    pub page_id: String,
    pub oncall: String,
    pub trigger: Trigger,
    pub route: String,
    pub tier: u32,
    pub round: u32,
    pub ack_deadline: Timestamp,
    /// The triggering event's envelope, sent along with every tier's messages.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub event: Value,
}

/// `page.escalated.v1`: nobody acknowledged in time; the page moved on to `tier` of `round`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageEscalated {
    pub page_id: String,
    pub oncall: String,
    pub tier: u32,
    pub round: u32,
    pub reason: String,
    pub ack_deadline: Timestamp,
}

/// `page.stopped.v1`: acknowledged, silenced, or every round exhausted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageStopped {
    pub page_id: String,
    pub oncall: String,
    pub reason: String,
    /// The event that stopped it (an acknowledgement), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Trigger>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NotifierEvent {
    Observed(Observed),
    Queued(Box<Queued>),
    Delivered(Delivered),
    Failed(Failed),
    Suppressed(Suppressed),
    PageStarted(PageStarted),
    PageEscalated(PageEscalated),
    PageStopped(PageStopped),
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an event envelope: {0}")]
    Envelope(String),
    #[error("unknown notifier event type {0:?}")]
    UnknownType(String),
    #[error("event {ty}: bad data: {reason}")]
    Data { ty: String, reason: String },
}

impl NotifierEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            NotifierEvent::Observed(_) => OBSERVED,
            NotifierEvent::Queued(_) => QUEUED,
            NotifierEvent::Delivered(_) => DELIVERED,
            NotifierEvent::Failed(_) => FAILED,
            NotifierEvent::Suppressed(_) => SUPPRESSED,
            NotifierEvent::PageStarted(_) => PAGE_STARTED,
            NotifierEvent::PageEscalated(_) => PAGE_ESCALATED,
            NotifierEvent::PageStopped(_) => PAGE_STOPPED,
        }
    }

    pub fn data(&self) -> Value {
        let v = match self {
            NotifierEvent::Observed(d) => serde_json::to_value(d),
            NotifierEvent::Queued(d) => serde_json::to_value(d),
            NotifierEvent::Delivered(d) => serde_json::to_value(d),
            NotifierEvent::Failed(d) => serde_json::to_value(d),
            NotifierEvent::Suppressed(d) => serde_json::to_value(d),
            NotifierEvent::PageStarted(d) => serde_json::to_value(d),
            NotifierEvent::PageEscalated(d) => serde_json::to_value(d),
            NotifierEvent::PageStopped(d) => serde_json::to_value(d),
        };
        v.unwrap_or(Value::Null)
    }

    /// The envelope under `event_id` (a UUIDv7 the caller generated).
    pub fn encode(&self, event_id: &str, incident_id: &str, at: Timestamp) -> Envelope {
        Envelope::new(
            event_id,
            SOURCE,
            self.type_name(),
            incident_id,
            at,
            self.data(),
        )
    }

    /// Reads an envelope of the notifier's log back. Every type is at v1; a v2 would be upcast
    /// here.
    pub fn decode(env: &Envelope) -> Result<Self, DecodeError> {
        fn parse<T: DeserializeOwned>(ty: &str, data: &Value) -> Result<T, DecodeError> {
            serde_json::from_value(data.clone()).map_err(|e| DecodeError::Data {
                ty: ty.to_owned(),
                reason: e.to_string(),
            })
        }
        let ty = env.ty.as_str();
        let d = &env.data;
        Ok(match ty {
            OBSERVED => NotifierEvent::Observed(parse(ty, d)?),
            QUEUED => NotifierEvent::Queued(Box::new(parse(ty, d)?)),
            DELIVERED => NotifierEvent::Delivered(parse(ty, d)?),
            FAILED => NotifierEvent::Failed(parse(ty, d)?),
            SUPPRESSED => NotifierEvent::Suppressed(parse(ty, d)?),
            PAGE_STARTED => NotifierEvent::PageStarted(parse(ty, d)?),
            PAGE_ESCALATED => NotifierEvent::PageEscalated(parse(ty, d)?),
            PAGE_STOPPED => NotifierEvent::PageStopped(parse(ty, d)?),
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        })
    }

    pub fn decode_bytes(bytes: &[u8]) -> Result<(Envelope, Self), DecodeError> {
        let env = Envelope::from_slice(bytes).map_err(|e| DecodeError::Envelope(e.to_string()))?;
        let ev = Self::decode(&env)?;
        Ok((env, ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_type_round_trips_through_its_envelope() {
        let at: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let trigger = Trigger {
            event_id: "e1".into(),
            ty: "incident.opened.v1".into(),
        };
        let page = Some(PageRef {
            page_id: "p".into(),
            oncall: "infra".into(),
            tier: 1,
            round: 1,
        });
        let all = vec![
            NotifierEvent::Observed(Observed {
                trigger: trigger.clone(),
                incident: Summary {
                    title: "t".into(),
                    priority: Some(Priority::P1),
                    status: Some(Status::Open),
                    ..Summary::default()
                },
            }),
            NotifierEvent::Queued(Box::new(Queued {
                notification_id: "n".into(),
                trigger: trigger.clone(),
                route: "r".into(),
                channel: "c".into(),
                kind: "webhook".into(),
                reason: "why".into(),
                incident: Summary::default(),
                event: json!({"id": "e1"}),
                page: page.clone(),
            })),
            NotifierEvent::Delivered(Delivered {
                notification_id: "n".into(),
                channel: "c".into(),
                attempts: 2,
                response: "200".into(),
            }),
            NotifierEvent::Failed(Failed {
                notification_id: "n".into(),
                channel: "c".into(),
                attempts: 1,
                error: "500".into(),
                permanent: false,
                next_attempt_at: Some(at),
            }),
            NotifierEvent::Suppressed(Suppressed {
                notification_id: "n".into(),
                trigger: trigger.clone(),
                route: "r".into(),
                channel: "c".into(),
                silence: "s".into(),
                until: at,
                reason: "maintenance".into(),
                page,
            }),
            NotifierEvent::PageStarted(PageStarted {
                page_id: "p".into(),
                oncall: "infra".into(),
                trigger: trigger.clone(),
                route: "r".into(),
                tier: 1,
                round: 1,
                ack_deadline: at,
                event: json!({"id": "e1"}),
            }),
            NotifierEvent::PageEscalated(PageEscalated {
                page_id: "p".into(),
                oncall: "infra".into(),
                tier: 2,
                round: 1,
                reason: "late".into(),
                ack_deadline: at,
            }),
            NotifierEvent::PageStopped(PageStopped {
                page_id: "p".into(),
                oncall: "infra".into(),
                reason: "acknowledged".into(),
                by: Some(trigger),
            }),
        ];
        for ev in all {
            let bytes = ev.encode("id-1", "INC-1", at).to_canonical_bytes();
            let (env, back) = NotifierEvent::decode_bytes(&bytes).unwrap();
            assert_eq!(back, ev);
            assert_eq!(env.source, SOURCE);
            assert_eq!(env.subject, "INC-1");
        }
    }

    #[test]
    fn unknown_types_are_errors() {
        let env = Envelope::new(
            "1",
            SOURCE,
            "notification.x.v9",
            "INC-1",
            Timestamp::UNIX_EPOCH,
            json!({}),
        );
        assert!(matches!(
            NotifierEvent::decode(&env),
            Err(DecodeError::UnknownType(_))
        ));
    }
}
