//! The account changes the operator makes (`vault-admin user lock`, `unlock`, `delete`,
//! `kick`, `set-quota`), each one transaction with its audit event (by
//! [`Actor::Operator`](crate::db::audit::Actor::Operator)), shared by `vault-admin` and
//! the server's tests as `groups::change` is for groups. Sessions end in the database; a
//! running server closes their connections within `sessions.check_interval_ms`, with the
//! reason given here. The caller has found the account; what the operator is told is the
//! caller's.

use crate::db::audit::{self, Event};
use crate::db::groups::Group;
use crate::db::users::User;
use crate::db::{self, DbConn, DbError, DbResult};
use crate::error::Failure;
use crate::maintenance::purge::{Purged, purge_user_files};
use crate::throttle::account_subject;
use vault_proto::units::plural;

use super::codes::PURPOSE_RESET;
use super::sessions::SESSION_ENDED_BY_ADMIN;

/// The reason a locked account's sessions end with.
pub const ENDED_BY_LOCK: &str = "account locked by the operator";
/// The reason a deleted account's sessions end with.
pub const ENDED_BY_DELETE: &str = "account deleted";

/// Writes one of the operator's changes to the audit log.
pub fn record(
    conn: &mut DbConn,
    event: &str,
    username: Option<&str>,
    detail: &str,
) -> DbResult<()> {
    let entry = Event::by_operator(event).with_detail(detail);
    let entry = match username {
        Some(name) => entry.about(name),
        None => entry,
    };
    audit::record(conn, &entry)
}

/// Locks `user`: its logins are refused and its live sessions end. Returns how many
/// ended. Audited unless the account was locked already with no session to end.
pub fn lock(conn: &mut DbConn, user: &User) -> Result<usize, DbError> {
    db::transaction(conn, |c| {
        db::users::set_locked(c, user.id, true)?;
        let ended = db::sessions::end_all_for_user(c, user.id, None, ENDED_BY_LOCK)?;
        if !user.locked || ended > 0 {
            let detail = format!(
                "locked; {} ended",
                plural(ended, "live session", "live sessions")
            );
            record(c, "user_locked", Some(&user.username), &detail)?;
        }
        Ok(ended)
    })
}

/// Unlocks `user` (a locked account: the caller checks).
pub fn unlock(conn: &mut DbConn, user: &User) -> Result<(), DbError> {
    db::transaction(conn, |c| {
        db::users::set_locked(c, user.id, false)?;
        record(c, "user_unlocked", Some(&user.username), "unlocked")
    })
}

/// Sets `user`'s quota to `bytes`; the server reads it on every check.
pub fn set_quota(conn: &mut DbConn, user: &User, bytes: i64) -> Result<(), DbError> {
    db::transaction(conn, |c| {
        db::users::set_quota(c, user.id, bytes)?;
        let detail = format!("quota {} -> {bytes} bytes", user.quota_bytes);
        record(c, "quota_set", Some(&user.username), &detail)
    })
}

/// Ends one live session of `user` (`Some(id)`, which the caller checked is one) or all
/// of them. Returns how many ended; audited when any did.
pub fn kick(conn: &mut DbConn, user: &User, session: Option<i64>) -> Result<usize, DbError> {
    db::transaction(conn, |c| {
        let ended = match session {
            Some(id) => usize::from(db::sessions::end(c, id, SESSION_ENDED_BY_ADMIN)?),
            None => db::sessions::end_all_for_user(c, user.id, None, SESSION_ENDED_BY_ADMIN)?,
        };
        if ended > 0 {
            let detail = match session {
                Some(id) => format!("session {id} ended"),
                None => format!("{} ended", plural(ended, "live session", "live sessions")),
            };
            record(c, "sessions_kicked", Some(&user.username), &detail)?;
        }
        Ok(ended)
    })
}

/// What deleting an account took with it.
#[derive(Debug)]
pub struct Deleted {
    /// Live sessions ended.
    pub ended: usize,
    /// Its files; the partial blobs of its uploads are for the caller to remove after
    /// the commit ([`Purged::remove_partials`]), the rest goes to gc.
    pub files: Purged,
    /// The groups it was taken out of: each needs a new key generation, which the next
    /// keyed member's client makes.
    pub groups: Vec<Group>,
}

/// Deletes `user` for good, in one transaction: its sessions end, it leaves every group
/// (refused while it owns one: [`crate::groups::change::owned_by`]), its contacts,
/// profile and message deliveries go (messages no one else can read go with them), its
/// files go (blobs queued for gc), then the account, its login throttle and any unused
/// password-reset code (which a new account of the same name could otherwise use).
pub fn delete(conn: &mut DbConn, user: &User, now: i64) -> Result<Deleted, Failure> {
    db::transaction(conn, |c| {
        let ended = db::sessions::end_all_for_user(c, user.id, None, ENDED_BY_DELETE)?;
        let groups = crate::groups::change::drop_user(c, user)?;
        for g in &groups {
            let detail = format!(
                "{} removed from group {} with the account; a new key generation is due",
                user.username, g.name
            );
            record(c, "group.remove", Some(&user.username), &detail)?;
        }
        db::chat::delete_user(c, user.id)?;
        db::presence::delete_user(c, user.id)?;
        let files = purge_user_files(c, user.id, now)?;
        db::users::delete(c, user.id)?;
        db::throttle::clear(c, &account_subject(&user.username))?;
        db::codes::delete_unused(c, PURPOSE_RESET, &user.username)?;
        let detail = format!(
            "account deleted; {} ended; {}, {} ({} bytes) and {} deleted",
            plural(ended, "live session", "live sessions"),
            plural(files.entries, "entry", "entries"),
            plural(files.versions, "version", "versions"),
            files.bytes,
            plural(files.uploads, "upload", "uploads")
        );
        record(c, "user_deleted", Some(&user.username), &detail)?;
        Ok(Deleted {
            ended,
            files,
            groups,
        })
    })
}
