//! The `namespaces` table: one row per personal space (and later per group), holding the
//! revision every change bumps, the revision of the last hard delete, and the bytes used.

use diesel::prelude::*;

use crate::db::schema::{namespaces, users};
use crate::db::{DbConn, DbError, DbResult, now};

/// `namespaces.kind` of a user's personal space.
pub const KIND_PERSONAL: &str = "personal";

/// One namespace row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = namespaces)]
pub struct Namespace {
    pub id: i64,
    pub kind: String,
    pub owner_user_id: Option<i64>,
    pub group_id: Option<i64>,
    pub revision: i64,
    pub purged_revision: i64,
    pub used_bytes: i64,
    pub quota_bytes: Option<i64>,
    pub created_at: i64,
}

pub fn by_id(conn: &mut DbConn, id: i64) -> DbResult<Option<Namespace>> {
    Ok(namespaces::table
        .find(id)
        .select(Namespace::as_select())
        .get_result(conn)
        .optional()?)
}

/// The personal namespace of `user_id`, if it was ever created.
pub fn personal(conn: &mut DbConn, user_id: i64) -> DbResult<Option<Namespace>> {
    Ok(namespaces::table
        .filter(namespaces::owner_user_id.eq(user_id))
        .select(Namespace::as_select())
        .get_result(conn)
        .optional()?)
}

/// The personal namespace of `user_id`, created on first use. Call it outside a
/// transaction: a concurrent creation ends in a unique violation, after which the other
/// request's row is read back.
pub fn personal_or_create(conn: &mut DbConn, user_id: i64) -> DbResult<Namespace> {
    if let Some(ns) = personal(conn, user_id)? {
        return Ok(ns);
    }
    let inserted = diesel::insert_into(namespaces::table)
        .values((
            namespaces::kind.eq(KIND_PERSONAL),
            namespaces::owner_user_id.eq(user_id),
            namespaces::created_at.eq(now()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => {}
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => {}
        Err(e) => return Err(e.into()),
    }
    personal(conn, user_id)?.ok_or(DbError::Query(diesel::result::Error::NotFound))
}

/// Bytes a personal namespace may use: the owner's `users.quota_bytes`, read live so that
/// `vault-admin user set-quota` applies at once. `None` if the user is gone.
pub fn personal_quota(conn: &mut DbConn, user_id: i64) -> DbResult<Option<i64>> {
    Ok(users::table
        .find(user_id)
        .select(users::quota_bytes)
        .get_result(conn)
        .optional()?)
}

/// Takes the namespace's write lock for the rest of the transaction (a no-op update):
/// SQLite's database write lock, PostgreSQL's row lock. Concurrent changes of one
/// namespace therefore run one after the other and always see each other's results.
pub fn lock(conn: &mut DbConn, id: i64) -> DbResult<Namespace> {
    diesel::update(namespaces::table.find(id))
        .set(namespaces::revision.eq(namespaces::revision))
        .execute(conn)?;
    by_id(conn, id)?.ok_or(DbError::Query(diesel::result::Error::NotFound))
}

/// The namespace's revision now (0 if it is gone).
pub fn revision_of(conn: &mut DbConn, id: i64) -> DbResult<i64> {
    Ok(namespaces::table
        .find(id)
        .select(namespaces::revision)
        .get_result(conn)
        .optional()?
        .unwrap_or(0))
}

/// The revisions of the namespaces `ids` that exist, as (id, revision).
pub fn revisions_of(conn: &mut DbConn, ids: &[i64]) -> DbResult<Vec<(i64, i64)>> {
    let mut found = Vec::with_capacity(ids.len());
    for part in ids.chunks(500) {
        found.extend(
            namespaces::table
                .filter(namespaces::id.eq_any(part))
                .select((namespaces::id, namespaces::revision))
                .load::<(i64, i64)>(conn)?,
        );
    }
    Ok(found)
}

/// Bumps the revision and returns the new one.
pub fn bump(conn: &mut DbConn, id: i64) -> DbResult<i64> {
    diesel::update(namespaces::table.find(id))
        .set(namespaces::revision.eq(namespaces::revision + 1))
        .execute(conn)?;
    Ok(namespaces::table
        .find(id)
        .select(namespaces::revision)
        .get_result(conn)?)
}

/// Adds `delta` (possibly negative) to `used_bytes`.
pub fn add_used(conn: &mut DbConn, id: i64, delta: i64) -> DbResult<()> {
    if delta != 0 {
        diesel::update(namespaces::table.find(id))
            .set(namespaces::used_bytes.eq(namespaces::used_bytes + delta))
            .execute(conn)?;
    }
    Ok(())
}

/// Records that rows were hard-deleted at `revision` (`changes` then asks for a resync).
pub fn set_purged(conn: &mut DbConn, id: i64, revision: i64) -> DbResult<()> {
    diesel::update(namespaces::table.find(id))
        .set(namespaces::purged_revision.eq(revision))
        .execute(conn)?;
    Ok(())
}
