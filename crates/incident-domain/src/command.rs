//! Commands: what a person or a system asks of an incident. The time and the actor come with
//! the command, so deciding never reads a clock.

use jiff::Timestamp;

use crate::{Impact, IncidentId, Priority, Source, Urgency};

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub incident_id: IncidentId,
    pub at: Timestamp,
    pub actor: String,
    pub action: Action,
}

impl Command {
    pub fn new(incident_id: IncidentId, at: Timestamp, actor: &str, action: Action) -> Self {
        Self {
            incident_id,
            at,
            actor: actor.to_owned(),
            action,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OpenIncident {
    pub title: String,
    pub description: String,
    pub service: String,
    pub group: String,
    pub impact: Impact,
    pub urgency: Urgency,
    /// Repeats carrying the key of an active incident are folded into it.
    pub dedup_key: Option<String>,
    /// The caller's idempotency key: a retried open returns the incident the first one opened.
    pub request_id: Option<String>,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Open(OpenIncident),
    Acknowledge,
    Assign {
        group: String,
        assignee: Option<String>,
    },
    StartWork,
    PutOnHold {
        reason: String,
    },
    Resume,
    Resolve {
        note: Option<String>,
    },
    Close,
    Reopen {
        reason: String,
    },
    Comment {
        text: String,
    },
    /// New impact and/or urgency (the priority follows from the matrix), or an explicit priority.
    ChangePriority {
        impact: Option<Impact>,
        urgency: Option<Urgency>,
        priority: Option<Priority>,
        reason: String,
    },
    /// Another report of an active incident (same dedup key) arrived.
    RecordDuplicate {
        source: Source,
        /// The sender's idempotency key: a repeat carrying one already recorded changes nothing.
        request_id: Option<String>,
    },
}

impl Action {
    /// The verb used in messages ("cannot acknowledge incident ...").
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Open(_) => "open",
            Action::Acknowledge => "acknowledge",
            Action::Assign { .. } => "assign",
            Action::StartWork => "start work on",
            Action::PutOnHold { .. } => "put on hold",
            Action::Resume => "resume",
            Action::Resolve { .. } => "resolve",
            Action::Close => "close",
            Action::Reopen { .. } => "reopen",
            Action::Comment { .. } => "comment on",
            Action::ChangePriority { .. } => "change the priority of",
            Action::RecordDuplicate { .. } => "add a duplicate to",
        }
    }
}
