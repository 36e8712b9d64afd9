//! Conversions between the gRPC messages of `incident.v1` and the domain types. Unknown or
//! missing enum values are `InvalidField` errors naming the field.

use incident_domain::{DomainError, Impact, Incident, IncidentId, Priority, Status, Urgency};
use incident_proto::v1 as pb;

pub fn ts(t: jiff::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.as_second(),
        nanos: t.subsec_nanosecond(),
    }
}

pub fn id(s: &str) -> Result<IncidentId, DomainError> {
    IncidentId::parse(s.trim())
}

pub fn impact(v: i32, field: &str) -> Result<Option<Impact>, DomainError> {
    match pb::Impact::try_from(v) {
        Ok(pb::Impact::Unspecified) => Ok(None),
        Ok(pb::Impact::High) => Ok(Some(Impact::High)),
        Ok(pb::Impact::Medium) => Ok(Some(Impact::Medium)),
        Ok(pb::Impact::Low) => Ok(Some(Impact::Low)),
        Err(_) => Err(DomainError::invalid(field, format!("unknown value {v}"))),
    }
}

pub fn urgency(v: i32, field: &str) -> Result<Option<Urgency>, DomainError> {
    match pb::Urgency::try_from(v) {
        Ok(pb::Urgency::Unspecified) => Ok(None),
        Ok(pb::Urgency::High) => Ok(Some(Urgency::High)),
        Ok(pb::Urgency::Medium) => Ok(Some(Urgency::Medium)),
        Ok(pb::Urgency::Low) => Ok(Some(Urgency::Low)),
        Err(_) => Err(DomainError::invalid(field, format!("unknown value {v}"))),
    }
}

pub fn priority(v: i32, field: &str) -> Result<Option<Priority>, DomainError> {
    match pb::Priority::try_from(v) {
        Ok(pb::Priority::Unspecified) => Ok(None),
        Ok(pb::Priority::P1) => Ok(Some(Priority::P1)),
        Ok(pb::Priority::P2) => Ok(Some(Priority::P2)),
        Ok(pb::Priority::P3) => Ok(Some(Priority::P3)),
        Ok(pb::Priority::P4) => Ok(Some(Priority::P4)),
        Ok(pb::Priority::P5) => Ok(Some(Priority::P5)),
        Err(_) => Err(DomainError::invalid(field, format!("unknown value {v}"))),
    }
}

pub fn status(v: i32, field: &str) -> Result<Option<Status>, DomainError> {
    match pb::Status::try_from(v) {
        Ok(pb::Status::Unspecified) => Ok(None),
        Ok(pb::Status::Open) => Ok(Some(Status::Open)),
        Ok(pb::Status::Acknowledged) => Ok(Some(Status::Acknowledged)),
        Ok(pb::Status::InProgress) => Ok(Some(Status::InProgress)),
        Ok(pb::Status::OnHold) => Ok(Some(Status::OnHold)),
        Ok(pb::Status::Resolved) => Ok(Some(Status::Resolved)),
        Ok(pb::Status::Closed) => Ok(Some(Status::Closed)),
        Err(_) => Err(DomainError::invalid(field, format!("unknown value {v}"))),
    }
}

/// A required enum: unspecified is an error naming the field.
pub fn required<T>(v: Result<Option<T>, DomainError>, field: &str) -> Result<T, DomainError> {
    v?.ok_or_else(|| DomainError::invalid(field, "is required (high, medium or low)"))
}

fn pb_priority(p: Priority) -> pb::Priority {
    match p {
        Priority::P1 => pb::Priority::P1,
        Priority::P2 => pb::Priority::P2,
        Priority::P3 => pb::Priority::P3,
        Priority::P4 => pb::Priority::P4,
        Priority::P5 => pb::Priority::P5,
    }
}

fn pb_status(s: Status) -> pb::Status {
    match s {
        Status::Open => pb::Status::Open,
        Status::Acknowledged => pb::Status::Acknowledged,
        Status::InProgress => pb::Status::InProgress,
        Status::OnHold => pb::Status::OnHold,
        Status::Resolved => pb::Status::Resolved,
        Status::Closed => pb::Status::Closed,
    }
}

fn pb_impact(i: Impact) -> pb::Impact {
    match i {
        Impact::High => pb::Impact::High,
        Impact::Medium => pb::Impact::Medium,
        Impact::Low => pb::Impact::Low,
    }
}

fn pb_urgency(u: Urgency) -> pb::Urgency {
    match u {
        Urgency::High => pb::Urgency::High,
        Urgency::Medium => pb::Urgency::Medium,
        Urgency::Low => pb::Urgency::Low,
    }
}

pub fn incident(inc: &Incident) -> pb::Incident {
    pb::Incident {
        id: inc.id.to_string(),
        title: inc.title.clone(),
        description: inc.description.clone(),
        service: inc.service.clone(),
        group: inc.group.clone(),
        assignee: inc.assignee.clone().unwrap_or_default(),
        impact: pb_impact(inc.impact) as i32,
        urgency: pb_urgency(inc.urgency) as i32,
        priority: pb_priority(inc.priority) as i32,
        status: pb_status(inc.status) as i32,
        dedup_key: inc.dedup_key.clone().unwrap_or_default(),
        opened_at: Some(ts(inc.opened_at)),
        acknowledged_at: inc.acknowledged_at.map(ts),
        resolved_at: inc.resolved_at.map(ts),
        closed_at: inc.closed_at.map(ts),
        updated_at: Some(ts(inc.updated_at)),
        version: inc.version,
        hold_reason: inc.hold_reason.clone().unwrap_or_default(),
        resolution_note: inc.resolution_note.clone().unwrap_or_default(),
        reopen_count: inc.reopen_count,
        duplicate_count: inc.duplicate_count,
        sources: inc
            .sources
            .iter()
            .map(|(s, at)| pb::Source {
                kind: s.kind.clone(),
                key: s.key.clone(),
                at: Some(ts(*at)),
            })
            .collect(),
        comments: inc
            .comments
            .iter()
            .map(|c| pb::Comment {
                author: c.author.clone(),
                text: c.text.clone(),
                at: Some(ts(c.at)),
            })
            .collect(),
    }
}
