//! The one error type of the domain: an AWS error code, its message and any modelled members.
//! Mapping codes to HTTP statuses and wire shapes is the API layer's job (`api::error`).

use std::fmt;

/// Error codes shared by the services otatrail implements.
pub mod codes {
    pub const INVALID_REQUEST: &str = "InvalidRequestException";
    pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFoundException";
    pub const RESOURCE_ALREADY_EXISTS: &str = "ResourceAlreadyExistsException";
    pub const DELETE_CONFLICT: &str = "DeleteConflictException";
    pub const VERSION_CONFLICT: &str = "VersionConflictException";
    pub const LIMIT_EXCEEDED: &str = "LimitExceededException";
    pub const INTERNAL_FAILURE: &str = "InternalFailureException";
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailableException";
    pub const UNKNOWN_OPERATION: &str = "UnknownOperationException";
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    pub code: &'static str,
    pub message: String,
    /// Modelled members besides `message`, e.g. `resourceId` and `resourceArn`.
    pub members: Vec<(&'static str, String)>,
}

impl ServiceError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), members: Vec::new() }
    }

    pub fn with_member(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.members.push((name, value.into()));
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(codes::RESOURCE_NOT_FOUND, message)
    }

    /// An internal failure. The details go to the log, never to the client.
    pub fn internal() -> Self {
        Self::new(codes::INTERNAL_FAILURE, "An internal error occurred. Please retry the request.")
    }

    pub fn unavailable() -> Self {
        Self::new(codes::SERVICE_UNAVAILABLE, "The service is temporarily unavailable. Please retry the request.")
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<crate::store::StoreError> for ServiceError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "state store failure");
        match e {
            crate::store::StoreError::Unavailable(_) => ServiceError::unavailable(),
            _ => ServiceError::internal(),
        }
    }
}
