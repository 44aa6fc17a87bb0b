//! The `uploads` table: unfinished uploads. The row names the file, the reserved version
//! and the blob id the bytes go to; the bytes themselves are the blob store's partial.

use diesel::prelude::*;

use crate::db::schema::uploads;
use crate::db::{DbConn, DbResult};

/// One upload row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = uploads)]
pub struct Upload {
    pub id: i64,
    pub user_id: i64,
    pub namespace_id: i64,
    pub entry_id: i64,
    pub version: i64,
    pub generation: i64,
    pub sealed_size: i64,
    pub blob_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// The commit goes through only while the file's current version is this one (0: while
    /// the path holds no file).
    pub if_current: Option<i64>,
}

/// The values of a new upload.
#[derive(Debug, Insertable)]
#[diesel(table_name = uploads)]
pub struct NewUpload<'a> {
    pub user_id: i64,
    pub namespace_id: i64,
    pub entry_id: i64,
    pub version: i64,
    pub generation: i64,
    pub sealed_size: i64,
    pub blob_id: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    /// The client's token of the `upload_open_many` that opened it.
    pub batch_token: Option<&'a str>,
    /// See [`Upload::if_current`].
    pub if_current: Option<i64>,
}

/// Inserts an upload and returns its id.
pub fn insert(conn: &mut DbConn, new: &NewUpload<'_>) -> DbResult<i64> {
    diesel::insert_into(uploads::table)
        .values(new)
        .execute(conn)?;
    Ok(uploads::table
        .filter(uploads::blob_id.eq(new.blob_id))
        .select(uploads::id)
        .get_result(conn)?)
}

pub fn get(conn: &mut DbConn, id: i64) -> DbResult<Option<Upload>> {
    Ok(uploads::table
        .find(id)
        .select(Upload::as_select())
        .get_result(conn)
        .optional()?)
}

/// The uploads with these ids that exist (in no particular order).
pub fn get_many(conn: &mut DbConn, ids: &[i64]) -> DbResult<Vec<Upload>> {
    let mut found = Vec::with_capacity(ids.len());
    for batch in ids.chunks(500) {
        found.extend(
            uploads::table
                .filter(uploads::id.eq_any(batch))
                .select(Upload::as_select())
                .load(conn)?,
        );
    }
    Ok(found)
}

pub fn delete(conn: &mut DbConn, id: i64) -> DbResult<()> {
    diesel::delete(uploads::table.find(id)).execute(conn)?;
    Ok(())
}

/// Deletes the uploads with these ids.
pub fn delete_many(conn: &mut DbConn, ids: &[i64]) -> DbResult<()> {
    for batch in ids.chunks(500) {
        diesel::delete(uploads::table.filter(uploads::id.eq_any(batch))).execute(conn)?;
    }
    Ok(())
}

/// How many unfinished uploads a user has that have not expired at `now` (an expired one
/// can no longer be continued or committed; gc removes it).
pub fn count_for_user(conn: &mut DbConn, user_id: i64, now: i64) -> DbResult<i64> {
    Ok(uploads::table
        .filter(uploads::user_id.eq(user_id))
        .filter(uploads::expires_at.ge(now))
        .count()
        .get_result(conn)?)
}

/// Bytes declared by the unfinished uploads into a namespace (their sizes, and the chunks
/// those of format 2 said they will store) that have not expired at
/// `now`: they may arrive at any time, so a new upload must fit beside them.
pub fn reserved_bytes(conn: &mut DbConn, namespace_id: i64, now: i64) -> DbResult<u64> {
    let sizes: Vec<(i64, i64)> = uploads::table
        .filter(uploads::namespace_id.eq(namespace_id))
        .filter(uploads::expires_at.ge(now))
        .select((uploads::sealed_size, uploads::chunk_bytes))
        .load(conn)?;
    Ok(sizes
        .into_iter()
        .map(|(sealed, chunks)| sealed.max(0) as u64 + chunks.max(0) as u64)
        .sum())
}

/// Records that upload `id` (format 2) will store `bytes` of chunks: counted with its
/// size by [`reserved_bytes`] until it commits or expires.
pub fn set_chunk_bytes(conn: &mut DbConn, id: i64, bytes: u64) -> DbResult<()> {
    diesel::update(uploads::table.find(id))
        .set(uploads::chunk_bytes.eq(bytes as i64))
        .execute(conn)?;
    Ok(())
}

/// Takes `bytes` off the chunk bytes upload `id` holds (not below none): the space now
/// holds a chunk the upload announced, and counts it as stored.
pub fn release_chunk_bytes(conn: &mut DbConn, id: i64, bytes: u64) -> DbResult<()> {
    let held: Option<i64> = uploads::table
        .find(id)
        .select(uploads::chunk_bytes)
        .get_result(conn)
        .optional()?;
    if let Some(held) = held {
        let left = (held.max(0) as u64).saturating_sub(bytes);
        set_chunk_bytes(conn, id, left)?;
    }
    Ok(())
}

/// Whether any unfinished upload targets the entry.
pub fn any_for_entry(conn: &mut DbConn, entry_id: i64) -> DbResult<bool> {
    let n: i64 = uploads::table
        .filter(uploads::entry_id.eq(entry_id))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Deletes the uploads into these entries; returns their blob ids (whose partials the
/// caller may remove once the transaction committed).
pub fn delete_for_entries(conn: &mut DbConn, entry_ids: &[i64]) -> DbResult<Vec<String>> {
    let mut blobs = Vec::new();
    for batch in entry_ids.chunks(500) {
        blobs.extend(
            uploads::table
                .filter(uploads::entry_id.eq_any(batch))
                .select(uploads::blob_id)
                .load::<String>(conn)?,
        );
        diesel::delete(uploads::table.filter(uploads::entry_id.eq_any(batch))).execute(conn)?;
    }
    Ok(blobs)
}
