//! API errors: a spec error code (Appendix A, plus a few of ours) and a message, mapped to
//! a gRPC status whose message starts with the code, e.g.
//! `LISTENER_PORT_CONFLICT: port 443 already used by listener web-https`.

use tonic::{Code, Status};

use crate::store::StoreError;

/// Machine-readable error codes; the first word of every error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ErrorCode {
    LbNotFound,
    ListenerNotFound,
    PoolNotFound,
    BackendNotFound,
    CertificateNotFound,
    TokenNotFound,
    RuleNotFound,
    LbAlreadyExists,
    ListenerAlreadyExists,
    PoolAlreadyExists,
    BackendAlreadyExists,
    CertificateAlreadyExists,
    RuleAlreadyExists,
    ListenerPortConflict,
    VipConflict,
    InvalidLbName,
    InvalidName,
    InvalidBackendAddress,
    InvalidCertificate,
    InvalidArgument,
    AccessDenied,
    Unauthenticated,
    PoolNotEmpty,
    PoolInUse,
    CertificateInUse,
    LbHasListeners,
    RevisionConflict,
    StoreUnavailable,
    Internal,
}

impl ErrorCode {
    /// The code as it appears in messages.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            LbNotFound => "LB_NOT_FOUND",
            ListenerNotFound => "LISTENER_NOT_FOUND",
            PoolNotFound => "POOL_NOT_FOUND",
            BackendNotFound => "BACKEND_NOT_FOUND",
            CertificateNotFound => "CERTIFICATE_NOT_FOUND",
            TokenNotFound => "TOKEN_NOT_FOUND",
            RuleNotFound => "RULE_NOT_FOUND",
            LbAlreadyExists => "LB_ALREADY_EXISTS",
            ListenerAlreadyExists => "LISTENER_ALREADY_EXISTS",
            PoolAlreadyExists => "POOL_ALREADY_EXISTS",
            BackendAlreadyExists => "BACKEND_ALREADY_EXISTS",
            CertificateAlreadyExists => "CERTIFICATE_ALREADY_EXISTS",
            RuleAlreadyExists => "RULE_ALREADY_EXISTS",
            ListenerPortConflict => "LISTENER_PORT_CONFLICT",
            VipConflict => "VIP_CONFLICT",
            InvalidLbName => "INVALID_LB_NAME",
            InvalidName => "INVALID_NAME",
            InvalidBackendAddress => "INVALID_BACKEND_ADDRESS",
            InvalidCertificate => "INVALID_CERTIFICATE",
            InvalidArgument => "INVALID_ARGUMENT",
            AccessDenied => "ACCESS_DENIED",
            Unauthenticated => "UNAUTHENTICATED",
            PoolNotEmpty => "POOL_NOT_EMPTY",
            PoolInUse => "POOL_IN_USE",
            CertificateInUse => "CERTIFICATE_IN_USE",
            LbHasListeners => "LB_HAS_LISTENERS",
            RevisionConflict => "REVISION_CONFLICT",
            StoreUnavailable => "STORE_UNAVAILABLE",
            Internal => "INTERNAL",
        }
    }

    /// The gRPC status code carrying it.
    pub fn grpc(self) -> Code {
        use ErrorCode::*;
        match self {
            LbNotFound | ListenerNotFound | PoolNotFound | BackendNotFound
            | CertificateNotFound | TokenNotFound | RuleNotFound => Code::NotFound,
            LbAlreadyExists
            | ListenerAlreadyExists
            | PoolAlreadyExists
            | BackendAlreadyExists
            | CertificateAlreadyExists
            | RuleAlreadyExists
            | ListenerPortConflict
            | VipConflict => Code::AlreadyExists,
            InvalidLbName
            | InvalidName
            | InvalidBackendAddress
            | InvalidCertificate
            | InvalidArgument => Code::InvalidArgument,
            AccessDenied => Code::PermissionDenied,
            Unauthenticated => Code::Unauthenticated,
            PoolNotEmpty | PoolInUse | CertificateInUse | LbHasListeners => {
                Code::FailedPrecondition
            }
            RevisionConflict => Code::Aborted,
            StoreUnavailable => Code::Unavailable,
            Internal => Code::Internal,
        }
    }
}

/// An error answered to an API client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    /// Code.
    pub code: ErrorCode,
    /// What was wrong, naming the field or object.
    pub message: String,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `INVALID_ARGUMENT` naming a field.
    pub fn invalid(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidArgument, format!("{field}: {why}"))
    }

    /// The stale-revision error of optimistic concurrency.
    pub fn stale(kind: &str, id: &str, given: u64, current: u64) -> Self {
        Self::new(
            ErrorCode::RevisionConflict,
            format!(
                "{kind} {id} is at revision {current}, request carried {given}; re-read and retry"
            ),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { key } => ApiError::new(
                ErrorCode::RevisionConflict,
                format!("concurrent modification of {key}; retry"),
            ),
            StoreError::Unavailable(m) => ApiError::new(
                ErrorCode::StoreUnavailable,
                format!("configuration store unavailable: {m}"),
            ),
            other => ApiError::new(ErrorCode::Internal, other.to_string()),
        }
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        Status::new(e.code.grpc(), e.to_string())
    }
}

/// Result alias of the management plane.
pub type ApiResult<T> = Result<T, ApiError>;
