//! Incident events: past-tense facts, one enum for the aggregate. Their stored names and
//! versions (`incident.opened.v1`, ...) are written by hand in [`crate::stored`], never derived
//! from these Rust names.

use jiff::Timestamp;

use crate::{Impact, IncidentId, Priority, Source, Status, Urgency};

#[derive(Debug, Clone, PartialEq)]
pub struct IncidentEvent {
    pub incident_id: IncidentId,
    pub at: Timestamp,
    pub actor: String,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    Opened {
        title: String,
        description: String,
        service: String,
        group: String,
        impact: Impact,
        urgency: Urgency,
        priority: Priority,
        dedup_key: Option<String>,
        request_id: Option<String>,
        source: Source,
    },
    Acknowledged,
    Assigned {
        group: String,
        assignee: Option<String>,
    },
    WorkStarted,
    PutOnHold {
        reason: String,
    },
    Resumed,
    Resolved {
        note: Option<String>,
    },
    Closed,
    /// `status` is where the incident went back to: `acknowledged` work resumes in progress,
    /// an incident never acknowledged is open again.
    Reopened {
        reason: String,
        status: Status,
    },
    Commented {
        text: String,
    },
    PriorityChanged {
        from: Priority,
        to: Priority,
        impact: Impact,
        urgency: Urgency,
        reason: String,
    },
    DuplicateReceived {
        source: Source,
        request_id: Option<String>,
    },
}
