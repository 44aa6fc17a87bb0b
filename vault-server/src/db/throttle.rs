//! The `login_failures` table: failure counters per subject (`user:NAME` or `ip:ADDR`).
//! The policy that reads and writes them lives in `crate::throttle`.

use diesel::prelude::*;
use serde::Serialize;

use super::schema::login_failures;
use super::{DbConn, DbResult};

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
