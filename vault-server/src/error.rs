//! Maps internal errors to the stable wire errors (docs/PROTOCOL.md §4), and
//! [`Failure`], what every area's database work ends in. Internal details go to the log,
//! never over the wire.

use vault_proto::proto::ApiError;

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

/// What a handler's database work can end in, in every area: an answer for the client,
/// or a database error still to be classified, so that a unique violation (two requests
/// racing for one path or name) becomes a `conflict` rather than an `internal`.
#[derive(Debug)]
pub enum Failure {
    Api(ApiError),
    Db(DbError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Self {
        Failure::Db(e)
    }
}

impl From<diesel::result::Error> for Failure {
    fn from(e: diesel::result::Error) -> Self {
        Failure::Db(DbError::Query(e))
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Api(e) => e,
            Failure::Db(DbError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ))) => ApiError::conflict(
                "another request changed the same path at the same moment; try again",
            ),
            Failure::Db(e) => ApiError::from(e),
        }
    }
}
