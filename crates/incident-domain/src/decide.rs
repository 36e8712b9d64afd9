//! `decide`: the pure function from the current state and a command to the events that record
//! it, or the reason it is refused.

use crate::{
    Action, Command, DomainError, EventKind, Incident, IncidentEvent, OpenIncident, PriorityMatrix,
    Status,
};

/// Field limits, in characters.
pub const MAX_TITLE: usize = 1024;
pub const MAX_NAME: usize = 128;
pub const MAX_TEXT: usize = 64 * 1024;
pub const MAX_REASON: usize = 1024;
pub const MAX_KEY: usize = 255;

/// Decides what `cmd` does to the incident `state` (`None` when it does not exist yet).
/// An empty result means the command changes nothing (e.g. assigning to the current group).
pub fn decide(
    state: Option<&Incident>,
    cmd: &Command,
    matrix: &PriorityMatrix,
) -> Result<Vec<IncidentEvent>, DomainError> {
    check_len("actor", &cmd.actor, MAX_NAME)?;
    let event = |kind| IncidentEvent {
        incident_id: cmd.incident_id.clone(),
        at: cmd.at,
        actor: cmd.actor.clone(),
        kind,
    };
    let inc = match (&cmd.action, state) {
        (Action::Open(open), None) => return Ok(vec![event(decide_open(open, matrix)?)]),
        (Action::Open(_), Some(_)) => {
            return Err(DomainError::AlreadyExists(cmd.incident_id.to_string()));
        }
        (_, None) => return Err(DomainError::NotFound(cmd.incident_id.to_string())),
        (_, Some(inc)) => inc,
    };
    let refuse = || DomainError::IllegalTransition {
        id: inc.id.to_string(),
        action: cmd.action.verb(),
        status: inc.status.as_str(),
    };
    use Status::*;
    let kinds = match &cmd.action {
        Action::Open(_) => unreachable!("handled above"),
        Action::Acknowledge => match inc.status {
            Open => vec![EventKind::Acknowledged],
            _ => return Err(refuse()),
        },
        Action::Assign { group, assignee } => {
            if inc.status == Closed {
                return Err(refuse());
            }
            let group = required("group", group, MAX_NAME)?;
            let assignee = optional("assignee", assignee.as_deref(), MAX_NAME)?;
            if group == inc.group && assignee == inc.assignee {
                vec![]
            } else {
                vec![EventKind::Assigned { group, assignee }]
            }
        }
        Action::StartWork => match inc.status {
            // starting work on an open incident acknowledges it too
            Open => vec![EventKind::Acknowledged, EventKind::WorkStarted],
            Acknowledged => vec![EventKind::WorkStarted],
            _ => return Err(refuse()),
        },
        Action::PutOnHold { reason } => match inc.status {
            Acknowledged | InProgress => vec![EventKind::PutOnHold {
                reason: required("reason", reason, MAX_REASON)?,
            }],
            _ => return Err(refuse()),
        },
        Action::Resume => match inc.status {
            OnHold => vec![EventKind::Resumed],
            _ => return Err(refuse()),
        },
        Action::Resolve { note } => match inc.status {
            Open | Acknowledged | InProgress | OnHold => vec![EventKind::Resolved {
                note: optional("note", note.as_deref(), MAX_TEXT)?,
            }],
            _ => return Err(refuse()),
        },
        Action::Close => match inc.status {
            Resolved => vec![EventKind::Closed],
            _ => return Err(refuse()),
        },
        Action::Reopen { reason } => match inc.status {
            Resolved => vec![EventKind::Reopened {
                reason: required("reason", reason, MAX_REASON)?,
                status: if inc.acknowledged_at.is_some() {
                    InProgress
                } else {
                    Open
                },
            }],
            _ => return Err(refuse()),
        },
        Action::Comment { text } => vec![EventKind::Commented {
            text: required("text", text, MAX_TEXT)?,
        }],
        Action::ChangePriority {
            impact,
            urgency,
            priority,
            reason,
        } => {
            if !inc.status.is_active() {
                return Err(refuse());
            }
            if impact.is_none() && urgency.is_none() && priority.is_none() {
                return Err(DomainError::invalid(
                    "priority",
                    "give a new impact, urgency or priority",
                ));
            }
            let reason = required("reason", reason, MAX_REASON)?;
            let impact = impact.unwrap_or(inc.impact);
            let urgency = urgency.unwrap_or(inc.urgency);
            let to = priority.unwrap_or_else(|| matrix.priority(impact, urgency));
            if to == inc.priority && impact == inc.impact && urgency == inc.urgency {
                vec![]
            } else {
                vec![EventKind::PriorityChanged {
                    from: inc.priority,
                    to,
                    impact,
                    urgency,
                    reason,
                }]
            }
        }
        Action::RecordDuplicate { source, request_id } => {
            if !inc.status.is_active() {
                return Err(refuse());
            }
            vec![EventKind::DuplicateReceived {
                source: checked_source(source)?,
                request_id: optional("request_id", request_id.as_deref(), MAX_KEY)?,
            }]
        }
    };
    Ok(kinds.into_iter().map(event).collect())
}

fn decide_open(open: &OpenIncident, matrix: &PriorityMatrix) -> Result<EventKind, DomainError> {
    Ok(EventKind::Opened {
        title: required("title", &open.title, MAX_TITLE)?,
        description: optional("description", Some(&open.description), MAX_TEXT)?
            .unwrap_or_default(),
        service: required("service", &open.service, MAX_NAME)?,
        group: optional("group", Some(&open.group), MAX_NAME)?.unwrap_or_default(),
        impact: open.impact,
        urgency: open.urgency,
        priority: matrix.priority(open.impact, open.urgency),
        dedup_key: optional("dedup_key", open.dedup_key.as_deref(), MAX_KEY)?,
        request_id: optional("request_id", open.request_id.as_deref(), MAX_KEY)?,
        source: checked_source(&open.source)?,
    })
}

fn checked_source(source: &crate::Source) -> Result<crate::Source, DomainError> {
    Ok(crate::Source {
        kind: required("source.kind", &source.kind, MAX_NAME)?,
        key: optional("source.key", Some(&source.key), MAX_KEY)?.unwrap_or_default(),
    })
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    if value.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A trimmed, non-empty value within `max` characters.
fn required(field: &str, value: &str, max: usize) -> Result<String, DomainError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(DomainError::invalid(field, "is required"));
    }
    check_len(field, v, max)?;
    Ok(v.to_owned())
}

/// A trimmed value within `max` characters; `None` when absent or blank.
fn optional(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, DomainError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(v) => {
            check_len(field, v, max)?;
            Ok(Some(v.to_owned()))
        }
    }
}
