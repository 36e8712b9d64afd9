//! Incident events as SLA clock inputs: the one mapping the SLA timer, the audit timeline and the
//! what-if simulation all apply. Acknowledgement and start of work acknowledge, resolution
//! resolves, a reopen reopens and sets the status it went back to, a priority change re-targets,
//! and the statuses `acknowledged`, `in_progress`, `on_hold` and `closed` are status changes.

use crate::{ClockInput, Priority, Status};
use incident_domain::{EventKind, IncidentEvent};
use jiff::Timestamp;

/// The SLA priority of a domain priority.
pub fn sla_priority(p: incident_domain::Priority) -> Priority {
    match p {
        incident_domain::Priority::P1 => Priority::P1,
        incident_domain::Priority::P2 => Priority::P2,
        incident_domain::Priority::P3 => Priority::P3,
        incident_domain::Priority::P4 => Priority::P4,
        incident_domain::Priority::P5 => Priority::P5,
    }
}

/// The SLA status of a domain status.
pub fn sla_status(s: incident_domain::Status) -> Status {
    match s {
        incident_domain::Status::Open => Status::Open,
        incident_domain::Status::Acknowledged => Status::Acknowledged,
        incident_domain::Status::InProgress => Status::InProgress,
        incident_domain::Status::OnHold => Status::OnHold,
        incident_domain::Status::Resolved => Status::Resolved,
        incident_domain::Status::Closed => Status::Closed,
    }
}

fn status_of(kind: &EventKind) -> Option<Status> {
    match kind {
        EventKind::Acknowledged => Some(Status::Acknowledged),
        EventKind::WorkStarted | EventKind::Resumed => Some(Status::InProgress),
        EventKind::PutOnHold { .. } => Some(Status::OnHold),
        EventKind::Closed => Some(Status::Closed),
        _ => None,
    }
}

/// The clock inputs an incident event (after the opening) means, at `at`.
pub fn inputs_of(event: &IncidentEvent, at: Timestamp) -> Vec<ClockInput> {
    let mut inputs = Vec::new();
    match &event.kind {
        EventKind::Acknowledged | EventKind::WorkStarted => {
            inputs.push(ClockInput::Acknowledged { at });
        }
        EventKind::Resolved { .. } => inputs.push(ClockInput::Resolved { at }),
        EventKind::Reopened { status, .. } => {
            inputs.push(ClockInput::Reopened { at });
            inputs.push(ClockInput::StatusChanged {
                at,
                status: sla_status(*status),
            });
        }
        EventKind::PriorityChanged { to, .. } => inputs.push(ClockInput::PriorityChanged {
            at,
            priority: sla_priority(*to),
        }),
        _ => {}
    }
    if let Some(status) = status_of(&event.kind) {
        inputs.push(ClockInput::StatusChanged { at, status });
    }
    inputs
}
