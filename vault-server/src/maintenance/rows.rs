//! The rows and small queries maintenance shares: the columns of entries, versions and
//! uploads it reads, the referenced blob ids, queueing blobs for deletion, and moving a
//! namespace's counters.

use std::collections::HashSet;

use diesel::prelude::*;

use crate::blobs::BlobId;
use crate::db::schema::{deleted_blobs, entries, groups, namespaces, uploads, users, versions};
use crate::db::{DbConn, DbResult};

/// At most this many values in one `IN (…)` list.
pub const CHUNK: usize = 500;

/// An entry as maintenance sees it.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = entries)]
pub struct EntryRow {
    pub id: i64,
    pub namespace_id: i64,
    pub path: String,
    pub parent: String,
    pub kind: String,
    pub current_version: Option<i64>,
    pub trash_id: Option<i64>,
}

/// A version without its key and metadata.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = versions)]
pub struct VersionRow {
    pub id: i64,
    pub entry_id: i64,
    pub version: i64,
    pub blob_id: String,
    pub sealed_size: i64,
    /// BLAKE3 of the blob as stored; `None` for versions stored before it was recorded.
    pub blob_blake3: Option<Vec<u8>>,
}

/// An unfinished upload.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = uploads)]
pub struct UploadRow {
    pub id: i64,
    pub namespace_id: i64,
    pub entry_id: i64,
    pub sealed_size: i64,
    pub blob_id: String,
}

pub fn entry(conn: &mut DbConn, id: i64) -> DbResult<Option<EntryRow>> {
    Ok(entries::table
        .find(id)
        .select(EntryRow::as_select())
        .first(conn)
        .optional()?)
}

/// The versions of an entry, newest first.
pub fn versions_of(conn: &mut DbConn, entry_id: i64) -> DbResult<Vec<VersionRow>> {
    Ok(versions::table
        .filter(versions::entry_id.eq(entry_id))
        .order(versions::version.desc())
        .select(VersionRow::as_select())
        .load(conn)?)
}

/// Every blob id the database refers to (uploads, versions, chunks, deleted_blobs), read in the
/// order a blob id moves between those tables so none is missed by a concurrent change.
pub fn referenced_blobs(conn: &mut DbConn) -> DbResult<HashSet<String>> {
    let mut ids: HashSet<String> = uploads::table
        .select(uploads::blob_id)
        .load::<String>(conn)?
        .into_iter()
        .collect();
    ids.extend(
        versions::table
            .select(versions::blob_id)
            .load::<String>(conn)?,
    );
    ids.extend(crate::db::files::chunks::blob_ids(conn)?);
    ids.extend(
        deleted_blobs::table
            .select(deleted_blobs::blob_id)
            .load::<String>(conn)?,
    );
    Ok(ids)
}

/// The blob ids of unfinished uploads.
pub fn upload_blobs(conn: &mut DbConn) -> DbResult<HashSet<String>> {
    Ok(uploads::table
        .select(uploads::blob_id)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Queues blobs for removal by gc after the grace period (ids already queued stay as
/// they are).
pub fn queue_deleted(conn: &mut DbConn, ids: &[String], now: i64) -> DbResult<()> {
    for chunk in ids.chunks(CHUNK) {
        let queued: HashSet<String> = deleted_blobs::table
            .filter(deleted_blobs::blob_id.eq_any(chunk))
            .select(deleted_blobs::blob_id)
            .load::<String>(conn)?
            .into_iter()
            .collect();
        for id in chunk.iter().filter(|id| !queued.contains(*id)) {
            diesel::insert_into(deleted_blobs::table)
                .values((
                    deleted_blobs::blob_id.eq(id),
                    deleted_blobs::deleted_at.eq(now),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Bumps a namespace's revision and returns the new one.
pub fn bump_revision(conn: &mut DbConn, ns: i64) -> DbResult<i64> {
    diesel::update(namespaces::table.find(ns))
        .set(namespaces::revision.eq(namespaces::revision + 1))
        .execute(conn)?;
    Ok(namespaces::table
        .find(ns)
        .select(namespaces::revision)
        .first(conn)?)
}

/// Subtracts `bytes` from a namespace's `used_bytes` and bumps its revision; with
/// `purged` (rows were hard-deleted) also sets `purged_revision`, so the change feed tells
/// clients to resync. Returns the new revision.
pub fn release(conn: &mut DbConn, ns: i64, bytes: i64, purged: bool) -> DbResult<i64> {
    diesel::update(namespaces::table.find(ns))
        .set(namespaces::used_bytes.eq(namespaces::used_bytes - bytes))
        .execute(conn)?;
    let revision = bump_revision(conn, ns)?;
    if purged {
        diesel::update(namespaces::table.find(ns))
            .set(namespaces::purged_revision.eq(revision))
            .execute(conn)?;
    }
    Ok(revision)
}

/// Marks an entry changed at `revision`.
pub fn touch_entry(conn: &mut DbConn, entry_id: i64, revision: i64, now: i64) -> DbResult<()> {
    diesel::update(entries::table.find(entry_id))
        .set((entries::revision.eq(revision), entries::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// "user alice" for a personal namespace, "group team" for a group's, "namespace 7" when
/// the owner is gone, for messages to the operator.
pub fn namespace_label(conn: &mut DbConn, ns: i64) -> DbResult<String> {
    let owner: Option<(Option<i64>, Option<i64>)> = namespaces::table
        .find(ns)
        .select((namespaces::owner_user_id, namespaces::group_id))
        .first(conn)
        .optional()?;
    let label = match owner {
        Some((Some(user), _)) => users::table
            .find(user)
            .select(users::username)
            .first::<String>(conn)
            .optional()?
            .map(|n| format!("user {n}")),
        Some((None, Some(group))) => groups::table
            .find(group)
            .select(groups::name)
            .first::<String>(conn)
            .optional()?
            .map(|n| format!("group {n}")),
        _ => None,
    };
    Ok(label.unwrap_or_else(|| format!("namespace {ns}")))
}

/// Records the BLAKE3 of a version's blob where none was recorded yet.
pub fn record_blob_hash(conn: &mut DbConn, version_id: i64, hash: &[u8]) -> DbResult<bool> {
    let n = diesel::update(
        versions::table
            .find(version_id)
            .filter(versions::blob_blake3.is_null()),
    )
    .set(versions::blob_blake3.eq(hash))
    .execute(conn)?;
    Ok(n == 1)
}

/// A blob id read from the database, if it has the shape of one this server made.
pub fn blob_id(text: &str) -> Option<BlobId> {
    BlobId::parse(text)
}
