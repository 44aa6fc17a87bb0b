//! The `users` table: account records with the client-made key material the server
//! stores but cannot open.

use diesel::prelude::*;

use super::schema::{sessions, users};
use super::{DbConn, DbResult};

/// One account row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub auth_hash: String,
    pub kdf_salt: Vec<u8>,
    pub kdf_memory_kib: i64,
    pub kdf_iterations: i64,
    pub kdf_parallelism: i64,
    pub account_key_by_kek: Vec<u8>,
    pub account_key_by_recovery: Vec<u8>,
    pub public_key: Vec<u8>,
    pub private_key_sealed: Vec<u8>,
    pub quota_bytes: i64,
    pub locked: bool,
    pub created_at: i64,
}

/// The values of a new account.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub auth_hash: &'a str,
    pub kdf_salt: &'a [u8],
    pub kdf_memory_kib: i64,
    pub kdf_iterations: i64,
    pub kdf_parallelism: i64,
    pub account_key_by_kek: &'a [u8],
    pub account_key_by_recovery: &'a [u8],
    pub public_key: &'a [u8],
    pub private_key_sealed: &'a [u8],
    pub quota_bytes: i64,
    pub locked: bool,
    pub created_at: i64,
}

/// Password-derived columns, replaced together by `passwd` and reset.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = users)]
pub struct PasswordColumns<'a> {
    pub auth_hash: &'a str,
    pub kdf_salt: &'a [u8],
    pub kdf_memory_kib: i64,
    pub kdf_iterations: i64,
    pub kdf_parallelism: i64,
    pub account_key_by_kek: &'a [u8],
}

/// Key columns replaced when a reset discards the old keys.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = users)]
pub struct KeyColumns<'a> {
    pub account_key_by_recovery: &'a [u8],
    pub public_key: &'a [u8],
    pub private_key_sealed: &'a [u8],
}

pub fn by_name(conn: &mut DbConn, username: &str) -> DbResult<Option<User>> {
    Ok(users::table
        .filter(users::username.eq(username))
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

/// The username of the account whose address is `email` (stored normalized, as
/// `names::normalize_email` makes it). Only the name is read, so that a hit costs about
/// what a miss does.
pub fn name_by_email(conn: &mut DbConn, email: &str) -> DbResult<Option<String>> {
    Ok(users::table
        .filter(users::email.eq(email))
        .select(users::username)
        .first(conn)
        .optional()?)
}

pub fn by_id(conn: &mut DbConn, id: i64) -> DbResult<Option<User>> {
    Ok(users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

/// Whether the username or the email address is already taken.
pub fn name_or_email_taken(conn: &mut DbConn, username: &str, email: &str) -> DbResult<bool> {
    let count: i64 = users::table
        .filter(users::username.eq(username).or(users::email.eq(email)))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

pub fn insert(conn: &mut DbConn, user: &NewUser<'_>) -> DbResult<User> {
    diesel::insert_into(users::table)
        .values(user)
        .execute(conn)?;
    Ok(users::table
        .filter(users::username.eq(user.username))
        .select(User::as_select())
        .first(conn)?)
}

pub fn set_password(conn: &mut DbConn, user_id: i64, cols: &PasswordColumns<'_>) -> DbResult<()> {
    diesel::update(users::table.find(user_id))
        .set(cols)
        .execute(conn)?;
    Ok(())
}

pub fn set_keys(conn: &mut DbConn, user_id: i64, cols: &KeyColumns<'_>) -> DbResult<()> {
    diesel::update(users::table.find(user_id))
        .set(cols)
        .execute(conn)?;
    Ok(())
}

pub fn set_locked(conn: &mut DbConn, user_id: i64, locked: bool) -> DbResult<()> {
    diesel::update(users::table.find(user_id))
        .set(users::locked.eq(locked))
        .execute(conn)?;
    Ok(())
}

pub fn set_quota(conn: &mut DbConn, user_id: i64, quota_bytes: i64) -> DbResult<()> {
    diesel::update(users::table.find(user_id))
        .set(users::quota_bytes.eq(quota_bytes))
        .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut DbConn, user_id: i64) -> DbResult<()> {
    diesel::delete(users::table.find(user_id)).execute(conn)?;
    Ok(())
}

/// All accounts, by name.
pub fn list(conn: &mut DbConn) -> DbResult<Vec<User>> {
    Ok(users::table
        .order(users::username.asc())
        .select(User::as_select())
        .load(conn)?)
}

/// Each user's count of live sessions, for listings.
pub fn live_session_counts(conn: &mut DbConn) -> DbResult<Vec<(i64, i64)>> {
    Ok(sessions::table
        .filter(sessions::ended_at.is_null())
        .group_by(sessions::user_id)
        .select((sessions::user_id, diesel::dsl::count_star()))
        .load(conn)?)
}

pub fn count(conn: &mut DbConn) -> DbResult<i64> {
    Ok(users::table.count().get_result(conn)?)
}

/// How many accounts the operator has locked.
pub fn count_locked(conn: &mut DbConn) -> DbResult<i64> {
    Ok(users::table
        .filter(users::locked.eq(true))
        .count()
        .get_result(conn)?)
}
