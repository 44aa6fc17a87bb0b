//! A group as `group info`, `group members` and `vault-admin group show|list` present it:
//! its members in role order with whether each holds the key generation in force (those
//! who do not are waiting for a keyed member's client to wrap it for them), and the space
//! its files use.

use vault_proto::proto::GroupRole;

use super::access::role_of;
use super::tasks::{self, Held, generation};
use crate::db::DbConn;
use crate::db::groups::{self, Group, MemberUser};
use crate::error::Failure;

/// One member as shown.
#[derive(Clone, Debug)]
pub struct MemberView {
    pub user: MemberUser,
    pub role: GroupRole,
    /// Holds an envelope of the generation in force (never while the group has no key).
    pub has_key: bool,
}

/// One group as shown.
#[derive(Clone, Debug)]
pub struct GroupView {
    pub group: Group,
    /// By role (owner, managers, members), then by name.
    pub members: Vec<MemberView>,
    pub used_bytes: i64,
    pub quota_bytes: i64,
}

impl GroupView {
    /// The generation in force, `None` before the first key.
    pub fn generation(&self) -> Option<u32> {
        self.group.key_generation.map(generation)
    }

    pub fn owner(&self) -> Option<&MemberView> {
        self.members.iter().find(|m| m.role == GroupRole::Owner)
    }

    /// Members who do not hold the key in force yet.
    pub fn waiting(&self) -> impl Iterator<Item = &MemberView> {
        self.members.iter().filter(|m| !m.has_key)
    }

    pub fn member(&self, user_id: i64) -> Option<&MemberView> {
        self.members
            .iter()
            .find(|m| m.user.member.user_id == user_id)
    }
}

/// Whether `user_id` holds the generation in force of `group`.
pub fn has_key(group: &Group, held: &Held, user_id: i64) -> bool {
    group.key_generation.is_some_and(|g| {
        held.get(&user_id)
            .is_some_and(|h| h.contains(&generation(g)))
    })
}

/// Reads what is shown of `group`.
pub fn load(conn: &mut DbConn, group: Group) -> Result<GroupView, Failure> {
    let held = tasks::held_in(conn, &[group.id])?
        .remove(&group.id)
        .unwrap_or_default();
    let mut members = groups::members(conn, group.id)?
        .into_iter()
        .map(|user| {
            Ok(MemberView {
                role: role_of(&user.member)?,
                has_key: has_key(&group, &held, user.member.user_id),
                user,
            })
        })
        .collect::<Result<Vec<_>, Failure>>()?;
    members.sort_by(|x, y| (x.role, &x.user.username).cmp(&(y.role, &y.user.username)));
    let ns = groups::namespace(conn, group.id)?
        .ok_or_else(|| crate::error::internal("a group without a namespace", &group.name))?;
    Ok(GroupView {
        group,
        members,
        used_bytes: ns.used_bytes,
        quota_bytes: ns.quota_bytes.unwrap_or(0),
    })
}
