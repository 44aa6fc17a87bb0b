//! The `chunks` table (the chunks of format version 2, docs/FORMAT.md §7.10: each distinct
//! chunk of a space once, under a blob id the server chose) and `version_chunks` (which
//! chunks each version of format 2 uses). Chunks are found by the keyed id the client
//! computed, always within one namespace: nothing is shared across spaces.
//!
//! A chunk's `used_at` moves whenever it is stored, reported held (`chunks_missing`) or
//! committed into a version, so that gc, which removes chunks no version uses after
//! `files.blob_grace_s`, leaves alone those an upload in progress counts on. A commit
//! checks again, in its transaction, that every chunk it names is still there.

use std::collections::{HashMap, HashSet};

use diesel::dsl::{exists, not};
use diesel::prelude::*;

use crate::db::schema::{chunks, version_chunks, versions};
use crate::db::{DbConn, DbResult};

/// Chunks no version uses, not used since `$before`. (A macro, as `visible!` is: the
/// queries that use it need the expression, not a function's type.)
macro_rules! unused {
    ($before:expr) => {
        chunks::used_at.lt($before).and(not(exists(
            version_chunks::table.filter(version_chunks::chunk.eq(chunks::id)),
        )))
    };
}

/// Ids per `IN (…)` list.
const BATCH: usize = 500;

/// One stored chunk.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = chunks)]
pub struct Chunk {
    pub id: i64,
    pub namespace_id: i64,
    pub chunk_id: Vec<u8>,
    pub blob_id: String,
    pub sealed_size: i64,
    pub blob_blake3: Vec<u8>,
    pub used_at: i64,
}

/// The values of a new chunk.
#[derive(Debug, Insertable)]
#[diesel(table_name = chunks)]
pub struct NewChunk<'a> {
    pub namespace_id: i64,
    pub chunk_id: &'a [u8],
    pub blob_id: &'a str,
    pub sealed_size: i64,
    pub blob_blake3: &'a [u8],
    pub used_at: i64,
}

/// The chunk `id` of namespace `ns`.
pub fn find(conn: &mut DbConn, ns: i64, id: &[u8]) -> DbResult<Option<Chunk>> {
    Ok(chunks::table
        .filter(chunks::namespace_id.eq(ns))
        .filter(chunks::chunk_id.eq(id))
        .select(Chunk::as_select())
        .get_result(conn)
        .optional()?)
}

/// Which of `ids` namespace `ns` holds, marking those used at `now`.
pub fn held(conn: &mut DbConn, ns: i64, ids: &[Vec<u8>], now: i64) -> DbResult<HashSet<Vec<u8>>> {
    let mut found = HashSet::new();
    for batch in ids.chunks(BATCH) {
        let rows: Vec<Vec<u8>> = chunks::table
            .filter(chunks::namespace_id.eq(ns))
            .filter(chunks::chunk_id.eq_any(batch))
            .select(chunks::chunk_id)
            .load(conn)?;
        if !rows.is_empty() {
            diesel::update(
                chunks::table
                    .filter(chunks::namespace_id.eq(ns))
                    .filter(chunks::chunk_id.eq_any(&rows)),
            )
            .set(chunks::used_at.eq(now))
            .execute(conn)?;
        }
        found.extend(rows);
    }
    Ok(found)
}

pub fn insert(conn: &mut DbConn, new: &NewChunk<'_>) -> DbResult<()> {
    diesel::insert_into(chunks::table)
        .values(new)
        .execute(conn)?;
    Ok(())
}

/// Records that version row `version_id` uses the chunks `ids` of namespace `ns` (a chunk
/// named twice is recorded once) and marks them used. Returns the sealed bytes of the
/// distinct chunks, or the first id the namespace does not hold, having recorded nothing.
pub fn attach(
    conn: &mut DbConn,
    ns: i64,
    version_id: i64,
    ids: &[Vec<u8>],
    now: i64,
) -> DbResult<Result<i64, Vec<u8>>> {
    let mut rows: HashMap<Vec<u8>, (i64, i64)> = HashMap::with_capacity(ids.len());
    for batch in ids.chunks(BATCH) {
        let found: Vec<(Vec<u8>, i64, i64)> = chunks::table
            .filter(chunks::namespace_id.eq(ns))
            .filter(chunks::chunk_id.eq_any(batch))
            .select((chunks::chunk_id, chunks::id, chunks::sealed_size))
            .load(conn)?;
        rows.extend(found.into_iter().map(|(id, row, size)| (id, (row, size))));
    }
    if let Some(missing) = ids.iter().find(|id| !rows.contains_key(*id)) {
        return Ok(Err(missing.clone()));
    }
    let bytes = rows.values().map(|(_, size)| size).sum();
    let distinct: Vec<i64> = rows.values().map(|(row, _)| *row).collect();
    // One row at a time: batch inserts are not available through `MultiConnection`.
    for chunk in &distinct {
        diesel::insert_into(version_chunks::table)
            .values((
                version_chunks::version_id.eq(version_id),
                version_chunks::chunk.eq(chunk),
            ))
            .execute(conn)?;
    }
    for batch in distinct.chunks(BATCH) {
        diesel::update(chunks::table.filter(chunks::id.eq_any(batch)))
            .set(chunks::used_at.eq(now))
            .execute(conn)?;
    }
    Ok(Ok(bytes))
}

/// Deletes the `version_chunks` rows of versions that no longer exist (versions are
/// deleted in several places; their links go here, at the next gc). Returns how many.
pub fn drop_stale_links(conn: &mut DbConn) -> DbResult<u64> {
    let n = diesel::delete(version_chunks::table.filter(not(exists(
        versions::table.filter(versions::id.eq(version_chunks::version_id)),
    ))))
    .execute(conn)?;
    Ok(n as u64)
}

/// Namespaces that have chunks no version uses and nothing used since `before`.
pub fn namespaces_with_unused(conn: &mut DbConn, before: i64) -> DbResult<Vec<i64>> {
    Ok(chunks::table
        .filter(unused!(before))
        .select(chunks::namespace_id)
        .distinct()
        .load(conn)?)
}

/// In namespace `ns` (locked by the caller): deletes the chunks no version uses and
/// nothing used since `before`, and returns them (their blobs are for `deleted_blobs`,
/// their bytes for the namespace's count).
pub fn delete_unused(conn: &mut DbConn, ns: i64, before: i64) -> DbResult<Vec<Chunk>> {
    let doomed: Vec<Chunk> = chunks::table
        .filter(unused!(before))
        .filter(chunks::namespace_id.eq(ns))
        .select(Chunk::as_select())
        .load(conn)?;
    let ids: Vec<i64> = doomed.iter().map(|c| c.id).collect();
    for batch in ids.chunks(BATCH) {
        diesel::delete(chunks::table.filter(chunks::id.eq_any(batch))).execute(conn)?;
    }
    Ok(doomed)
}

/// Every chunk's blob id (for gc's and fsck's view of what the store should hold).
pub fn blob_ids(conn: &mut DbConn) -> DbResult<Vec<String>> {
    Ok(chunks::table.select(chunks::blob_id).load(conn)?)
}

/// Every stored chunk (for fsck, backup and the scrub).
pub fn all(conn: &mut DbConn) -> DbResult<Vec<Chunk>> {
    Ok(chunks::table
        .order(chunks::id)
        .select(Chunk::as_select())
        .load(conn)?)
}

/// Deletes every chunk of namespace `ns` and their links, returning the blob ids (for a
/// namespace that goes: a deleted group or user).
pub fn delete_namespace(conn: &mut DbConn, ns: i64) -> DbResult<Vec<String>> {
    let rows: Vec<(i64, String)> = chunks::table
        .filter(chunks::namespace_id.eq(ns))
        .select((chunks::id, chunks::blob_id))
        .load(conn)?;
    for batch in rows.chunks(BATCH) {
        let ids: Vec<i64> = batch.iter().map(|(id, _)| *id).collect();
        diesel::delete(version_chunks::table.filter(version_chunks::chunk.eq_any(&ids)))
            .execute(conn)?;
        diesel::delete(chunks::table.filter(chunks::id.eq_any(&ids))).execute(conn)?;
    }
    Ok(rows.into_iter().map(|(_, blob)| blob).collect())
}
