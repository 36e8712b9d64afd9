//! Incident events as SLA clock inputs: the one mapping the SLA timer, the audit timeline and the
//! what-if simulation all apply. Acknowledgement and start of work acknowledge, resolution
//! resolves, a reopen reopens and sets the status it went back to, a priority change re-targets,
//! and the statuses `acknowledged`, `in_progress`, `on_hold` and `closed` are status changes.

use crate::{ClockInput, Status};
use incident_domain::{EventKind, IncidentEvent};
use jiff::Timestamp;

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
                status: *status,
            });
        }
        EventKind::PriorityChanged { to, .. } => {
            inputs.push(ClockInput::PriorityChanged { at, priority: *to })
        }
        _ => {}
    }
    if let Some(status) = status_of(&event.kind) {
        inputs.push(ClockInput::StatusChanged { at, status });
    }
    inputs
}
