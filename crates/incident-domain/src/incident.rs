//! The incident aggregate: its state, the lifecycle statuses, and `evolve`, the fold of events
//! into state.
//!
//! Lifecycle: open -> acknowledged -> in_progress <-> on_hold -> resolved -> closed, and
//! resolved -> reopened (back to in_progress, or to open when nobody had acknowledged it).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

use crate::{EventKind, HistoryError, Impact, IncidentEvent, IncidentId, Priority, Urgency};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Acknowledged,
    InProgress,
    OnHold,
    Resolved,
    Closed,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Open,
        Status::Acknowledged,
        Status::InProgress,
        Status::OnHold,
        Status::Resolved,
        Status::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::Acknowledged => "acknowledged",
            Status::InProgress => "in_progress",
            Status::OnHold => "on_hold",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Result<Self, crate::DomainError> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                crate::DomainError::invalid(
                    "status",
                    format!(
                        "{s:?} is not one of open, acknowledged, in_progress, on_hold, resolved, closed"
                    ),
                )
            })
    }

    /// Still being worked on: a repeat report is folded into it, its clocks may run.
    pub fn is_active(self) -> bool {
        !matches!(self, Status::Resolved | Status::Closed)
    }

    /// Resolved or closed: the clocks stop.
    pub fn is_terminal(self) -> bool {
        !self.is_active()
    }
}

impl std::str::FromStr for Status {
    type Err = crate::DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::parse(s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which system (or person) reported an incident, under which key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// `person`, `nats`, `pagerduty`, `alertmanager`, ...
    pub kind: String,
    /// The sender's key (dedup key, group key); empty when it had none.
    pub key: String,
}

impl Source {
    pub fn person() -> Self {
        Self {
            kind: "person".into(),
            key: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub author: String,
    pub text: String,
    pub at: Timestamp,
}

/// How many sources an incident keeps (a flapping alert may repeat thousands of times; the
/// count keeps growing, the list keeps the first and the latest ones).
pub const MAX_SOURCES: usize = 50;

/// Serialized only in intake's snapshot of its state (`incident-intake` `snapshot.rs`, which
/// pins the shape with a golden test); events never carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub title: String,
    pub description: String,
    pub service: String,
    pub group: String,
    pub assignee: Option<String>,
    pub impact: Impact,
    pub urgency: Urgency,
    pub priority: Priority,
    pub status: Status,
    pub dedup_key: Option<String>,
    pub request_id: Option<String>,
    pub opened_at: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub updated_at: Timestamp,
    /// Number of events folded in; the version the next append expects.
    pub version: u64,
    pub hold_reason: Option<String>,
    pub resolution_note: Option<String>,
    pub reopen_count: u32,
    pub duplicate_count: u32,
    pub sources: Vec<(Source, Timestamp)>,
    pub comments: Vec<Comment>,
}

/// Folds one event into the state. The first event of an incident must be `Opened`.
pub fn evolve(state: Option<Incident>, event: &IncidentEvent) -> Result<Incident, HistoryError> {
    match (state, &event.kind) {
        (None, EventKind::Opened { .. }) => Ok(opened(event)),
        (None, kind) => Err(HistoryError::NotOpened {
            id: event.incident_id.to_string(),
            event_type: crate::stored::type_name(kind),
        }),
        (Some(mut inc), _) => {
            evolve_in_place(&mut inc, event)?;
            Ok(inc)
        }
    }
}

/// Folds one event into an incident's state where it lies (an `Opened` is an error and leaves
/// the state as it was): a long fold then moves no incident around.
pub fn evolve_in_place(inc: &mut Incident, event: &IncidentEvent) -> Result<(), HistoryError> {
    let at = event.at;
    match &event.kind {
        EventKind::Opened { .. } => {
            return Err(HistoryError::OpenedTwice {
                id: event.incident_id.to_string(),
            });
        }
        EventKind::Acknowledged => {
            inc.status = Status::Acknowledged;
            inc.acknowledged_at.get_or_insert(at);
        }
        EventKind::Assigned { group, assignee } => {
            inc.group = group.clone();
            inc.assignee = assignee.clone();
        }
        EventKind::WorkStarted => {
            inc.status = Status::InProgress;
            inc.acknowledged_at.get_or_insert(at);
        }
        EventKind::PutOnHold { reason } => {
            inc.status = Status::OnHold;
            inc.hold_reason = Some(reason.clone());
        }
        EventKind::Resumed => {
            inc.status = Status::InProgress;
            inc.hold_reason = None;
        }
        EventKind::Resolved { note } => {
            inc.status = Status::Resolved;
            inc.resolved_at = Some(at);
            inc.resolution_note = note.clone();
            inc.hold_reason = None;
        }
        EventKind::Closed => {
            inc.status = Status::Closed;
            inc.closed_at = Some(at);
        }
        EventKind::Reopened { status, .. } => {
            inc.status = *status;
            inc.resolved_at = None;
            inc.resolution_note = None;
            inc.reopen_count += 1;
        }
        EventKind::Commented { text } => inc.comments.push(Comment {
            author: event.actor.clone(),
            text: text.clone(),
            at,
        }),
        EventKind::PriorityChanged {
            to,
            impact,
            urgency,
            ..
        } => {
            inc.priority = *to;
            inc.impact = *impact;
            inc.urgency = *urgency;
        }
        EventKind::DuplicateReceived { source, .. } => {
            inc.duplicate_count += 1;
            if inc.sources.len() >= MAX_SOURCES {
                // keep the first report, drop the oldest repeat
                inc.sources.remove(1);
            }
            inc.sources.push((source.clone(), at));
        }
    }
    inc.version += 1;
    inc.updated_at = at;
    Ok(())
}

fn opened(event: &IncidentEvent) -> Incident {
    let EventKind::Opened {
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
    } = &event.kind
    else {
        unreachable!("opened() is only called for Opened events")
    };
    Incident {
        id: event.incident_id.clone(),
        title: title.clone(),
        description: description.clone(),
        service: service.clone(),
        group: group.clone(),
        assignee: None,
        impact: *impact,
        urgency: *urgency,
        priority: *priority,
        status: Status::Open,
        dedup_key: dedup_key.clone(),
        request_id: request_id.clone(),
        opened_at: event.at,
        acknowledged_at: None,
        resolved_at: None,
        closed_at: None,
        updated_at: event.at,
        version: 1,
        hold_reason: None,
        resolution_note: None,
        reopen_count: 0,
        duplicate_count: 0,
        sources: vec![(source.clone(), event.at)],
        comments: Vec::new(),
    }
}

/// Folds a whole history; `None` for an empty one.
pub fn fold<'a>(
    events: impl IntoIterator<Item = &'a IncidentEvent>,
) -> Result<Option<Incident>, HistoryError> {
    let mut state = None;
    for e in events {
        state = Some(evolve(state, e)?);
    }
    Ok(state)
}
