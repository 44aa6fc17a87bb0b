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

/// Who did what an entry records. [`Actor`]'s `Display` is the one place the `actor`
/// column's text is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor<'a> {
    /// The operator, with `vault-admin`: `admin`.
    Operator,
    /// The server on its own (maintenance, lockouts, sessions a newer login ended):
    /// `server`.
    Server,
    /// Someone not logged in (a failed login, a registration, a reset): `anonymous`.
    Anonymous,
    /// A logged-in user: `user:NAME`.
    User(&'a str),
}

impl std::fmt::Display for Actor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Actor::Operator => f.write_str("admin"),
            Actor::Server => f.write_str("server"),
            Actor::Anonymous => f.write_str("anonymous"),
            Actor::User(name) => write!(f, "user:{name}"),
        }
    }
}

/// What happened, for `record`: made by one of the constructors, which say who acted,
/// then given the account it is about, the address and the detail.
#[derive(Debug)]
pub struct Event<'a> {
    actor: Actor<'a>,
    /// A stable event name such as `login_failed`.
    event: &'a str,
    username: Option<&'a str>,
    client_ip: Option<&'a str>,
    detail: &'a str,
}

impl<'a> Event<'a> {
    fn new(actor: Actor<'a>, event: &'a str) -> Self {
        Event {
            actor,
            event,
            username: None,
            client_ip: None,
            detail: "",
        }
    }

    /// What user `name`, logged in from `client_ip`, did to their own account (see
    /// [`Event::about`] for another).
    pub fn by_user(name: &'a str, client_ip: &'a str, event: &'a str) -> Self {
        Event::new(Actor::User(name), event)
            .about(name)
            .from_ip(client_ip)
    }

    /// What someone not logged in did from `client_ip`.
    pub fn anonymous(client_ip: &'a str, event: &'a str) -> Self {
        Event::new(Actor::Anonymous, event).from_ip(client_ip)
    }

    /// What the operator did.
    pub fn by_operator(event: &'a str) -> Self {
        Event::new(Actor::Operator, event)
    }

    /// What the server did on its own.
    pub fn by_server(event: &'a str) -> Self {
        Event::new(Actor::Server, event)
    }

    /// The account the event is about.
    pub fn about(self, username: &'a str) -> Self {
        Event {
            username: Some(username),
            ..self
        }
    }

    /// The address the request came from.
    pub fn from_ip(self, client_ip: &'a str) -> Self {
        Event {
            client_ip: Some(client_ip),
            ..self
        }
    }

    /// What the entry says besides its event name.
    pub fn with_detail(self, detail: &'a str) -> Self {
        Event { detail, ..self }
    }
}

pub fn record(conn: &mut DbConn, e: &Event<'_>) -> DbResult<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(now()),
            audit_log::actor.eq(e.actor.to_string()),
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

#[cfg(test)]
mod tests {
    use super::Actor;

    /// The `actor` column's text, which `vault-admin audit` shows and filters read.
    #[test]
    fn actors_are_written_as_before() {
        assert_eq!(Actor::Operator.to_string(), "admin");
        assert_eq!(Actor::Server.to_string(), "server");
        assert_eq!(Actor::Anonymous.to_string(), "anonymous");
        assert_eq!(Actor::User("bob").to_string(), "user:bob");
    }
}
