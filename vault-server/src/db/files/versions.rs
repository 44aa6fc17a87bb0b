//! The `versions` table (immutable file versions, each with its own blob and that blob's
//! BLAKE3) and `deleted_blobs` (blob ids of deleted versions, removed from disk later by `gc`).

use diesel::dsl::count_star;
use diesel::prelude::*;

use crate::db::schema::{deleted_blobs, entries, versions};
use crate::db::{DbConn, DbResult};

/// One version row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = versions)]
pub struct Version {
    pub id: i64,
    pub entry_id: i64,
    pub version: i64,
    pub blob_id: String,
    pub sealed_size: i64,
    pub wrapped_key: Vec<u8>,
    pub sealed_meta: Vec<u8>,
    pub generation: i64,
    pub created_at: i64,
    /// Sealed bytes of the distinct chunks it uses (format 2; 0 for format 1).
    pub chunk_bytes: i64,
}

/// The values of a new version.
#[derive(Debug, Insertable)]
#[diesel(table_name = versions)]
pub struct NewVersion<'a> {
    pub entry_id: i64,
    pub version: i64,
    pub blob_id: &'a str,
    pub sealed_size: i64,
    pub wrapped_key: &'a [u8],
    pub sealed_meta: &'a [u8],
    pub generation: i64,
    pub created_at: i64,
    /// BLAKE3 of the sealed blob as stored (32 bytes).
    pub blob_blake3: Option<&'a [u8]>,
}

pub fn insert(conn: &mut DbConn, new: &NewVersion<'_>) -> DbResult<()> {
    diesel::insert_into(versions::table)
        .values(new)
        .execute(conn)?;
    Ok(())
}

/// Records the sealed bytes of the distinct chunks version row `id` uses.
pub fn set_chunk_bytes(conn: &mut DbConn, id: i64, bytes: i64) -> DbResult<()> {
    diesel::update(versions::table.find(id))
        .set(versions::chunk_bytes.eq(bytes))
        .execute(conn)?;
    Ok(())
}

pub fn get(conn: &mut DbConn, entry_id: i64, version: i64) -> DbResult<Option<Version>> {
    Ok(versions::table
        .filter(versions::entry_id.eq(entry_id))
        .filter(versions::version.eq(version))
        .select(Version::as_select())
        .get_result(conn)
        .optional()?)
}

/// Every kept version of a file, newest first.
pub fn for_entry(conn: &mut DbConn, entry_id: i64) -> DbResult<Vec<Version>> {
    Ok(versions::table
        .filter(versions::entry_id.eq(entry_id))
        .order(versions::version.desc())
        .select(Version::as_select())
        .load(conn)?)
}

/// Every version of these entries (for listings: current version and count per entry).
pub fn for_entries(conn: &mut DbConn, entry_ids: &[i64]) -> DbResult<Vec<Version>> {
    let mut all = Vec::new();
    for batch in entry_ids.chunks(500) {
        all.extend(
            versions::table
                .filter(versions::entry_id.eq_any(batch))
                .select(Version::as_select())
                .load(conn)?,
        );
    }
    Ok(all)
}

/// (blob id, sealed size) of every version of these entries.
pub fn blobs_of(conn: &mut DbConn, entry_ids: &[i64]) -> DbResult<Vec<(String, i64)>> {
    let mut all = Vec::new();
    for batch in entry_ids.chunks(500) {
        all.extend(
            versions::table
                .filter(versions::entry_id.eq_any(batch))
                .select((versions::blob_id, versions::sealed_size))
                .load::<(String, i64)>(conn)?,
        );
    }
    Ok(all)
}

/// Deletes every version of these entries, sending their blobs to `deleted_blobs`.
/// Returns the sealed bytes freed.
pub fn delete_for_entries(conn: &mut DbConn, entry_ids: &[i64], now: i64) -> DbResult<i64> {
    let blobs = blobs_of(conn, entry_ids)?;
    let freed = blobs.iter().map(|(_, size)| *size).sum();
    let ids: Vec<String> = blobs.into_iter().map(|(id, _)| id).collect();
    mark_deleted(conn, &ids, now)?;
    for batch in entry_ids.chunks(500) {
        diesel::delete(versions::table.filter(versions::entry_id.eq_any(batch))).execute(conn)?;
    }
    Ok(freed)
}

/// Deletes the versions of a file beyond the newest `keep` (never `current`), sending
/// their blobs to `deleted_blobs`. Returns the sealed bytes freed.
pub fn prune(
    conn: &mut DbConn,
    entry_id: i64,
    keep: usize,
    current: i64,
    now: i64,
) -> DbResult<i64> {
    let doomed: Vec<Version> = for_entry(conn, entry_id)?
        .into_iter()
        .skip(keep.max(1))
        .filter(|v| v.version != current)
        .collect();
    if doomed.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = doomed.iter().map(|v| v.id).collect();
    let blobs: Vec<String> = doomed.iter().map(|v| v.blob_id.clone()).collect();
    mark_deleted(conn, &blobs, now)?;
    diesel::delete(versions::table.filter(versions::id.eq_any(&ids))).execute(conn)?;
    Ok(doomed.iter().map(|v| v.sealed_size).sum())
}

/// Records blob ids whose versions are gone; `gc` removes the files after a grace period.
pub fn mark_deleted(conn: &mut DbConn, blob_ids: &[String], now: i64) -> DbResult<()> {
    // One row at a time: batch inserts are not available through `MultiConnection`.
    for id in blob_ids {
        diesel::insert_into(deleted_blobs::table)
            .values((
                deleted_blobs::blob_id.eq(id.as_str()),
                deleted_blobs::deleted_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// How many versions a namespace keeps, in the trash or not.
/// Sealed bytes of every version of namespace `ns` counted whole: each one's own blob
/// plus the chunks it uses, a shared chunk once per version that uses it.
pub fn logical_bytes(conn: &mut DbConn, ns: i64) -> DbResult<u64> {
    use diesel::sql_types::{BigInt, Nullable};
    // SUM of a BIGINT is NUMERIC on PostgreSQL: cast back (no namespace nears 2^63 bytes).
    let total: Option<i64> = versions::table
        .inner_join(entries::table.on(entries::id.eq(versions::entry_id)))
        .filter(entries::namespace_id.eq(ns))
        .select(diesel::dsl::sql::<Nullable<BigInt>>(
            "CAST(SUM(versions.sealed_size + versions.chunk_bytes) AS BIGINT)",
        ))
        .first(conn)?;
    Ok(total.unwrap_or(0).max(0) as u64)
}

pub fn count_in_namespace(conn: &mut DbConn, ns: i64) -> DbResult<u64> {
    let n: i64 = versions::table
        .inner_join(entries::table.on(entries::id.eq(versions::entry_id)))
        .filter(entries::namespace_id.eq(ns))
        .select(count_star())
        .first(conn)?;
    Ok(n.max(0) as u64)
}
