//! Why a command was rejected (a domain outcome, not a failure of the system).

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// A field of the command is missing or malformed (gRPC `INVALID_ARGUMENT`).
    #[error("invalid {field}: {reason}")]
    InvalidField { field: String, reason: String },
    /// The incident's status does not allow the command (gRPC `FAILED_PRECONDITION`).
    #[error("cannot {action} incident {id}: it is {status}")]
    IllegalTransition {
        id: String,
        action: &'static str,
        status: &'static str,
    },
    /// The command names an incident that does not exist (gRPC `NOT_FOUND`).
    #[error("incident {0} not found")]
    NotFound(String),
    /// Opening an incident under an id already taken (gRPC `ALREADY_EXISTS`).
    #[error("incident {0} already exists")]
    AlreadyExists(String),
}

impl DomainError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A recorded history that cannot be folded (the log, not the caller, is wrong).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HistoryError {
    #[error("incident {id}: first event is {event_type}, not incident.opened")]
    NotOpened {
        id: String,
        event_type: &'static str,
    },
    #[error("incident {id}: opened twice")]
    OpenedTwice { id: String },
}
