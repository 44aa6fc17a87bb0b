//! The `codes` table: mailed verification codes for registration and password reset,
//! stored as salted hashes. Only the newest code per purpose and user is live.

use diesel::prelude::*;

use super::schema::codes;
use super::{DbConn, DbResult};

/// One stored code.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = codes)]
pub struct CodeRow {
    pub id: i64,
    pub purpose: String,
    pub username: String,
    pub email: String,
    pub code_salt: Vec<u8>,
    pub code_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub failed_attempts: i64,
    pub used: bool,
}

/// A code about to be stored.
#[derive(Debug, Insertable)]
#[diesel(table_name = codes)]
pub struct NewCode<'a> {
    pub purpose: &'a str,
    pub username: &'a str,
    pub email: &'a str,
    pub code_salt: &'a [u8],
    pub code_hash: &'a [u8],
    pub created_at: i64,
    pub expires_at: i64,
    pub failed_attempts: i64,
    pub used: bool,
}

/// When the newest code of `purpose` for `email` was made, for the resend cooldown.
pub fn last_made_for(conn: &mut DbConn, purpose: &str, email: &str) -> DbResult<Option<i64>> {
    Ok(codes::table
        .filter(codes::email.eq(email))
        .filter(codes::purpose.eq(purpose))
        .select(diesel::dsl::max(codes::created_at))
        .first::<Option<i64>>(conn)?)
}

/// Stores a new code and retires every older unused one for the same purpose and user.
pub fn replace(conn: &mut DbConn, code: &NewCode<'_>) -> DbResult<()> {
    conn.transaction(|conn| {
        diesel::update(
            codes::table
                .filter(codes::purpose.eq(code.purpose))
                .filter(codes::username.eq(code.username))
                .filter(codes::used.eq(false)),
        )
        .set(codes::used.eq(true))
        .execute(conn)?;
        diesel::insert_into(codes::table)
            .values(code)
            .execute(conn)?;
        Ok(())
    })
}

/// The live (newest, unused) code for a purpose and user, if any; expiry is the caller's check.
pub fn live(conn: &mut DbConn, purpose: &str, username: &str) -> DbResult<Option<CodeRow>> {
    Ok(codes::table
        .filter(codes::purpose.eq(purpose))
        .filter(codes::username.eq(username))
        .filter(codes::used.eq(false))
        .order(codes::id.desc())
        .select(CodeRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn record_failure(conn: &mut DbConn, id: i64) -> DbResult<()> {
    diesel::update(codes::table.find(id))
        .set(codes::failed_attempts.eq(codes::failed_attempts + 1))
        .execute(conn)?;
    Ok(())
}

/// Marks a code used. Returns false if it was already used (a concurrent redemption).
pub fn consume(conn: &mut DbConn, id: i64) -> DbResult<bool> {
    let n = diesel::update(codes::table.find(id).filter(codes::used.eq(false)))
        .set(codes::used.eq(true))
        .execute(conn)?;
    Ok(n == 1)
}

/// Deletes the unused codes of a purpose and user.
pub fn delete_unused(conn: &mut DbConn, purpose: &str, username: &str) -> DbResult<()> {
    diesel::delete(
        codes::table
            .filter(codes::purpose.eq(purpose))
            .filter(codes::username.eq(username))
            .filter(codes::used.eq(false)),
    )
    .execute(conn)?;
    Ok(())
}

/// Removes codes that expired before `cutoff`.
pub fn delete_expired(conn: &mut DbConn, cutoff: i64) -> DbResult<usize> {
    Ok(diesel::delete(codes::table.filter(codes::expires_at.lt(cutoff))).execute(conn)?)
}
