//! The `login_failures` table: failure counters per subject (`user:NAME` or `ip:ADDR`);
//! the `login_attempts` table: logins admitted and not yet settled; and the per-subject lock
//! that makes admission one atomic step on every backend. The policy that reads and
//! writes them lives in `crate::throttle`, the steps of a login in `accounts::attempts`.

use diesel::prelude::*;
use serde::Serialize;

use super::schema::{login_attempts, login_failures};
use super::{DbConn, DbResult};

/// An attempt older than this (seconds) was left by a server that stopped while checking
/// it, and no longer counts.
pub const ATTEMPT_STALE_S: i64 = 120;

/// Failure state of one subject.
#[derive(
    Clone, Debug, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Serialize,
)]
#[diesel(table_name = login_failures)]
pub struct FailureRow {
    pub subject: String,
    pub failures: i64,
    pub window_start: i64,
    pub last_failure_at: i64,
    pub locked_until: i64,
}

pub fn get(conn: &mut DbConn, subject: &str) -> DbResult<Option<FailureRow>> {
    Ok(login_failures::table
        .find(subject)
        .select(FailureRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn put(conn: &mut DbConn, row: &FailureRow) -> DbResult<()> {
    conn.transaction(|conn| {
        let updated = diesel::update(login_failures::table.find(&row.subject))
            .set(row)
            .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(login_failures::table)
                .values(row)
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Clears one subject. Returns whether it had state.
pub fn clear(conn: &mut DbConn, subject: &str) -> DbResult<bool> {
    Ok(diesel::delete(login_failures::table.find(subject)).execute(conn)? > 0)
}

/// Clears every subject whose name starts with `prefix` (`ip:` for all addresses).
pub fn clear_prefix(conn: &mut DbConn, prefix: &str) -> DbResult<usize> {
    Ok(diesel::delete(
        login_failures::table.filter(login_failures::subject.like(format!("{prefix}%"))),
    )
    .execute(conn)?)
}

pub fn list(conn: &mut DbConn) -> DbResult<Vec<FailureRow>> {
    Ok(login_failures::table
        .order(login_failures::subject.asc())
        .select(FailureRow::as_select())
        .load(conn)?)
}

/// Subjects locked at `now`.
pub fn count_locked(conn: &mut DbConn, now: i64) -> DbResult<i64> {
    Ok(login_failures::table
        .filter(login_failures::locked_until.gt(now))
        .count()
        .get_result(conn)?)
}

/// Serializes, until the transaction ends, every other transaction that takes the lock of
/// one of `subjects`, on every server instance: PostgreSQL takes a transaction-scoped
/// advisory lock per subject (in one order, so two lockers cannot deadlock); on SQLite the
/// first write of the transaction (the sweep of stale attempts that follows) takes the
/// database's write lock. Call it first in the transaction.
pub fn lock_subjects(conn: &mut DbConn, subjects: &[&str], now: i64) -> DbResult<()> {
    super::lock_names(conn, subjects)?;
    diesel::delete(
        login_attempts::table.filter(login_attempts::started_at.lt(now - ATTEMPT_STALE_S)),
    )
    .execute(conn)?;
    Ok(())
}

/// Attempts of `subject` admitted and not yet settled.
pub fn attempts_in_flight(conn: &mut DbConn, subject: &str) -> DbResult<i64> {
    Ok(login_attempts::table
        .filter(login_attempts::subject.eq(subject))
        .count()
        .get_result(conn)?)
}

/// Records an admitted attempt of `subject`; returns its id. Call it with the subject
/// locked ([`lock_subjects`]): the newest id of the subject is then this one.
pub fn start_attempt(conn: &mut DbConn, subject: &str, now: i64) -> DbResult<i64> {
    diesel::insert_into(login_attempts::table)
        .values((
            login_attempts::subject.eq(subject),
            login_attempts::started_at.eq(now),
        ))
        .execute(conn)?;
    let id: Option<i64> = login_attempts::table
        .filter(login_attempts::subject.eq(subject))
        .select(diesel::dsl::max(login_attempts::id))
        .get_result(conn)?;
    id.ok_or(super::DbError::Query(diesel::result::Error::NotFound))
}

/// Removes settled attempts.
pub fn end_attempts(conn: &mut DbConn, ids: &[i64]) -> DbResult<()> {
    diesel::delete(login_attempts::table.filter(login_attempts::id.eq_any(ids))).execute(conn)?;
    Ok(())
}
