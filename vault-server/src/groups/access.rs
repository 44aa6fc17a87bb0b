//! Who may do what in a group. Any logged-in user may create a group, list their own,
//! fetch a public key and join with a valid code; a member may read the group and its
//! files and do key work; owners and managers add, remove, re-role, invite and rename;
//! only the owner deletes. A group that does not exist is `not_found` (naming it); an
//! existing group asked about by someone who is not a member is `forbidden`.

use vault_proto::proto::{ApiError, GroupRole, names};

use crate::db::DbConn;
use crate::db::groups::{self, Group, Member};
use crate::error::Failure;

/// A group and the caller's role in it.
#[derive(Clone, Debug)]
pub struct Access {
    pub group: Group,
    pub role: GroupRole,
}

impl Access {
    /// Refuses unless the caller is the owner or a manager; `what` completes "can …".
    pub fn require_manager(&self, what: &str) -> Result<(), ApiError> {
        if self.role.manages() {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "only the owner or a manager of group {} can {what}",
            self.group.name
        )))
    }

    /// Refuses unless the caller is the owner; `what` completes "can …".
    pub fn require_owner(&self, what: &str) -> Result<(), ApiError> {
        if self.role == GroupRole::Owner {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "only the owner of group {} can {what}",
            self.group.name
        )))
    }
}

/// A group name from a request, case-folded (`bad_request` if it cannot be one).
pub fn group_name(raw: &str) -> Result<String, ApiError> {
    names::normalize_group_name(raw).map_err(ApiError::bad_request)
}

/// A username from a request, case-folded (`bad_request` if it cannot be one).
pub fn username(raw: &str) -> Result<String, ApiError> {
    names::normalize_username(raw).map_err(ApiError::bad_request)
}

pub fn no_such_group(name: &str) -> ApiError {
    ApiError::not_found(format!(
        "there is no group named {name} (see `vault group list`)"
    ))
}

pub fn not_a_member(name: &str) -> ApiError {
    ApiError::forbidden(format!("you are not a member of group {name}"))
}

/// A role as stored (an unknown one is a damaged row: internal).
pub fn role_of(member: &Member) -> Result<GroupRole, ApiError> {
    member
        .role
        .parse()
        .map_err(|e: String| crate::error::internal("bad role in group_members", e))
}

/// The group named `raw` and the role of `user_id` in it. With `lock`, the group's lock is
/// taken first (for a transaction that changes it).
pub fn member(conn: &mut DbConn, raw: &str, user_id: i64, lock: bool) -> Result<Access, Failure> {
    let name = group_name(raw)?;
    let group = if lock {
        groups::lock_by_name(conn, &name)?
    } else {
        groups::by_name(conn, &name)?
    };
    let group = group.ok_or_else(|| no_such_group(&name))?;
    let membership = groups::member(conn, group.id, user_id)?.ok_or_else(|| not_a_member(&name))?;
    let role = role_of(&membership)?;
    Ok(Access { group, role })
}

/// Refuses a removal the caller's role does not allow: nobody removes the owner, and a
/// manager removes only members.
pub fn check_remove(group: &str, caller: GroupRole, target: GroupRole) -> Result<(), ApiError> {
    match (caller, target) {
        (_, GroupRole::Owner) => Err(ApiError::forbidden(format!(
            "nobody can remove the owner of group {group}: the owner hands it over first \
             (`vault group role {group} USER owner`) or deletes the group"
        ))),
        (GroupRole::Manager, GroupRole::Manager) => Err(ApiError::forbidden(format!(
            "a manager can remove only members; ask the owner of group {group}, or make them \
             a member first"
        ))),
        (GroupRole::Member, _) => Err(ApiError::forbidden(format!(
            "only the owner or a manager of group {group} can remove members"
        ))),
        _ => Ok(()),
    }
}

/// Refuses a role change the caller's role does not allow: only the owner makes someone
/// owner; a manager sets member or manager on others who are not the owner; the owner's
/// own role changes only by handing the group over.
pub fn check_set_role(
    group: &str,
    caller: GroupRole,
    target: GroupRole,
    new: GroupRole,
) -> Result<(), ApiError> {
    if !caller.manages() {
        return Err(ApiError::forbidden(format!(
            "only the owner or a manager of group {group} can change roles"
        )));
    }
    if new == GroupRole::Owner && caller != GroupRole::Owner {
        return Err(ApiError::forbidden(format!(
            "only the owner of group {group} can make someone owner"
        )));
    }
    if target == GroupRole::Owner && new != GroupRole::Owner {
        return Err(ApiError::forbidden(format!(
            "the owner of group {group} stays owner until they hand it over: the owner runs \
             `vault group role {group} USER owner`, which makes them a manager"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use GroupRole::{Manager, Member, Owner};

    #[test]
    fn removals_follow_the_roles() {
        assert!(check_remove("g", Owner, Manager).is_ok());
        assert!(check_remove("g", Owner, Member).is_ok());
        assert!(check_remove("g", Manager, Member).is_ok());
        for (caller, target) in [
            (Owner, Owner),
            (Manager, Owner),
            (Manager, Manager),
            (Member, Member),
            (Member, Owner),
        ] {
            let e = check_remove("g", caller, target).expect_err("refused");
            assert_eq!(e.code, vault_proto::proto::ErrorCode::Forbidden);
            assert!(e.message.contains("owner"), "{e}");
        }
    }

    #[test]
    fn role_changes_follow_the_roles() {
        assert!(check_set_role("g", Owner, Member, Manager).is_ok());
        assert!(check_set_role("g", Owner, Manager, Owner).is_ok());
        assert!(check_set_role("g", Manager, Member, Manager).is_ok());
        assert!(check_set_role("g", Manager, Manager, Member).is_ok());
        for (caller, target, new) in [
            (Manager, Member, Owner),
            (Manager, Owner, Member),
            (Manager, Owner, Manager),
            (Owner, Owner, Manager),
            (Member, Member, Manager),
            (Member, Manager, Member),
        ] {
            let e = check_set_role("g", caller, target, new).expect_err("refused");
            assert!(e.message.contains("owner"), "{e}");
        }
    }
}
