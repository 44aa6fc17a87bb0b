//! The `trash` table: one row per deletion (a file, or a directory with everything under
//! it). The deleted entries keep their rows, marked with the trash id, until restored or
//! purged.

use diesel::prelude::*;

use crate::db::schema::trash;
use crate::db::{DbConn, DbResult};

/// One trash row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = trash)]
pub struct TrashRow {
    pub id: i64,
    pub namespace_id: i64,
    pub root_entry_id: i64,
    pub path: String,
    pub kind: String,
    pub entries: i64,
    pub sealed_bytes: i64,
    pub trashed_at: i64,
}

/// The values of a new trash row.
#[derive(Debug, Insertable)]
#[diesel(table_name = trash)]
pub struct NewTrash<'a> {
    pub namespace_id: i64,
    pub root_entry_id: i64,
    pub path: &'a str,
    pub kind: &'a str,
    pub entries: i64,
    pub sealed_bytes: i64,
    pub trashed_at: i64,
}

/// Inserts a trash row and returns its id.
pub fn insert(conn: &mut DbConn, new: &NewTrash<'_>) -> DbResult<i64> {
    diesel::insert_into(trash::table)
        .values(new)
        .execute(conn)?;
    Ok(trash::table
        .filter(trash::namespace_id.eq(new.namespace_id))
        .filter(trash::root_entry_id.eq(new.root_entry_id))
        .order(trash::id.desc())
        .select(trash::id)
        .first(conn)?)
}

pub fn get(conn: &mut DbConn, ns: i64, id: i64) -> DbResult<Option<TrashRow>> {
    Ok(trash::table
        .filter(trash::namespace_id.eq(ns))
        .filter(trash::id.eq(id))
        .select(TrashRow::as_select())
        .first(conn)
        .optional()?)
}

/// The newest `limit` deletions of a namespace, newest first.
pub fn list(conn: &mut DbConn, ns: i64, limit: i64) -> DbResult<Vec<TrashRow>> {
    Ok(trash::table
        .filter(trash::namespace_id.eq(ns))
        .order((trash::trashed_at.desc(), trash::id.desc()))
        .limit(limit)
        .select(TrashRow::as_select())
        .load(conn)?)
}

/// Ids of a namespace's deletions made before `before` (all with `i64::MAX`).
pub fn ids_before(conn: &mut DbConn, ns: i64, before: i64) -> DbResult<Vec<i64>> {
    Ok(trash::table
        .filter(trash::namespace_id.eq(ns))
        .filter(trash::trashed_at.lt(before))
        .select(trash::id)
        .load(conn)?)
}

pub fn count(conn: &mut DbConn, ns: i64) -> DbResult<u64> {
    let n: i64 = trash::table
        .filter(trash::namespace_id.eq(ns))
        .count()
        .get_result(conn)?;
    Ok(n.max(0) as u64)
}

pub fn delete(conn: &mut DbConn, id: i64) -> DbResult<()> {
    diesel::delete(trash::table.find(id)).execute(conn)?;
    Ok(())
}
