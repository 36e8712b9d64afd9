//! Intake's errors, and the one place where they become gRPC status codes.

use incident_domain::DomainError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The command was refused by the domain (bad field, illegal transition, unknown incident).
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// The command could not be made durable now; retrying later may work.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The label used in metrics.
    pub fn result_label(&self) -> &'static str {
        match self {
            ServiceError::Rejected(DomainError::InvalidField { .. }) => "invalid",
            ServiceError::Rejected(DomainError::IllegalTransition { .. }) => "refused",
            ServiceError::Rejected(DomainError::NotFound(_)) => "not_found",
            ServiceError::Rejected(DomainError::AlreadyExists(_)) => "exists",
            ServiceError::Unavailable(_) => "unavailable",
            ServiceError::Internal(_) => "error",
        }
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let msg = e.to_string();
        match e {
            ServiceError::Rejected(d) => match d {
                DomainError::InvalidField { .. } => Status::invalid_argument(msg),
                DomainError::IllegalTransition { .. } => Status::failed_precondition(msg),
                DomainError::NotFound(_) => Status::not_found(msg),
                DomainError::AlreadyExists(_) => Status::already_exists(msg),
            },
            ServiceError::Unavailable(_) => Status::unavailable(msg),
            ServiceError::Internal(_) => Status::internal(msg),
        }
    }
}
