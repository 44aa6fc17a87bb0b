//! The append-only audit log: every admin change and every security event. Entries name
//! people and events, never secrets.

use diesel::prelude::*;
use serde::Serialize;

use super::schema::audit_log;
use super::{DbConn, DbResult, now};

/// One audit entry as read back.
#[derive(Clone, Debug, Queryable, Selectable, Serialize)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub event: String,
    pub username: Option<String>,
    pub client_ip: Option<String>,
    pub detail: String,
}

/// What happened, for `record`.
#[derive(Debug, Default)]
pub struct Event<'a> {
    /// `admin`, `user:NAME`, or `server`.
    pub actor: &'a str,
    /// A stable event name such as `login_failed`.
    pub event: &'a str,
    pub username: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub detail: &'a str,
}

pub fn record(conn: &mut DbConn, e: &Event<'_>) -> DbResult<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(now()),
            audit_log::actor.eq(e.actor),
            audit_log::event.eq(e.event),
            audit_log::username.eq(e.username),
            audit_log::client_ip.eq(e.client_ip),
            audit_log::detail.eq(e.detail),
        ))
        .execute(conn)?;
    Ok(())
}

/// Entries at or after `since` (Unix seconds), optionally about one user, oldest first.
pub fn query(
    conn: &mut DbConn,
    since: Option<i64>,
    username: Option<&str>,
    limit: i64,
) -> DbResult<Vec<AuditEntry>> {
    let mut q = audit_log::table
        .select(AuditEntry::as_select())
        .into_boxed();
    if let Some(since) = since {
        q = q.filter(audit_log::at.ge(since));
    }
    if let Some(name) = username {
        q = q.filter(audit_log::username.eq(name.to_string()));
    }
    let mut rows: Vec<AuditEntry> = q.order(audit_log::id.desc()).limit(limit).load(conn)?;
    rows.reverse();
    Ok(rows)
}
