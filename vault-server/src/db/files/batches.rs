//! Batch tokens: the `uploads.batch_token` an `upload_open_many` names its uploads with,
//! and the `abandoned_batches` table of tokens aborted by `upload_abort_batch`, which a
//! late `upload_open_many` with the same token is refused by.

use diesel::prelude::*;

use crate::db::schema::{abandoned_batches, uploads};
use crate::db::{DbConn, DbResult};

/// Serializes, until the transaction ends, the requests that open or abort uploads under
/// `token` of `user` (see [`crate::db::lock_names`]). Call it first in the transaction of
/// `upload_abort_batch`, and in that of `upload_open_many` before [`is_abandoned`].
pub fn lock(conn: &mut DbConn, user: i64, token: &str) -> DbResult<()> {
    crate::db::lock_names(conn, &[&format!("batch:{user}:{token}")])
}

/// Whether `upload_abort_batch` gave up `token` of `user`.
pub fn is_abandoned(conn: &mut DbConn, user: i64, token: &str) -> DbResult<bool> {
    let n: i64 = abandoned_batches::table
        .find((user, token))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// How many tokens `user` has given up that have not expired at `now`.
pub fn count_abandoned(conn: &mut DbConn, user: i64, now: i64) -> DbResult<i64> {
    Ok(abandoned_batches::table
        .filter(abandoned_batches::user_id.eq(user))
        .filter(abandoned_batches::expires_at.ge(now))
        .count()
        .get_result(conn)?)
}

/// Records that `token` of `user` is given up until `expires_at`. Its first statement is
/// a write, which on SQLite takes the write lock.
pub fn abandon(conn: &mut DbConn, user: i64, token: &str, expires_at: i64) -> DbResult<()> {
    diesel::delete(abandoned_batches::table.find((user, token))).execute(conn)?;
    diesel::insert_into(abandoned_batches::table)
        .values((
            abandoned_batches::user_id.eq(user),
            abandoned_batches::token.eq(token),
            abandoned_batches::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// The unfinished uploads (id, entry id) `user` opened under `token`.
pub fn uploads_of(conn: &mut DbConn, user: i64, token: &str) -> DbResult<Vec<(i64, i64)>> {
    Ok(uploads::table
        .filter(uploads::user_id.eq(user))
        .filter(uploads::batch_token.eq(token))
        .select((uploads::id, uploads::entry_id))
        .load(conn)?)
}

/// Forgets the tokens given up before `now`; returns how many.
pub fn purge_expired(conn: &mut DbConn, now: i64) -> DbResult<usize> {
    Ok(
        diesel::delete(abandoned_batches::table.filter(abandoned_batches::expires_at.lt(now)))
            .execute(conn)?,
    )
}
