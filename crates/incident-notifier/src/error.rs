//! The notifier's API errors, and the one place where they become gRPC status codes.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let msg = e.to_string();
        match e {
            ServiceError::InvalidArgument { .. } => Status::invalid_argument(msg),
            ServiceError::NotFound(_) => Status::not_found(msg),
            ServiceError::Internal(_) => Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let s: Status = ServiceError::NotFound("notification x".into()).into();
        assert_eq!(s.code(), tonic::Code::NotFound);
        let s: Status = ServiceError::InvalidArgument {
            field: "statuses",
            reason: "7 is not a status".into(),
        }
        .into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert!(s.message().contains("statuses"));
        let s: Status = ServiceError::Internal("lock".into()).into();
        assert_eq!(s.code(), tonic::Code::Internal);
    }
}
