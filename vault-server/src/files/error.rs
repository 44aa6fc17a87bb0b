//! `Failure`: what a file handler's database work can end in, so that a unique violation
//! (two requests racing for one path) becomes a `conflict` rather than an `internal`.

use vault_core::proto::ApiError;

use crate::db::DbError;

/// An answer for the client, or a database error still to be classified.
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
