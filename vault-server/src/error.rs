//! Maps internal errors to the stable wire errors (docs/PROTOCOL.md §4). Internal details go to the
//! log, never over the wire.

use vault_core::proto::ApiError;

use crate::db::DbError;

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if crate::space::is_full_db(&e) {
            tracing::error!(error = %e, "the database's disk is full");
            return crate::space::no_space();
        }
        tracing::error!(error = %e, "database error");
        ApiError::internal()
    }
}

/// Logs an unexpected error and returns the generic internal answer.
pub fn internal(context: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{context}");
    ApiError::internal()
}
