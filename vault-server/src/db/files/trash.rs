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

/// What a purge removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Trash rows (deletions) removed.
    pub items: u64,
    /// Ciphertext bytes of the versions removed (taken off `used_bytes`).
    pub sealed_bytes: i64,
    /// Blob ids of partial uploads into the purged entries (the caller may remove the
    /// partials once the transaction committed; gc collects them otherwise).
    pub partials: Vec<String>,
}

/// Hard-deletes the deletions `trash_ids` of namespace `ns`: their entries, those
/// entries' versions (blob ids to `deleted_blobs`) and uploads; lowers `used_bytes`, bumps
/// the revision and records it as `purged_revision`. Call inside a transaction that
/// started with [`super::namespaces::lock`]; used by `trash empty` and by `gc`.
pub fn purge(conn: &mut DbConn, ns: i64, trash_ids: &[i64], now: i64) -> DbResult<Purged> {
    if trash_ids.is_empty() {
        return Ok(Purged::default());
    }
    let mut purged = Purged::default();
    for &id in trash_ids {
        if get(conn, ns, id)?.is_none() {
            continue;
        }
        let entry_ids = super::entries::ids_in_trash(conn, id)?;
        purged.sealed_bytes += super::versions::delete_for_entries(conn, &entry_ids, now)?;
        purged
            .partials
            .extend(super::uploads::delete_for_entries(conn, &entry_ids)?);
        super::entries::delete(conn, &entry_ids)?;
        delete(conn, id)?;
        purged.items += 1;
    }
    super::namespaces::add_used(conn, ns, -purged.sealed_bytes)?;
    let revision = super::namespaces::bump(conn, ns)?;
    super::namespaces::set_purged(conn, ns, revision)?;
    Ok(purged)
}
