//! The `sessions` table. Tokens are stored only as SHA-256 hashes. An ended session keeps
//! its row (with `end_reason`) so a client that tries to resume it is told why.

use diesel::prelude::*;

use super::schema::sessions;
use super::{DbConn, DbResult, now};

/// One session row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: i64,
    pub user_id: i64,
    pub token_hash: Vec<u8>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub client_ip: String,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
}

pub fn insert(
    conn: &mut DbConn,
    user_id: i64,
    token_hash: &[u8],
    client_ip: &str,
) -> DbResult<SessionRow> {
    let at = now();
    diesel::insert_into(sessions::table)
        .values((
            sessions::user_id.eq(user_id),
            sessions::token_hash.eq(token_hash),
            sessions::created_at.eq(at),
            sessions::last_seen_at.eq(at),
            sessions::client_ip.eq(client_ip),
        ))
        .execute(conn)?;
    Ok(sessions::table
        .filter(sessions::token_hash.eq(token_hash))
        .select(SessionRow::as_select())
        .first(conn)?)
}

pub fn by_token_hash(conn: &mut DbConn, token_hash: &[u8]) -> DbResult<Option<SessionRow>> {
    Ok(sessions::table
        .filter(sessions::token_hash.eq(token_hash))
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn by_id(conn: &mut DbConn, id: i64) -> DbResult<Option<SessionRow>> {
    Ok(sessions::table
        .find(id)
        .select(SessionRow::as_select())
        .get_result(conn)
        .optional()?)
}

pub fn touch(conn: &mut DbConn, id: i64, at: i64) -> DbResult<()> {
    diesel::update(sessions::table.find(id))
        .set(sessions::last_seen_at.eq(at))
        .execute(conn)?;
    Ok(())
}

/// Ends one session if it is live. Returns whether it was.
pub fn end(conn: &mut DbConn, id: i64, reason: &str) -> DbResult<bool> {
    let n = diesel::update(
        sessions::table
            .find(id)
            .filter(sessions::ended_at.is_null()),
    )
    .set((
        sessions::ended_at.eq(now()),
        sessions::end_reason.eq(reason),
    ))
    .execute(conn)?;
    if n == 1 {
        announce_ended(conn)?;
    }
    Ok(n == 1)
}

/// Tells every server instance, at commit, to close the connections of ended sessions.
fn announce_ended(conn: &mut DbConn) -> DbResult<()> {
    super::notify(conn, crate::relay::CHANNEL, crate::relay::SESSIONS_ENDED)
}

/// Ends every live session of a user, except `keep` if given. Returns how many ended.
pub fn end_all_for_user(
    conn: &mut DbConn,
    user_id: i64,
    keep: Option<i64>,
    reason: &str,
) -> DbResult<usize> {
    let target = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::ended_at.is_null())
        .filter(sessions::id.ne(keep.unwrap_or(-1)));
    let ended = diesel::update(target)
        .set((
            sessions::ended_at.eq(now()),
            sessions::end_reason.eq(reason),
        ))
        .execute(conn)?;
    if ended > 0 {
        announce_ended(conn)?;
    }
    Ok(ended)
}

/// Live sessions of one user, newest first.
pub fn live_for_user(conn: &mut DbConn, user_id: i64) -> DbResult<Vec<SessionRow>> {
    Ok(sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::ended_at.is_null())
        .order(sessions::id.desc())
        .select(SessionRow::as_select())
        .load(conn)?)
}

/// Of the given session ids, those that have ended, with their reasons.
pub fn ended_among(conn: &mut DbConn, ids: &[i64]) -> DbResult<Vec<(i64, Option<String>)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sessions::table
        .filter(sessions::id.eq_any(ids))
        .filter(sessions::ended_at.is_not_null())
        .select((sessions::id, sessions::end_reason))
        .load(conn)?)
}

pub fn count_live(conn: &mut DbConn) -> DbResult<i64> {
    Ok(sessions::table
        .filter(sessions::ended_at.is_null())
        .count()
        .get_result(conn)?)
}

/// Ends sessions idle since before `cutoff`.
pub fn expire_idle(conn: &mut DbConn, cutoff: i64) -> DbResult<usize> {
    Ok(diesel::update(
        sessions::table
            .filter(sessions::ended_at.is_null())
            .filter(sessions::last_seen_at.lt(cutoff)),
    )
    .set((
        sessions::ended_at.eq(now()),
        sessions::end_reason.eq("expired after 30 days without use"),
    ))
    .execute(conn)?)
}
