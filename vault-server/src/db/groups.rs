//! The group tables (migration `2026-12-02-000003_groups`): `groups` (name, key generation
//! in force, whether a rotation is pending), `group_members` (role per member),
//! `group_envelopes` (one client-made envelope per group, generation and member, stored
//! with who signed it) and `group_invites` (join codes: a hash of the auth part, the keys
//! sealed under the key part, uses left, expiry). Also the group's namespace row.
//!
//! A transaction that changes a group starts with [`lock`] (or [`lock_by_name`],
//! [`lock_by_invite`]): a no-op update of the group's row that takes SQLite's write lock
//! and PostgreSQL's row lock before anything is read, so changes of one group run one
//! after the other. A transaction that changes a group's files as well locks the group
//! first, then the namespace; file transactions lock only the namespace.

use diesel::prelude::*;
use vault_proto::proto::GroupRole;

use super::files::namespaces::Namespace;
use super::schema::{group_envelopes, group_invites, group_members, groups, namespaces, users};
use super::{DbConn, DbError, DbResult};

/// `namespaces.kind` of a group's space.
pub const KIND_GROUP: &str = "group";

/// One group row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = groups)]
pub struct Group {
    pub id: i64,
    pub name: String,
    /// `None` until the first key (generation 0) is stored.
    pub key_generation: Option<i64>,
    /// A member was removed and the next generation is not made yet.
    pub needs_rotation: bool,
    pub created_at: i64,
}

/// One membership row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = group_members)]
pub struct Member {
    pub group_id: i64,
    pub user_id: i64,
    /// `owner`, `manager` or `member` (`GroupRole::as_str`).
    pub role: String,
    pub joined_at: i64,
}

/// A member with what the group requests show of their account.
#[derive(Clone, Debug)]
pub struct MemberUser {
    pub member: Member,
    pub username: String,
    pub public_key: Vec<u8>,
    pub locked: bool,
}

/// One stored envelope.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = group_envelopes)]
pub struct Envelope {
    pub group_id: i64,
    pub generation: i64,
    pub user_id: i64,
    pub envelope: Vec<u8>,
    pub signature: Vec<u8>,
    pub signer: String,
    pub signer_key: Vec<u8>,
    pub created_at: i64,
}

/// The values of a new envelope.
#[derive(Debug, Insertable)]
#[diesel(table_name = group_envelopes)]
pub struct NewEnvelopeRow<'a> {
    pub group_id: i64,
    pub generation: i64,
    pub user_id: i64,
    pub envelope: &'a [u8],
    pub signature: &'a [u8],
    pub signer: &'a str,
    pub signer_key: &'a [u8],
    pub created_at: i64,
}

/// One join code's row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = group_invites)]
pub struct Invite {
    pub id: i64,
    pub group_id: i64,
    pub created_by: i64,
    pub auth_hash: Vec<u8>,
    pub sealed_keys: Vec<u8>,
    pub uses_left: i64,
    pub expires_at: i64,
    pub created_at: i64,
}

/// The values of a new join code.
#[derive(Debug, Insertable)]
#[diesel(table_name = group_invites)]
pub struct NewInvite<'a> {
    pub group_id: i64,
    pub created_by: i64,
    pub auth_hash: &'a [u8],
    pub sealed_keys: &'a [u8],
    pub uses_left: i64,
    pub expires_at: i64,
    pub created_at: i64,
}

fn not_found() -> DbError {
    DbError::Query(diesel::result::Error::NotFound)
}

pub fn by_id(conn: &mut DbConn, id: i64) -> DbResult<Option<Group>> {
    Ok(groups::table
        .find(id)
        .select(Group::as_select())
        .get_result(conn)
        .optional()?)
}

/// The group named `name` (already case-folded).
pub fn by_name(conn: &mut DbConn, name: &str) -> DbResult<Option<Group>> {
    Ok(groups::table
        .filter(groups::name.eq(name))
        .select(Group::as_select())
        .get_result(conn)
        .optional()?)
}

/// Takes group `id`'s lock for the rest of the transaction (see the module documentation)
/// and reads it; `None` if there is no such group.
pub fn lock(conn: &mut DbConn, id: i64) -> DbResult<Option<Group>> {
    diesel::update(groups::table.find(id))
        .set(groups::needs_rotation.eq(groups::needs_rotation))
        .execute(conn)?;
    by_id(conn, id)
}

/// [`lock`] by name.
pub fn lock_by_name(conn: &mut DbConn, name: &str) -> DbResult<Option<Group>> {
    diesel::update(groups::table.filter(groups::name.eq(name)))
        .set(groups::needs_rotation.eq(groups::needs_rotation))
        .execute(conn)?;
    by_name(conn, name)
}

/// [`lock`] of the group a join code is for, with the code's row; `None` if the code or
/// its group does not exist.
pub fn lock_by_invite(conn: &mut DbConn, invite_id: i64) -> DbResult<Option<(Group, Invite)>> {
    let of_invite = group_invites::table
        .filter(group_invites::id.eq(invite_id))
        .select(group_invites::group_id);
    diesel::update(groups::table.filter(groups::id.eq_any(of_invite)))
        .set(groups::needs_rotation.eq(groups::needs_rotation))
        .execute(conn)?;
    let Some(invite) = invite(conn, invite_id)? else {
        return Ok(None);
    };
    Ok(by_id(conn, invite.group_id)?.map(|g| (g, invite)))
}

/// Inserts a group without a key and returns it.
pub fn insert(conn: &mut DbConn, name: &str, now: i64) -> DbResult<Group> {
    diesel::insert_into(groups::table)
        .values((groups::name.eq(name), groups::created_at.eq(now)))
        .execute(conn)?;
    by_name(conn, name)?.ok_or_else(not_found)
}

/// All groups, by name.
pub fn list(conn: &mut DbConn) -> DbResult<Vec<Group>> {
    Ok(groups::table
        .order(groups::name.asc())
        .select(Group::as_select())
        .load(conn)?)
}

pub fn count(conn: &mut DbConn) -> DbResult<i64> {
    Ok(groups::table.count().get_result(conn)?)
}

pub fn rename(conn: &mut DbConn, id: i64, name: &str) -> DbResult<()> {
    diesel::update(groups::table.find(id))
        .set(groups::name.eq(name))
        .execute(conn)?;
    Ok(())
}

/// Makes `generation` the generation in force; no rotation is pending after it.
pub fn set_generation(conn: &mut DbConn, id: i64, generation: i64) -> DbResult<()> {
    diesel::update(groups::table.find(id))
        .set((
            groups::key_generation.eq(Some(generation)),
            groups::needs_rotation.eq(false),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_needs_rotation(conn: &mut DbConn, id: i64, needs: bool) -> DbResult<()> {
    diesel::update(groups::table.find(id))
        .set(groups::needs_rotation.eq(needs))
        .execute(conn)?;
    Ok(())
}

/// Deletes a group's rows: join codes, envelopes, members and the group itself (its
/// namespace is purged by [`crate::maintenance::purge::purge_namespace`]).
pub fn delete(conn: &mut DbConn, id: i64) -> DbResult<()> {
    diesel::delete(group_invites::table.filter(group_invites::group_id.eq(id))).execute(conn)?;
    diesel::delete(group_envelopes::table.filter(group_envelopes::group_id.eq(id)))
        .execute(conn)?;
    diesel::delete(group_members::table.filter(group_members::group_id.eq(id))).execute(conn)?;
    diesel::delete(groups::table.find(id)).execute(conn)?;
    Ok(())
}

/// The namespace of group `id`.
pub fn namespace(conn: &mut DbConn, id: i64) -> DbResult<Option<Namespace>> {
    Ok(namespaces::table
        .filter(namespaces::group_id.eq(id))
        .select(Namespace::as_select())
        .get_result(conn)
        .optional()?)
}

/// Creates the namespace of group `id` with a quota.
pub fn insert_namespace(conn: &mut DbConn, id: i64, quota_bytes: i64, now: i64) -> DbResult<()> {
    diesel::insert_into(namespaces::table)
        .values((
            namespaces::kind.eq(KIND_GROUP),
            namespaces::group_id.eq(id),
            namespaces::quota_bytes.eq(Some(quota_bytes)),
            namespaces::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Sets the quota of group `id`'s namespace.
pub fn set_quota(conn: &mut DbConn, id: i64, quota_bytes: i64) -> DbResult<()> {
    diesel::update(namespaces::table.filter(namespaces::group_id.eq(id)))
        .set(namespaces::quota_bytes.eq(Some(quota_bytes)))
        .execute(conn)?;
    Ok(())
}

/// The membership of `user_id` in group `group_id`.
pub fn member(conn: &mut DbConn, group_id: i64, user_id: i64) -> DbResult<Option<Member>> {
    Ok(group_members::table
        .find((group_id, user_id))
        .select(Member::as_select())
        .get_result(conn)
        .optional()?)
}

/// The owner's membership of a group.
pub fn owner(conn: &mut DbConn, group_id: i64) -> DbResult<Option<Member>> {
    Ok(group_members::table
        .filter(group_members::group_id.eq(group_id))
        .filter(group_members::role.eq(GroupRole::Owner.as_str()))
        .select(Member::as_select())
        .get_result(conn)
        .optional()?)
}

/// Every member of a group with their account's name, public key and lock, by name.
pub fn members(conn: &mut DbConn, group_id: i64) -> DbResult<Vec<MemberUser>> {
    let rows: Vec<(Member, String, Vec<u8>, bool)> = group_members::table
        .inner_join(users::table.on(users::id.eq(group_members::user_id)))
        .filter(group_members::group_id.eq(group_id))
        .order(users::username.asc())
        .select((
            Member::as_select(),
            users::username,
            users::public_key,
            users::locked,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(member, username, public_key, locked)| MemberUser {
            member,
            username,
            public_key,
            locked,
        })
        .collect())
}

/// How many members each of these groups has.
pub fn member_counts(conn: &mut DbConn, group_ids: &[i64]) -> DbResult<Vec<(i64, i64)>> {
    let mut out = Vec::new();
    for batch in group_ids.chunks(500) {
        out.extend(
            group_members::table
                .filter(group_members::group_id.eq_any(batch))
                .group_by(group_members::group_id)
                .select((group_members::group_id, diesel::dsl::count_star()))
                .load::<(i64, i64)>(conn)?,
        );
    }
    Ok(out)
}

/// The groups `user_id` is a member of, with the membership, by group name.
pub fn memberships(conn: &mut DbConn, user_id: i64) -> DbResult<Vec<(Group, Member)>> {
    Ok(group_members::table
        .inner_join(groups::table.on(groups::id.eq(group_members::group_id)))
        .filter(group_members::user_id.eq(user_id))
        .order(groups::name.asc())
        .select((Group::as_select(), Member::as_select()))
        .load(conn)?)
}

pub fn insert_member(
    conn: &mut DbConn,
    group_id: i64,
    user_id: i64,
    role: &str,
    now: i64,
) -> DbResult<()> {
    diesel::insert_into(group_members::table)
        .values((
            group_members::group_id.eq(group_id),
            group_members::user_id.eq(user_id),
            group_members::role.eq(role),
            group_members::joined_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_role(conn: &mut DbConn, group_id: i64, user_id: i64, role: &str) -> DbResult<()> {
    diesel::update(group_members::table.find((group_id, user_id)))
        .set(group_members::role.eq(role))
        .execute(conn)?;
    Ok(())
}

/// Deletes a membership with everything that came with it: the member's envelopes of
/// every generation, and every join code of the group (the member may know any of them:
/// one they made, or the one they joined with, which would let them back in). Returns
/// whether there was one.
pub fn delete_member(conn: &mut DbConn, group_id: i64, user_id: i64) -> DbResult<bool> {
    diesel::delete(
        group_envelopes::table
            .filter(group_envelopes::group_id.eq(group_id))
            .filter(group_envelopes::user_id.eq(user_id)),
    )
    .execute(conn)?;
    diesel::delete(group_invites::table.filter(group_invites::group_id.eq(group_id)))
        .execute(conn)?;
    let n = diesel::delete(group_members::table.find((group_id, user_id))).execute(conn)?;
    Ok(n > 0)
}

pub fn insert_envelope(conn: &mut DbConn, new: &NewEnvelopeRow<'_>) -> DbResult<()> {
    diesel::insert_into(group_envelopes::table)
        .values(new)
        .execute(conn)?;
    Ok(())
}

/// A member's envelopes of every generation, oldest first.
pub fn envelopes_of(conn: &mut DbConn, group_id: i64, user_id: i64) -> DbResult<Vec<Envelope>> {
    Ok(group_envelopes::table
        .filter(group_envelopes::group_id.eq(group_id))
        .filter(group_envelopes::user_id.eq(user_id))
        .order(group_envelopes::generation.asc())
        .select(Envelope::as_select())
        .load(conn)?)
}

/// The generations one member holds an envelope of.
pub fn generations_of(conn: &mut DbConn, group_id: i64, user_id: i64) -> DbResult<Vec<i64>> {
    Ok(group_envelopes::table
        .filter(group_envelopes::group_id.eq(group_id))
        .filter(group_envelopes::user_id.eq(user_id))
        .select(group_envelopes::generation)
        .load(conn)?)
}

/// Which member holds which generation, as (group id, user id, generation), for these
/// groups.
pub fn held(conn: &mut DbConn, group_ids: &[i64]) -> DbResult<Vec<(i64, i64, i64)>> {
    let mut out = Vec::new();
    for batch in group_ids.chunks(500) {
        out.extend(
            group_envelopes::table
                .filter(group_envelopes::group_id.eq_any(batch))
                .select((
                    group_envelopes::group_id,
                    group_envelopes::user_id,
                    group_envelopes::generation,
                ))
                .load::<(i64, i64, i64)>(conn)?,
        );
    }
    Ok(out)
}

/// Inserts a join code and returns its id.
pub fn insert_invite(conn: &mut DbConn, new: &NewInvite<'_>) -> DbResult<i64> {
    diesel::insert_into(group_invites::table)
        .values(new)
        .execute(conn)?;
    Ok(group_invites::table
        .filter(group_invites::group_id.eq(new.group_id))
        .filter(group_invites::auth_hash.eq(new.auth_hash))
        .order(group_invites::id.desc())
        .select(group_invites::id)
        .first(conn)?)
}

pub fn invite(conn: &mut DbConn, id: i64) -> DbResult<Option<Invite>> {
    Ok(group_invites::table
        .find(id)
        .select(Invite::as_select())
        .get_result(conn)
        .optional()?)
}

/// Uses a join code once; the last use deletes it.
pub fn use_invite(conn: &mut DbConn, invite: &Invite) -> DbResult<()> {
    if invite.uses_left <= 1 {
        diesel::delete(group_invites::table.find(invite.id)).execute(conn)?;
    } else {
        diesel::update(group_invites::table.find(invite.id))
            .set(group_invites::uses_left.eq(group_invites::uses_left - 1))
            .execute(conn)?;
    }
    Ok(())
}

/// Deletes join codes that expired before `now`; returns how many.
pub fn delete_expired_invites(conn: &mut DbConn, now: i64) -> DbResult<usize> {
    Ok(
        diesel::delete(group_invites::table.filter(group_invites::expires_at.lt(now)))
            .execute(conn)?,
    )
}
