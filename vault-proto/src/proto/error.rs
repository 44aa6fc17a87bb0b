//! The stable error codes (docs/PROTOCOL.md §4). The code is for programs; the message is for
//! people and says what to do next. Servers never put internal details in the message.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Wrong username or password (the same answer for both).
    InvalidCredentials,
    /// Too many attempts; try again after `retry_after_s` seconds.
    Throttled {
        retry_after_s: u64,
    },
    NotFound,
    /// Not allowed, including "not logged in".
    Forbidden,
    QuotaExceeded,
    /// The request conflicts with existing state (a taken name, a stale version).
    Conflict,
    BadRequest,
    TooLarge,
    UnsupportedVersion,
    Internal,
}

impl ErrorCode {
    /// The code's wire name, as used in `--json` output and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidCredentials => "invalid_credentials",
            Self::Throttled { .. } => "throttled",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::QuotaExceeded => "quota_exceeded",
            Self::Conflict => "conflict",
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::UnsupportedVersion => "unsupported_version",
            Self::Internal => "internal",
        }
    }
}

/// An error answer: a stable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({})", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal server error; the operator can find details in the server log",
        )
    }

    /// An internal error whose message is safe and useful to show.
    pub fn internal_with(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn throttled(retry_after_s: u64, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Throttled { retry_after_s }, message)
    }

    pub fn not_logged_in() -> Self {
        Self::forbidden("not logged in: run `vault login USER` first")
    }
}
