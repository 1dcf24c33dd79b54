use strongbox_store::StoreError;
use strongbox_types::ErrorCode;

/// Why an operation was refused. Messages name secrets and versions, never values.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{0}")]
    BadParameter(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Forbidden {
        message: String,
        inner: Option<&'static str>,
    },
    #[error("{message}")]
    Conflict {
        message: String,
        inner: Option<&'static str>,
    },
    #[error("{0}")]
    TooLarge(String),
    /// A change-feed cursor this vault can no longer (or never could) follow from.
    #[error("{0}")]
    CursorExpired(String),
    /// Too many requests of a kind at once; the client should retry shortly.
    #[error("{0}")]
    Throttled(String),
    /// The service cannot do this now (its disk is full); the client should retry later.
    #[error("{0}")]
    Unavailable(String),
    /// Details go to the log; clients see a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DomainError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::BadParameter(_) => ErrorCode::BadParameter,
            DomainError::NotFound(_) => ErrorCode::SecretNotFound,
            DomainError::Forbidden { .. } => ErrorCode::Forbidden,
            DomainError::Conflict { .. } => ErrorCode::Conflict,
            DomainError::TooLarge(_) => ErrorCode::RequestTooLarge,
            DomainError::CursorExpired(_) => ErrorCode::CursorExpired,
            DomainError::Throttled(_) => ErrorCode::Throttled,
            DomainError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            DomainError::Internal(_) => ErrorCode::InternalError,
        }
    }

    pub fn inner(&self) -> Option<&'static str> {
        match self {
            DomainError::Forbidden { inner, .. } | DomainError::Conflict { inner, .. } => *inner,
            _ => None,
        }
    }

    /// The message safe to send to a client.
    pub fn client_message(&self) -> String {
        match self {
            DomainError::Internal(_) => "The service encountered an internal error.".into(),
            other => other.to_string(),
        }
    }
}

/// What a client is told while the store's disk is full (logged once by the store).
pub const DISK_FULL_MESSAGE: &str =
    "The service cannot store changes right now (its disk is full). Retry later.";

/// Seconds a client is asked to wait (Retry-After) while the store's disk is full.
pub const DISK_FULL_RETRY_AFTER_SECS: u32 = 5;

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DiskFull => DomainError::Unavailable(DISK_FULL_MESSAGE.into()),
            e => DomainError::Internal(e.to_string()),
        }
    }
}
