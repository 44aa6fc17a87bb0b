//! Hard deletes: entries with their versions and uploads (fsck repairs), whole trash
//! items (`trash empty`, gc of expired trash), and whole namespaces (a deleted user's, a deleted group's).
//! Versions' blob ids go to `deleted_blobs` (gc removes the files after the grace period);
//! partial blobs of dropped uploads are returned so the caller removes them once the
//! transaction has committed.

use diesel::prelude::*;

use super::rows::{self, CHUNK};
use crate::blobs::{BlobId, BlobStore};
use crate::db::schema::{entries, namespaces, trash, uploads, versions};
use crate::db::{DbConn, DbResult};

/// What a hard delete removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Trash items (deletions) removed whole.
    pub trash_items: u64,
    pub entries: u64,
    pub versions: u64,
    /// Ciphertext bytes of the deleted versions.
    pub bytes: i64,
    pub uploads: u64,
    /// Partial blobs of the dropped uploads, to remove after the commit.
    pub partials: Vec<BlobId>,
}

impl Purged {
    fn add(&mut self, other: Purged) {
        self.trash_items += other.trash_items;
        self.entries += other.entries;
        self.versions += other.versions;
        self.bytes += other.bytes;
        self.uploads += other.uploads;
        self.partials.extend(other.partials);
    }

    /// Removes the partial blobs; returns a message for each that could not be removed
    /// (gc removes leftovers as orphans later).
    pub fn remove_partials(&self, store: &dyn BlobStore) -> Vec<String> {
        self.partials
            .iter()
            .filter_map(|id| {
                store
                    .remove_partial(id)
                    .err()
                    .map(|e| format!("cannot remove partial blob {id}: {e}"))
            })
            .collect()
    }
}

/// Drops uploads by id; returns how many rows went and their partial blobs.
pub fn drop_uploads(conn: &mut DbConn, ids: &[i64]) -> DbResult<Purged> {
    let mut out = Purged::default();
    for chunk in ids.chunks(CHUNK) {
        let blobs: Vec<String> = uploads::table
            .filter(uploads::id.eq_any(chunk))
            .select(uploads::blob_id)
            .load(conn)?;
        let n = diesel::delete(uploads::table.filter(uploads::id.eq_any(chunk))).execute(conn)?;
        out.uploads += n as u64;
        out.partials
            .extend(blobs.iter().filter_map(|b| rows::blob_id(b)));
    }
    Ok(out)
}

/// Deletes a file entry that never got a version and has no upload left (what an
/// unfinished first upload leaves behind). Returns whether it was deleted.
pub fn delete_if_abandoned(conn: &mut DbConn, entry_id: i64) -> DbResult<bool> {
    let Some(entry) = rows::entry(conn, entry_id)? else {
        return Ok(false);
    };
    if entry.current_version.is_some() || entry.kind != "file" {
        return Ok(false);
    }
    let versions: i64 = versions::table
        .filter(versions::entry_id.eq(entry_id))
        .count()
        .get_result(conn)?;
    let uploads: i64 = uploads::table
        .filter(uploads::entry_id.eq(entry_id))
        .count()
        .get_result(conn)?;
    if versions > 0 || uploads > 0 {
        return Ok(false);
    }
    Ok(diesel::delete(entries::table.find(entry_id)).execute(conn)? > 0)
}

/// Hard-deletes entries with their versions (blob ids queued) and uploads. Does not touch
/// the namespace's counters: the caller releases `bytes` (see [`rows::release`]).
pub fn purge_entries(conn: &mut DbConn, ids: &[i64], now: i64) -> DbResult<Purged> {
    let mut out = Purged::default();
    for chunk in ids.chunks(CHUNK) {
        let gone: Vec<(String, i64)> = versions::table
            .filter(versions::entry_id.eq_any(chunk))
            .select((versions::blob_id, versions::sealed_size))
            .load(conn)?;
        let blob_ids: Vec<String> = gone.iter().map(|(b, _)| b.clone()).collect();
        rows::queue_deleted(conn, &blob_ids, now)?;
        out.versions += diesel::delete(versions::table.filter(versions::entry_id.eq_any(chunk)))
            .execute(conn)? as u64;
        out.bytes += gone.iter().map(|(_, size)| size).sum::<i64>();
        let upload_ids: Vec<i64> = uploads::table
            .filter(uploads::entry_id.eq_any(chunk))
            .select(uploads::id)
            .load(conn)?;
        out.add(drop_uploads(conn, &upload_ids)?);
        out.entries +=
            diesel::delete(entries::table.filter(entries::id.eq_any(chunk))).execute(conn)? as u64;
    }
    Ok(out)
}

/// Hard-deletes the trash items `trash_ids` of namespace `ns` (those that are still
/// there) with everything in them, releases their bytes, and bumps the revision and marks
/// the namespace purged, so the change feed tells clients to resync. `trash empty` calls it
/// with the namespace locked, gc for each expired item.
pub fn purge_trash(conn: &mut DbConn, ns: i64, trash_ids: &[i64], now: i64) -> DbResult<Purged> {
    let mut out = Purged::default();
    for chunk in trash_ids.chunks(CHUNK) {
        let items: Vec<i64> = trash::table
            .filter(trash::namespace_id.eq(ns))
            .filter(trash::id.eq_any(chunk))
            .select(trash::id)
            .load(conn)?;
        for item in items {
            let ids: Vec<i64> = entries::table
                .filter(entries::trash_id.eq(item))
                .select(entries::id)
                .load(conn)?;
            out.add(purge_entries(conn, &ids, now)?);
            diesel::delete(trash::table.find(item)).execute(conn)?;
            out.trash_items += 1;
        }
    }
    if out.trash_items > 0 {
        rows::release(conn, ns, out.bytes, true)?;
    }
    Ok(out)
}

/// [`purge_trash`] of one item, wherever it is; `None` if it is gone already.
pub fn purge_trash_item(conn: &mut DbConn, trash_id: i64, now: i64) -> DbResult<Option<Purged>> {
    let ns: Option<i64> = trash::table
        .find(trash_id)
        .select(trash::namespace_id)
        .first(conn)
        .optional()?;
    let Some(ns) = ns else { return Ok(None) };
    Ok(Some(purge_trash(conn, ns, &[trash_id], now)?))
}

/// Deletes a namespace and everything in it: entries with their versions (blob ids
/// queued) and uploads, any upload into it whose entry is missing, its trash, its chunks
/// (blob ids queued) and its row.
/// Used for `user delete` (the personal space) and for deleting a group.
pub fn purge_namespace(conn: &mut DbConn, ns: i64, now: i64) -> DbResult<Purged> {
    let ids: Vec<i64> = entries::table
        .filter(entries::namespace_id.eq(ns))
        .select(entries::id)
        .load(conn)?;
    let mut out = purge_entries(conn, &ids, now)?;
    // Uploads whose entry row is missing (should not exist, but must not survive).
    let stray: Vec<i64> = uploads::table
        .filter(uploads::namespace_id.eq(ns))
        .select(uploads::id)
        .load(conn)?;
    out.add(drop_uploads(conn, &stray)?);
    diesel::delete(trash::table.filter(trash::namespace_id.eq(ns))).execute(conn)?;
    let chunk_blobs = crate::db::files::chunks::delete_namespace(conn, ns)?;
    rows::queue_deleted(conn, &chunk_blobs, now)?;
    diesel::delete(namespaces::table.find(ns)).execute(conn)?;
    Ok(out)
}

/// Deletes a user's personal namespace and everything in it (for `user delete`), and the
/// user's unfinished uploads into other (group) namespaces.
pub fn purge_user_files(conn: &mut DbConn, user_id: i64, now: i64) -> DbResult<Purged> {
    let mut out = Purged::default();
    let spaces: Vec<i64> = namespaces::table
        .filter(namespaces::owner_user_id.eq(user_id))
        .select(namespaces::id)
        .load(conn)?;
    for ns in spaces {
        out.add(purge_namespace(conn, ns, now)?);
    }
    // Uploads the user opened in other namespaces (groups) end with the account too.
    let elsewhere: Vec<i64> = uploads::table
        .filter(uploads::user_id.eq(user_id))
        .select(uploads::id)
        .load(conn)?;
    let entry_ids: Vec<i64> = uploads::table
        .filter(uploads::user_id.eq(user_id))
        .select(uploads::entry_id)
        .load(conn)?;
    out.add(drop_uploads(conn, &elsewhere)?);
    for entry in entry_ids {
        delete_if_abandoned(conn, entry)?;
    }
    Ok(out)
}
