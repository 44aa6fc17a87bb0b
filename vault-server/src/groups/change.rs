//! The group changes that both the server's requests and `vault-admin group` make. Each
//! runs inside the caller's transaction, after the caller has locked the group
//! ([`crate::db::groups::lock`]) and checked that the one asking may make the change;
//! what is refused whoever asks (a taken name, a member twice, a full group, a locked
//! account, removing the owner with the account) is refused here, before any write.
//! The messages name no command: the server and `vault-admin` add their own advice.

use vault_proto::proto::groups::MAX_GROUP_MEMBERS;
use vault_proto::proto::{ApiError, GroupRole};

use crate::db::files::namespaces;
use crate::db::groups::{self, Group};
use crate::db::users::User;
use crate::db::{DbConn, DbError};
use crate::error::Failure;
use crate::maintenance::purge::{self, Purged};

/// Whether a failed statement was a unique violation (a name taken at the same moment).
fn is_unique_violation(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Query(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _
        ))
    )
}

fn name_taken(name: &str) -> ApiError {
    ApiError::conflict(format!(
        "a group named {name} already exists; choose another name"
    ))
}

/// Creates group `name` (already case-folded) without a key, its namespace with
/// `quota_bytes`, and the user `owner_id` as its owner.
pub fn create(
    conn: &mut DbConn,
    name: &str,
    owner_id: i64,
    quota_bytes: i64,
    now: i64,
) -> Result<Group, Failure> {
    // Insert first (a name taken is a unique violation), so the transaction's first
    // statement is a write.
    let group = match groups::insert(conn, name, now) {
        Ok(g) => g,
        Err(e) if is_unique_violation(&e) => return Err(name_taken(name).into()),
        Err(e) => return Err(e.into()),
    };
    groups::insert_namespace(conn, group.id, quota_bytes, now)?;
    groups::insert_member(conn, group.id, owner_id, GroupRole::Owner.as_str(), now)?;
    Ok(group)
}

/// Renames a locked group to `new_name` (already case-folded).
pub fn rename(conn: &mut DbConn, group: &Group, new_name: &str) -> Result<(), Failure> {
    match groups::rename(conn, group.id, new_name) {
        Ok(()) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(name_taken(new_name).into()),
        Err(e) => Err(e.into()),
    }
}

/// Adds `user` to a locked group with `role` (not owner), without envelopes: they come
/// with the request, or later from a keyed member's client.
pub fn add_member(
    conn: &mut DbConn,
    group: &Group,
    user: &User,
    role: GroupRole,
    now: i64,
) -> Result<(), Failure> {
    if role == GroupRole::Owner {
        return Err(ApiError::bad_request(format!(
            "a group has one owner; add {} as a member or manager, then hand group {} over",
            user.username, group.name
        ))
        .into());
    }
    if user.locked {
        return Err(ApiError::forbidden(format!(
            "{} is locked by the operator and cannot be added to group {}",
            user.username, group.name
        ))
        .into());
    }
    if groups::member(conn, group.id, user.id)?.is_some() {
        return Err(ApiError::conflict(format!(
            "{} is already a member of group {}",
            user.username, group.name
        ))
        .into());
    }
    check_room(conn, group)?;
    groups::insert_member(conn, group.id, user.id, role.as_str(), now)?;
    Ok(())
}

/// Refuses a new member when a locked group is full.
pub fn check_room(conn: &mut DbConn, group: &Group) -> Result<(), Failure> {
    let count = groups::member_counts(conn, &[group.id])?
        .first()
        .map_or(0, |(_, n)| *n);
    if count >= MAX_GROUP_MEMBERS as i64 {
        return Err(ApiError::conflict(format!(
            "group {} has {count} members, the most a group may have",
            group.name
        ))
        .into());
    }
    Ok(())
}

/// Removes a member (not the owner: the caller checks) from a locked group, with their
/// envelopes and the join codes they made. If the group has a key, a new generation is
/// now due (`needs_rotation`, cleared by the rotation that may follow in the same
/// transaction). Returns whether a rotation became due.
pub fn remove_member(conn: &mut DbConn, group: &Group, user_id: i64) -> Result<bool, Failure> {
    groups::delete_member(conn, group.id, user_id)?;
    if group.key_generation.is_some() {
        groups::set_needs_rotation(conn, group.id, true)?;
        return Ok(true);
    }
    Ok(false)
}

/// Makes the member `user_id` the owner of a locked group; the old owner becomes a
/// manager. Returns the old owner's user id.
pub fn set_owner(conn: &mut DbConn, group: &Group, user_id: i64) -> Result<Option<i64>, Failure> {
    let old = groups::owner(conn, group.id)?.map(|m| m.user_id);
    if old == Some(user_id) {
        return Ok(old);
    }
    if let Some(old) = old {
        groups::set_role(conn, group.id, old, GroupRole::Manager.as_str())?;
    }
    groups::set_role(conn, group.id, user_id, GroupRole::Owner.as_str())?;
    Ok(old)
}

/// Deletes a locked group with its namespace and every file in it (blobs queued for gc,
/// like a deleted account's), and its chat messages. The caller removes the returned
/// partial blobs once the transaction has committed.
pub fn delete(conn: &mut DbConn, group: &Group, now: i64) -> Result<Purged, Failure> {
    crate::db::chat::delete_group(conn, group.id)?;
    let mut purged = Purged::default();
    if let Some(ns) = groups::namespace(conn, group.id)? {
        // Uploads and other file changes of the group wait for this, and then find no space.
        namespaces::lock(conn, ns.id)?;
        purged = purge::purge_namespace(conn, ns.id, now)?;
    }
    groups::delete(conn, group.id)?;
    Ok(purged)
}

/// The groups `user_id` owns, by name.
pub fn owned_by(conn: &mut DbConn, user_id: i64) -> Result<Vec<Group>, Failure> {
    Ok(groups::memberships(conn, user_id)?
        .into_iter()
        .filter(|(_, m)| m.role == GroupRole::Owner.as_str())
        .map(|(g, _)| g)
        .collect())
}

/// For an account being deleted: refuses if it owns a group; otherwise removes it from
/// every group it is in (see [`remove_member`]). Returns those groups.
pub fn drop_user(conn: &mut DbConn, user: &User) -> Result<Vec<Group>, Failure> {
    let owned = owned_by(conn, user.id)?;
    if !owned.is_empty() {
        let names: Vec<&str> = owned.iter().map(|g| g.name.as_str()).collect();
        return Err(ApiError::forbidden(format!(
            "{} owns {} {}: set another owner or delete the group first",
            user.username,
            if names.len() == 1 { "group" } else { "groups" },
            names.join(", ")
        ))
        .into());
    }
    let mut ids: Vec<i64> = groups::memberships(conn, user.id)?
        .into_iter()
        .map(|(g, _)| g.id)
        .collect();
    // Locks in id order, so two such transactions never wait for each other in a circle.
    ids.sort_unstable();
    let mut left = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(group) = groups::lock(conn, id)? {
            remove_member(conn, &group, user.id)?;
            left.push(group);
        }
    }
    Ok(left)
}
