//! The `invitations` table: single-use codes, bound to an address, that let someone open
//! an account on a server with `registration = "invite"` (or reserve a name chosen by the
//! operator). Stored as salted hashes. At most one invitation per address is live: a new
//! one revokes the older.

use diesel::prelude::*;

use super::schema::invitations;
use super::{DbConn, DbResult};

/// One stored invitation.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = invitations)]
pub struct Invitation {
    pub id: i64,
    pub email: String,
    /// The name the operator chose (`vault-admin user create`); `None`: the invitee chooses.
    pub username: Option<String>,
    pub code_salt: Vec<u8>,
    pub code_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: i64,
    pub failed_attempts: i64,
    pub used_by: Option<String>,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl Invitation {
    /// Neither used nor revoked nor expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && self.expires_at > now
    }
}

/// An invitation about to be stored.
#[derive(Debug, Insertable)]
#[diesel(table_name = invitations)]
pub struct NewInvitation<'a> {
    pub email: &'a str,
    pub username: Option<&'a str>,
    pub code_salt: &'a [u8],
    pub code_hash: &'a [u8],
    pub created_at: i64,
    pub expires_at: i64,
}

/// Revokes the address's open invitations, stores the new one and returns its id.
pub fn insert(conn: &mut DbConn, new: &NewInvitation<'_>) -> DbResult<i64> {
    revoke_open_for(conn, new.email, new.created_at)?;
    Ok(diesel::insert_into(invitations::table)
        .values(new)
        .returning(invitations::id)
        .get_result(conn)?)
}

/// The newest invitation for `email` that is neither used nor revoked (it may have expired:
/// the caller says so), if any.
pub fn open_for(conn: &mut DbConn, email: &str) -> DbResult<Option<Invitation>> {
    Ok(invitations::table
        .filter(invitations::email.eq(email))
        .filter(invitations::used_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .order(invitations::id.desc())
        .select(Invitation::as_select())
        .first(conn)
        .optional()?)
}

/// The live invitation that reserves `username`, if any.
pub fn reserving(conn: &mut DbConn, username: &str, now: i64) -> DbResult<Option<Invitation>> {
    Ok(invitations::table
        .filter(invitations::username.eq(username))
        .filter(invitations::used_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(now))
        .select(Invitation::as_select())
        .first(conn)
        .optional()?)
}

pub fn by_id(conn: &mut DbConn, id: i64) -> DbResult<Option<Invitation>> {
    Ok(invitations::table
        .find(id)
        .select(Invitation::as_select())
        .first(conn)
        .optional()?)
}

/// Every invitation, newest first.
pub fn list(conn: &mut DbConn) -> DbResult<Vec<Invitation>> {
    Ok(invitations::table
        .order(invitations::id.desc())
        .select(Invitation::as_select())
        .load(conn)?)
}

pub fn record_failure(conn: &mut DbConn, id: i64) -> DbResult<()> {
    diesel::update(invitations::table.find(id))
        .set(invitations::failed_attempts.eq(invitations::failed_attempts + 1))
        .execute(conn)?;
    Ok(())
}

/// Marks the invitation used by `username`. False if it was used or revoked meanwhile.
pub fn redeem(conn: &mut DbConn, id: i64, username: &str, now: i64) -> DbResult<bool> {
    let n = diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::used_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set((
        invitations::used_by.eq(username),
        invitations::used_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Revokes one invitation. False if it was already used or revoked.
pub fn revoke(conn: &mut DbConn, id: i64, now: i64) -> DbResult<bool> {
    let n = diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::used_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set(invitations::revoked_at.eq(now))
    .execute(conn)?;
    Ok(n == 1)
}

/// Revokes every open invitation of an address; returns how many.
pub fn revoke_open_for(conn: &mut DbConn, email: &str, now: i64) -> DbResult<usize> {
    Ok(diesel::update(
        invitations::table
            .filter(invitations::email.eq(email))
            .filter(invitations::used_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set(invitations::revoked_at.eq(now))
    .execute(conn)?)
}

/// Removes the invitations that ended (expired, used or revoked) before `cutoff`, so that
/// the list keeps a month of history.
pub fn delete_ended(conn: &mut DbConn, cutoff: i64) -> DbResult<usize> {
    Ok(diesel::delete(
        invitations::table.filter(
            invitations::expires_at
                .lt(cutoff)
                .or(invitations::used_at.lt(cutoff))
                .or(invitations::revoked_at.lt(cutoff)),
        ),
    )
    .execute(conn)?)
}
